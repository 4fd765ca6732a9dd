"""Small statistics without NumPy (the orchestrator stays light).

What a result reports over the repeats of a run (and over the windows of a repeat):

- ``mean``, ``std`` (sample, n - 1) and ``ci95``: the half-width of the 95% confidence
  interval of the mean (Student t);
- ``median`` and ``jitter``: 1.4826 x the median absolute deviation, a spread that one
  outlier does not inflate (it equals the std for normally distributed values);
- ``olympic_mean``: MLPerf's mean without the fastest and the slowest value, only when
  there are at least 5 values (None otherwise);
- ``min``, ``p50``, ``p90``, ``p99``, ``max``.

:func:`ratio_ci95` and :func:`verdict` compare two samples (e.g. images/sec of two runs):
the 95% confidence interval of the ratio of their means, and what it allows one to say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% Student-t critical values by degrees of freedom (1..30); beyond, ~normal.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

MAD_TO_STD = 1.4826  # scales the median absolute deviation to the std of a normal law
OLYMPIC_MIN = 5  # values needed before the olympic mean drops the extremes


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); 0.0 for a single value, None for none."""
    if not values:
        return None
    if len(values) == 1:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def jitter(values: Sequence[float]) -> float | None:
    """1.4826 x the median absolute deviation from the median (0.0 for one value)."""
    centre = median(values)
    if centre is None:
        return None
    return MAD_TO_STD * (median([abs(v - centre) for v in values]) or 0.0)


def olympic_mean(values: Sequence[float]) -> float | None:
    """The mean without the smallest and the largest value; None below 5 values."""
    if len(values) < OLYMPIC_MIN:
        return None
    ordered = sorted(values)
    return mean(ordered[1:-1])


def t95(df: float) -> float:
    """Two-sided 95% Student t critical value for ``df`` degrees of freedom (rounded down)."""
    whole = max(1, math.floor(df))
    return _T95[whole - 1] if whole <= len(_T95) else 1.96


def ci95_halfwidth(values: Sequence[float]) -> float | None:
    """Half-width of the 95% confidence interval of the mean (Student t)."""
    n = len(values)
    if n < 2:
        return None
    return t95(n - 1) * (std(values) or 0.0) / math.sqrt(n)


def describe(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, std, 95% CI half-width, median, jitter, olympic mean and percentiles."""
    return {
        "n": len(values),
        "mean": mean(values),
        "std": std(values),
        "min": min(values) if values else None,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "ci95": ci95_halfwidth(values),
        "median": median(values),
        "jitter": jitter(values),
        "olympic_mean": olympic_mean(values),
    }


def ratio_ci95_moments(
    mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int
) -> tuple[float, float, float] | None:
    """mean_a / mean_b and its 95% confidence interval from summary moments: (ratio, low, high).

    The interval is the delta method's on the log scale:
    ``log(ratio) ± t * sqrt(cv_a² / n_a + cv_b² / n_b)`` with ``cv = std / mean`` and t at
    the Welch-Satterthwaite degrees of freedom; it is always positive and symmetric in
    which sample is on top. None when a side has fewer than 2 values or a mean <= 0.
    """
    if n_a < 2 or n_b < 2 or not mean_a or not mean_b or mean_a <= 0 or mean_b <= 0:
        return None
    va = std_a**2 / (mean_a * mean_a * n_a)  # squared relative standard errors
    vb = std_b**2 / (mean_b * mean_b * n_b)
    ratio = mean_a / mean_b
    if va + vb == 0:
        return ratio, ratio, ratio
    df = (va + vb) ** 2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    half = t95(df) * math.sqrt(va + vb)
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def ratio_ci95(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float] | None:
    """mean(a) / mean(b) and its 95% confidence interval (see :func:`ratio_ci95_moments`)."""
    if len(a) < 2 or len(b) < 2:
        return None
    return ratio_ci95_moments(
        mean(a) or 0.0, std(a) or 0.0, len(a), mean(b) or 0.0, std(b) or 0.0, len(b)
    )


def verdict_of_ci(
    ci: tuple[float, float] | None, tolerance: float = 0.02, higher_is_faster: bool = True
) -> str:
    """The verdict on a ratio's 95% CI (low, high).

    "same" when it lies within 1 ± ``tolerance``; "faster" or "slower" when it lies
    wholly above or below 1 (``higher_is_faster``: a ratio of throughputs, else of
    times); "inconclusive" when it straddles 1 or is None (too few values to tell).
    """
    if ci is None:
        return "inconclusive"
    low, high = ci
    if 1 - tolerance <= low and high <= 1 + tolerance:
        return "same"
    if low > 1:
        return "faster" if higher_is_faster else "slower"
    if high < 1:
        return "slower" if higher_is_faster else "faster"
    return "inconclusive"


def verdict(
    a: Sequence[float], b: Sequence[float], tolerance: float = 0.02, higher_is_faster: bool = True
) -> str:
    """How ``a`` compares with ``b`` (see :func:`verdict_of_ci`), from the samples."""
    found = ratio_ci95(a, b)
    return verdict_of_ci(found[1:] if found else None, tolerance, higher_is_faster)


def repeats_to_settle(
    ratio: float, cv_a: float, cv_b: float, tolerance: float = 0.02, limit: int = 100
) -> int | None:
    """How many repeats a side would turn an inconclusive ratio into a verdict, if the
    ratio and each side's coefficient of variation stayed as observed: the fewest n whose
    95% CI (n repeats a side, :func:`ratio_ci95_moments`) lies wholly above or below 1, or
    within 1 ± ``tolerance``. None when more than ``limit`` would be needed: the
    difference is below the noise of these repeats."""
    distance = abs(math.log(ratio))
    inside = math.log1p(tolerance) - distance  # room left inside the band, when > 0
    spread = cv_a * cv_a + cv_b * cv_b
    for n in range(2, limit + 1):
        half = t95(2 * n - 2) * math.sqrt(spread / n)
        if half < distance or half < inside:
            return n
    return None


def repeats_for(cv: float, target: float, limit: int = 1000) -> int | None:
    """The fewest values (at least 2) whose 95% interval of the mean, at a coefficient of
    variation ``cv``, is within ± ``target`` of the mean (t95(n - 1) x cv / sqrt(n) <=
    target); None when more than ``limit`` would be needed."""
    for n in range(2, limit + 1):
        if t95(n - 1) * cv / math.sqrt(n) <= target:
            return n
    return None
