#!/usr/bin/env python
"""Does the harness slow down what it measures? Harness vs a bare loop, side by side.

Each round trains the same model on the same synthetic batches twice, each time in a
fresh process of the framework's interpreter: once in a bare loop written here, which
drives the backend's own trainer (built from a WorkerContext as the worker builds it,
with the worker's environment: thread counts, XLA flags, its denormal mode) as simply
as it can (the harness's pool of synthetic batches moved to the device once and cycled, the
warmup, one synchronisation, N ``train_step`` calls, one synchronisation, wall-clock
images/sec), and once through ``python -m harness`` with
the same fixed warmup and steps. Rounds alternate the order; the script prints both
figures per round and the median ratio harness / bare (target: >= 0.97 for PyTorch,
>= 0.9 for the others). The harness uses its default timing (the device synchronised
at the end of windows of ~0.3 s; ``--sync-every 1`` times every step on its own).

The interpreter: ``--python``, else ``HARNESS_PYTHON_<TOOL>``, else this one, else
``.venvs/<tool>`` or ``.tox/<tool>`` (as the harness finds it). Run this script with any
interpreter that has the harness, e.g.

    .tox/jax/bin/python scripts/bench_overhead.py --tool jax --batch-size 16 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from harness.run.orchestrator import Plan, plan_run
from harness.spec import RunSpec
from harness.store.schema import RunResult

TARGET = {"pytorch": 0.97}  # every other tool: 0.9

BARE_LOOP = r"""
import itertools, json, sys, time
from harness.plugins import PluginManager
from harness.spec import RunSpec
from harness.run import denormals
from harness.run.loop import SYNTHETIC_POOL
from harness.run.worker import Job, build_context

spec = RunSpec.from_dict(json.loads(sys.argv[1]))
denormals.apply(spec.denormals)  # as the worker does, before the framework starts
local_devices = int(sys.argv[2])
ctx = build_context(Job(spec, local_devices=local_devices), 0, 1)
trainer = PluginManager().backend(spec.tool).load_trainer()(ctx)
host = ctx.train.batches(ctx.process_batch, layout=trainer.layout, shuffle=True, epochs=None)
pool = [trainer.device_batch(*b) for b in itertools.islice(host, SYNTHETIC_POOL)]
batches = itertools.cycle(pool)
token = None
for _ in range(spec.warmup_steps):
    token = trainer.train_step(next(batches))
if token is not None:
    trainer.synchronize(token)
start = time.perf_counter()
for _ in range(spec.steps):
    token = trainer.train_step(next(batches))
trainer.synchronize(token)
seconds = time.perf_counter() - start
trainer.close()
print(json.dumps({"images_per_sec": ctx.global_batch * spec.steps / seconds}))
"""


def last_json(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare(plan: Plan) -> float:
    command = [plan.interpreter.python, "-c", BARE_LOOP, plan.spec.to_json()]
    env = {**os.environ, **plan.env}
    return last_json([*command, str(plan.local_devices)], env)["images_per_sec"]


def harness(plan: Plan, args: argparse.Namespace, output: str) -> float:
    spec = plan.spec
    command = [
        plan.interpreter.python, "-m", "harness", "--tool", spec.tool, "--model", spec.model,
        "--dataset", spec.dataset, "--batch-size", str(spec.batch_size),
        "--lr", str(spec.learning_rate), "--warmup-steps", str(spec.warmup_steps),
        "--steps", str(spec.steps), "--repeats", "1", "--synthetic", "--idle-baseline", "0",
        "--python", plan.interpreter.python, "--output-dir", output, "--json",
        "--denormals", args.denormals,
    ]  # fmt: skip
    if args.threads:  # otherwise both sides get the harness's default (the cores available)
        command += ["--threads", str(args.threads)]
    if args.sync_every:
        command += ["--sync-every", str(args.sync_every)]
    if getattr(args, "monitor_interval", None):  # bench_noise's: the sampling's own cost
        command += ["--monitor-interval", str(args.monitor_interval)]
    return RunResult.from_json(last_json(command)).summary.images_per_sec.mean


Side = tuple[str, Callable[[], float]]  # (name, one fresh run giving images/sec)


def alternate(rounds: int, first: Side, second: Side, *, ratio: bool) -> list[tuple[float, float]]:
    """(first, second) images/sec of each round, the sides run in alternating order (the
    first side first in odd rounds), each round printed, with second / first if asked."""
    (name_a, run_a), (name_b, run_b) = first, second
    figures = []
    for round_no in range(1, rounds + 1):
        if round_no % 2:
            a, b = run_a(), run_b()
        else:
            b, a = run_b(), run_a()
        figures.append((a, b))
        shown = f"   ratio {b / a:.3f}" if ratio else ""
        print(
            f"round {round_no}: {name_a} {a:9.2f} img/s   {name_b} {b:9.2f} img/s{shown}",
            flush=True,
        )
    return figures


def parser_for(
    doc: str | None,
    *,
    model: str,
    dataset: str,
    batch: int,
    warmup: int,
    steps: int,
    rounds: int,
    rounds_help: str | None = None,
) -> argparse.ArgumentParser:
    """The options both scripts take (bench_noise.py too), with each one's defaults."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--tool", required=True, help="pytorch, tensorflow, jax or mxnet")
    parser.add_argument("--model", default=model)
    parser.add_argument("--dataset", default=dataset)
    parser.add_argument("--batch-size", type=int, default=batch)
    parser.add_argument("--lr", type=float, help="default: the study's")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--threads", type=int, default=0, help="0: the harness's default")
    parser.add_argument(
        "--sync-every", type=int, default=0, help="the harness's --sync-every (0: its default)"
    )
    parser.add_argument(
        "--denormals", choices=("keep", "flush"), default="keep", help="the harness's, both sides"
    )
    parser.add_argument("--python", help="the framework's interpreter (default: as the harness)")
    return parser


def plan_for(args: argparse.Namespace) -> Plan:
    """The plan both sides run: one repeat on synthetic data, no idle baseline."""
    spec = RunSpec(
        tool=args.tool,
        model=args.model,
        dataset=args.dataset,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        steps=args.steps,
        repeats=1,
        synthetic=True,
        threads=args.threads or None,
        denormals=args.denormals,
        idle_baseline_s=0,
        python=args.python,
    )
    plan = plan_run(spec, check_gpus=False)
    print(f"interpreter: {plan.interpreter.python} ({plan.interpreter.source})", flush=True)
    return plan


def main() -> None:
    parser = parser_for(
        __doc__, model="resnet50", dataset="cifar10", batch=32, warmup=3, steps=20, rounds=3
    )
    args = parser.parse_args()
    plan = plan_for(args)
    with tempfile.TemporaryDirectory() as tmp:
        rounds = alternate(
            args.rounds,
            ("bare", lambda: bare(plan)),
            ("harness", lambda: harness(plan, args, tmp)),
            ratio=True,
        )
    ratios = [h / b for b, h in rounds]
    timing = f"--sync-every {args.sync_every}" if args.sync_every else "default window timing"
    spread = f", min {min(ratios):.3f} max {max(ratios):.3f}" if len(ratios) > 1 else ""
    print(
        f"{args.tool} {args.model} {args.dataset} batch {plan.spec.batch_size}, "
        f"{args.steps} timed steps, {timing}: harness/bare median ratio "
        f"{statistics.median(ratios):.3f}{spread} (target >= {TARGET.get(args.tool, 0.9)})"
    )


if __name__ == "__main__":
    main()
