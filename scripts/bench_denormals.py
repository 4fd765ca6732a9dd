#!/usr/bin/env python
"""What flushing denormal floats changes: the harness with ``--denormals keep`` and with
``--denormals flush`` (its default), side by side.

Each round runs ``python -m harness`` twice, alternating the order, each a fresh process
with the same fixed warmup and steps and one repeat on synthetic data, and prints both
figures and the ratio flush / keep; at the end, the median ratio and the rounds' range.
A long run on a few synthetic batches drives weights and gradients towards zero, where
a CPU that keeps denormals slows down: the default (ResNet-50, batch 16, 10 + 60 steps)
is long enough to show it in PyTorch.

    .venv/bin/python scripts/bench_denormals.py --tool pytorch --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from bench_overhead import alternate, harness, parser_for, plan_for  # scripts/ is on the path


def main() -> None:
    parser = parser_for(
        __doc__, model="resnet50", dataset="cifar10", batch=16, warmup=10, steps=60, rounds=3
    )
    args = parser.parse_args()
    plan = plan_for(args)

    def run(mode: str, output: str) -> float:
        return harness(plan, argparse.Namespace(**{**vars(args), "denormals": mode}), output)

    with tempfile.TemporaryDirectory() as tmp:
        rounds = alternate(
            args.rounds,
            ("keep", lambda: run("keep", tmp)),
            ("flush", lambda: run("flush", tmp)),
            ratio=True,
        )
    ratios = [flush / keep for keep, flush in rounds]
    spread = f", min {min(ratios):.3f} max {max(ratios):.3f}" if len(ratios) > 1 else ""
    print(
        f"{args.tool} {args.model} {args.dataset} batch {plan.spec.batch_size}, "
        f"{args.warmup}+{args.steps} steps: flush/keep median ratio "
        f"{statistics.median(ratios):.3f}{spread}"
    )


if __name__ == "__main__":
    main()
