"""scripts/bench_noise.py's judgement of the CV ratio: the bootstrap interval and the
verdict, with the rounds it would take when the interval spans the target."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_noise  # scripts/ is not a package


def test_the_verdict_reads_the_interval_against_the_target() -> None:
    assert bench_noise.verdict(0.9, 0.7, 1.05, 30) == "meets the target"
    assert bench_noise.verdict(1.6, 1.2, 2.0, 30) == "misses the target"
    within = bench_noise.verdict(1.0, 0.5, 2.0, 30)
    assert within.startswith("within the target as a point estimate")
    # half-width ln(4)/2 = 0.693 against a gap of ln(1.1) = 0.0953: 30 x 52.9 rounds
    assert "about 1587 rounds would decide" in within
    above = bench_noise.verdict(2.2, 0.9, 4.0, 10)  # (ln(4/0.9)/2 / ln 2)^2 x 10 = 11.6
    assert above.startswith("above the target") and "about 12 rounds" in above
    assert "no number of rounds" in bench_noise.verdict(1.1, 0.8, 1.4, 10)


def test_the_interval_is_narrow_for_equal_sides_and_resamples_rounds_in_pairs() -> None:
    bares = [100.0, 102.0, 98.0, 101.0, 99.0, 103.0, 97.0, 100.0]
    low, high = bench_noise.cv_ratio_interval(bares, list(bares))
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)  # paired: always equal
    noisy = [b + (6.0 if i % 2 else -6.0) for i, b in enumerate(bares)]
    low, high = bench_noise.cv_ratio_interval(bares, noisy)
    assert 1.0 < low < high
