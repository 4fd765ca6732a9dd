#!/usr/bin/env python
"""How long does a run take, and how precise is it? Default length vs the old fixed one.

Runs the same benchmark twice through ``python -m harness``, each in a fresh process,
and prints side by side the wall time of the whole command and the width of the 95%
confidence interval of images/sec over the repeats:

- "adaptive": the defaults (warm up until steady, measure until the CI of the window
  throughput is within ±2%, between --min-time and --max-time);
- "fixed": the old defaults, 10 warmup steps then 100 timed steps, every step
  synchronised (``--warmup-steps 10 --steps 100 --sync-every 1``).

The card's command is the default (PyTorch ResNet-50 on CIFAR-10, batch 128, 3
repeats); on a small CPU the fixed run takes hours, so ``--fixed-timeout`` bounds it
(and the script then prints how far it got). Smaller workloads compare quickly:

    python scripts/bench_length.py --model lenet --dataset mnist
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.store.schema import RunResult

FIXED = ["--warmup-steps", "10", "--steps", "100", "--sync-every", "1"]


def run(args: argparse.Namespace, extra: list[str], output: Path, timeout: float) -> dict:
    command = [
        sys.executable,
        "-m",
        "harness",
        "--tool",
        args.tool,
        "--model",
        args.model,
        "--dataset",
        args.dataset,
        "--repeats",
        str(args.repeats),
        "--output-dir",
        str(output),
        "--json",
        *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
        *extra,
    ]
    start = time.perf_counter()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_s": time.perf_counter() - start, "timed_out": True}
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(
            f"harness run failed ({' '.join(extra) or 'defaults'}):\n{out.stderr[-3000:]}"
        )
    result = RunResult.from_json(out.stdout.strip().splitlines()[-1])
    speed = result.summary.images_per_sec
    records = result.repeats
    return {
        "wall_s": wall,
        "timed_out": False,
        "mean": speed.mean,
        "ci95": speed.ci95,
        "ci95_rel": speed.ci95 / speed.mean if speed.ci95 and speed.mean else None,
        "timed_s": sum(r.timed.seconds for r in records),
        "warmup_steps": [r.warmup.steps for r in records],
        "timed_steps": [r.timed.steps for r in records],
        "length": [r.timing.length for r in records],
    }


def show(name: str, r: dict) -> str:
    if r["timed_out"]:
        return f"{name:9} wall {r['wall_s']:8.1f} s  (stopped at the timeout, no result)"
    ci = f"±{r['ci95_rel']:.2%}" if r["ci95_rel"] is not None else "-"
    return (
        f"{name:9} wall {r['wall_s']:8.1f} s  images/sec {r['mean']:10.2f}  95% CI {ci:>8}  "
        f"warmup steps {r['warmup_steps']}  timed steps {r['timed_steps']}  "
        f"({', '.join(map(str, r['length']))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", default="pytorch")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the study's default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fixed-timeout", type=float, default=7200.0, help="seconds")
    parser.add_argument("--skip-fixed", action="store_true", help="time the default only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        adaptive = run(args, [], Path(tmp) / "adaptive", timeout=24 * 3600)
        print(show("adaptive", adaptive), flush=True)
        if args.skip_fixed:
            return
        fixed = run(args, FIXED, Path(tmp) / "fixed", timeout=args.fixed_timeout)
        print(show("fixed", fixed), flush=True)
    label = f"{args.tool} {args.model} {args.dataset}, {args.repeats} repeats"
    line = f"{label}: wall time adaptive / fixed {adaptive['wall_s'] / fixed['wall_s']:.3f}"
    if fixed["timed_out"]:
        line += " (fixed stopped at its timeout: the true ratio is smaller)"
    elif adaptive["ci95_rel"] is not None and fixed["ci95_rel"] is not None:
        line += f"; 95% CI ±{adaptive['ci95_rel']:.2%} vs ±{fixed['ci95_rel']:.2%}"
    print(line)


if __name__ == "__main__":
    main()
