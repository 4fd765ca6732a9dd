#!/usr/bin/env python
"""Does the harness add noise of its own? Its repeat-to-repeat spread against a bare loop's.

Each round runs the same training twice, alternating the order, each in a fresh process
of the framework's interpreter: the bare loop of ``scripts/bench_overhead.py`` (the
backend's own trainer, ``train_step`` in a loop, wall-clock images/sec) and
``python -m harness`` with the same fixed warmup and steps and one repeat. After at
least five rounds it prints each side's mean images/sec and coefficient of variation
(std / mean over the rounds), and the ratios harness / bare of both. Targets: CV ratio
<= 1.1 (the harness adds no noise) and mean ratio >= 0.97 (it costs no speed).

    .venv/bin/python scripts/bench_noise.py --tool pytorch                # LeNet, MNIST
    .venv/bin/python scripts/bench_noise.py --tool tensorflow --model resnet50 \\
        --dataset cifar10 --batch-size 8 --steps 10

Run it on a quiet machine: other jobs' load is noise of its own, on both sides.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile

from bench_overhead import alternate, bare, harness, parser_for, plan_for  # scripts/ is on the path

CV_TARGET = 1.1
SPEED_TARGET = 0.97


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def cv_ratio_interval(
    bares: list[float], harnesses: list[float], draws: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval of CV(harness) / CV(bare), rounds resampled in pairs: how
    far a CV ratio from this few rounds can be trusted (a CV from 5 values is +-35%)."""
    rng = random.Random(seed)
    n = len(bares)
    ratios = []
    for _ in range(draws):
        pick = [rng.randrange(n) for _ in range(n)]
        b, h = [bares[i] for i in pick], [harnesses[i] for i in pick]
        if statistics.stdev(b) > 0:
            ratios.append(cv(h) / cv(b))
    ratios.sort()
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


def verdict(ratio: float, low: float, high: float, rounds: int) -> str:
    """What the interval says of the target, and, when it spans it, about how many rounds
    would decide (the interval narrows as 1/sqrt(rounds), on a log scale)."""
    if high <= CV_TARGET:
        return "meets the target"
    if low > CV_TARGET:
        return "misses the target"
    side = "within" if ratio <= CV_TARGET else "above"
    gap = abs(math.log(ratio / CV_TARGET))
    half = math.log(high / low) / 2
    need = f"about {math.ceil(rounds * (half / gap) ** 2)}" if gap > 0 else "no number of"
    return (
        f"{side} the target as a point estimate; the interval spans it ({need} rounds would decide)"
    )


def main() -> None:
    parser = parser_for(
        __doc__, model="lenet", dataset="mnist", batch=64, warmup=10, steps=200, rounds=5,
        rounds_help="at least 2 (5 or more to judge)",
    )  # fmt: skip
    parser.add_argument(
        "--monitor-interval", type=float, help="the harness's --monitor-interval (default 0.1)"
    )
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a CV needs two values)")
    plan = plan_for(args)
    with tempfile.TemporaryDirectory() as tmp:
        rounds = alternate(
            args.rounds,
            ("bare", lambda: bare(plan)),
            ("harness", lambda: harness(plan, args, tmp)),
            ratio=False,
        )
    bares, harnesses = [b for b, _ in rounds], [h for _, h in rounds]
    cv_bare, cv_harness = cv(bares), cv(harnesses)
    speed = statistics.mean(harnesses) / statistics.mean(bares)
    print(
        f"{args.tool} {args.model} {args.dataset} batch {plan.spec.batch_size}, "
        f"{args.warmup}+{args.steps} steps, {args.rounds} alternating rounds:\n"
        f"  bare    mean {statistics.mean(bares):9.2f} img/s  CV {cv_bare:6.2%}\n"
        f"  harness mean {statistics.mean(harnesses):9.2f} img/s  CV {cv_harness:6.2%}\n"
        f"  CV ratio harness/bare {cv_harness / cv_bare:.2f} (target <= {CV_TARGET}); "
        f"mean ratio {speed:.3f} (target >= {SPEED_TARGET})"
    )
    low, high = cv_ratio_interval(bares, harnesses)
    judged = verdict(cv_harness / cv_bare, low, high, args.rounds)
    print(f"  CV ratio 95% bootstrap interval {low:.2f} to {high:.2f}: {judged}")


if __name__ == "__main__":
    main()
