"""Small statistics without NumPy (the orchestrator stays light)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% Student-t critical values by degrees of freedom (1..30); beyond, ~normal.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


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
    """Count, mean, std, min, percentiles, max and the 95% CI half-width of ``values``."""
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
    }
