"""How many repeats a run takes: the adaptive repeat budget.

A run's reported interval is across its repeats (fresh processes): with 3 of them the
Student t factor is 4.3, so the 95% interval is ±2.5 x their coefficient of variation
(±25% at the CV of 10% a shared machine shows). When a run has room (:func:`bounds`: by
default 3 repeats, up to 10, when the length is adaptive too), it keeps launching
fresh repeats while the interval is wider than ±5% of the mean, and stops early when the
CV seen so far says that even ``max_repeats`` would not reach it: the summary then says
so, with the number of repeats it would take. A quiet machine (CV <= 2%) stops at 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.spec import RunSpec
from harness.store import stats

TARGET = 0.05  # the reported 95% interval's half-width, as a share of the mean
DEFAULT_MAX = 10  # the command line's bound when --repeats is left out


@dataclass(frozen=True)
class Budget:
    """Whether to start another repeat, and why (or why not)."""

    more: bool
    reason: str  # more: "minimum", "wide"; else "fixed", "failed", "reached", "maximum", "noisy"
    needed: int | None = None  # the repeats the CV so far needs for the target


def decide(
    values: Sequence[float],
    done: int,
    minimum: int,
    maximum: int,
    target: float = TARGET,
    last_ok: bool = True,
) -> Budget:
    """After ``done`` repeats (``values``: the ok ones' images/sec): another one?

    Below ``minimum``: yes. Then, only while ``done < maximum``, the last repeat was ok,
    the 95% interval of ``values`` is wider than ± ``target`` of their mean, and the
    coefficient of variation so far says ``maximum`` repeats would narrow it enough."""
    if done < minimum:
        return Budget(True, "minimum")
    if maximum <= minimum or minimum < 2:  # one repeat asks for no interval
        return Budget(False, "fixed")
    if not last_ok or len(values) < 2:
        return Budget(False, "failed")
    centre = stats.mean(values) or 0.0
    half = stats.ci95_halfwidth(values) or 0.0
    if centre <= 0 or half <= target * centre:
        return Budget(False, "reached")
    needed = stats.repeats_for((stats.std(values) or 0.0) / centre, target)
    if done >= maximum:
        return Budget(False, "maximum", needed)
    if needed is None or needed > maximum:
        return Budget(False, "noisy", needed)
    return Budget(True, "wide", needed)


def bounds(spec: RunSpec) -> tuple[int, int]:
    """(repeats at least, repeats at most) of a run: ``--max-repeats`` where given; else
    :data:`DEFAULT_MAX` when the run's length is adaptive too (no ``--steps``, no
    ``--epochs``: the default), else exactly ``--repeats`` (a fixed amount of work)."""
    if spec.max_repeats is not None:
        return spec.repeats, max(spec.repeats, spec.max_repeats)
    adaptive = spec.steps is None and spec.epochs is None
    return spec.repeats, max(spec.repeats, DEFAULT_MAX) if adaptive else spec.repeats


def next_repeat(spec: RunSpec, records: Sequence) -> Budget:  # records: RepeatRecords
    """:func:`decide` for a run of ``spec`` after ``records``."""
    minimum, maximum = bounds(spec)
    values = [r.timed.images_per_sec for r in records if r.ok and r.timed.images_per_sec]
    last_ok = bool(records) and records[-1].ok
    return decide(values, len(records), minimum, maximum, last_ok=last_ok)
