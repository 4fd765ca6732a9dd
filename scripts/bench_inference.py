#!/usr/bin/env python
"""Does the inference task slow down what it measures? Harness vs a bare loop, side by side.

Each round measures the same model file twice, each time in a fresh process of the
framework's interpreter: once through ``python -m harness --task inference`` (fixed
warmup and batches, synthetic data) and once in a bare loop written here on the file
that run exported into its run folder:

- onnxruntime: ``InferenceSession(file)`` with the same thread counts and sequential
  execution, ``session.run(None, {input: x})`` on one NumPy batch;
- pytorch: ``torch.export.load(file).module()``, the same threads, a ``torch.no_grad()``
  loop on one batch.

The bare loop warms up as many batches as the harness, then times its batches with one
clock read before and one after. Rounds alternate the order; the script prints both
figures per round (images/sec and mean latency per batch) and the median ratios harness /
bare (target: >= 0.97). Run it with any interpreter that has the harness, e.g.

    .tox/onnxruntime/bin/python scripts/bench_inference.py --tools onnxruntime --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness.run.orchestrator import plan_run
from harness.spec import RunSpec

TARGET = 0.97

BARE = {
    "onnxruntime": r"""
import json, sys, time
import numpy as np, onnxruntime as ort
path, batch, warmup, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
first = session.get_inputs()[0]
shape = [batch, *first.shape[1:]]
x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
feed = {first.name: x}
for _ in range(warmup):
    session.run(None, feed)
start = time.perf_counter()
for _ in range(steps):
    session.run(None, feed)
seconds = time.perf_counter() - start
print(json.dumps({"images_per_sec": steps * batch / seconds, "latency_s": seconds / steps}))
""",
    "pytorch": r"""
import json, sys, time
import torch
path, batch, warmup, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
model = torch.export.load(path).module()
shape = json.loads(sys.argv[6])
x = torch.randn([batch, *shape])
with torch.no_grad():
    for _ in range(warmup):
        model(x)
    start = time.perf_counter()
    for _ in range(steps):
        model(x)
    seconds = time.perf_counter() - start
print(json.dumps({"images_per_sec": steps * batch / seconds, "latency_s": seconds / steps}))
""",
}


def harness_run(python: str, args: argparse.Namespace, tool: str, out: str) -> dict[str, Any]:
    command = [
        python, "-m", "harness", "--tool", tool, "--task", "inference", "--model", args.model,
        "--dataset", args.dataset, "--synthetic", "--batch-size", str(args.batch_size),
        "--warmup-steps", str(args.warmup), "--steps", str(args.steps), "--repeats", "1",
        "--idle-baseline", "0", "--json", "--output-dir", out,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the harness run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    part = result["repeats"][0]["inference"]
    return {
        "images_per_sec": part["images_per_sec"],
        "latency_s": part["latency_mean_s"],
        "file": part["model_file"],
        "threads": result["spec"]["threads"],
        "shape": None,
    }


def bare_run(python: str, tool: str, file: str, args: argparse.Namespace, threads: int) -> dict:
    from harness import datasets

    shape = list(datasets.DATASETS[args.dataset].image_shape)
    command = [
        python, "-c", BARE[tool], file, str(args.batch_size), str(args.warmup),
        str(args.steps), str(threads), json.dumps(shape),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the bare loop failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(tool: str, args: argparse.Namespace) -> tuple[float, float]:
    spec = RunSpec(tool, args.model, args.dataset, task="inference", synthetic=True)
    python = plan_run(spec, check_gpus=False).interpreter.python
    speed, latency = [], []
    with tempfile.TemporaryDirectory() as out:
        first = harness_run(python, args, tool, out)  # writes the file the bare loop reads
        file, threads = first["file"], first["threads"]
        print(f"{tool}: {Path(file).name} ({Path(file).stat().st_size:,} bytes), {threads} threads")
        for round_ in range(args.rounds):
            order = ("harness", "bare") if round_ % 2 == 0 else ("bare", "harness")
            got: dict[str, dict[str, Any]] = {}
            for which in order:
                if which == "harness":
                    got[which] = first if round_ == 0 else harness_run(python, args, tool, out)
                else:
                    got[which] = bare_run(python, tool, file, args, threads)
            h, b = got["harness"], got["bare"]
            speed.append(h["images_per_sec"] / b["images_per_sec"])
            latency.append(b["latency_s"] / h["latency_s"])
            print(
                f"  round {round_ + 1}: harness {h['images_per_sec']:,.1f} img/s, "
                f"{h['latency_s'] * 1e3:.3f} ms/batch · bare {b['images_per_sec']:,.1f} img/s, "
                f"{b['latency_s'] * 1e3:.3f} ms/batch · ratio {speed[-1]:.3f}"
            )
    return statistics.median(speed), statistics.median(latency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default="onnxruntime,pytorch")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    failed = False
    for tool in args.tools.split(","):
        speed, latency = bench(tool.strip(), args)
        verdict = "ok" if min(speed, latency) >= TARGET else "BELOW TARGET"
        failed |= verdict != "ok"
        print(
            f"{tool}: median harness/bare throughput {speed:.3f}, latency (bare/harness) "
            f"{latency:.3f}, target >= {TARGET}: {verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
