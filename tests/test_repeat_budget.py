"""The adaptive repeat budget (harness.run.repeats): more fresh repeats while the 95%
interval across them is wider than ±5%, within bounds; the summary says when it stopped
short. Pure functions: no process is started."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fake_cli
import pytest

from harness import plugins
from harness.cli.summary import spread_text
from harness.errors import InvalidValue
from harness.run import orchestrator
from harness.run import repeats as budget
from harness.run.spec import check_values
from harness.spec import RunSpec
from harness.store import stats
from harness.store.schema import RepeatRecord, Stat, Timed

sys.path.insert(0, str(fake_cli.FAKES))
import fake_backend  # tests/fakes, as in test_once_per_process

QUIET = [100.0, 101.0, 99.5]  # CV ~0.8%: ±1.9% after 3
SOME = [100.0, 104.0, 96.0]  # CV 4%: ±9.9% after 3, about 5 repeats reach ±5%
NOISY = [100.0, 120.0, 85.0]  # CV ~17%: ±43%, more than 10 repeats needed
CAPPED = [100.0, 110.0, 90.0] * 3 + [100.0]  # CV ~8.6%: still ±6.2% after 10


def test_repeats_for_is_the_fewest_that_reach_the_target() -> None:
    n = stats.repeats_for(0.04, 0.05)
    assert n == 5
    assert stats.t95(n - 1) * 0.04 / n**0.5 <= 0.05 < stats.t95(n - 2) * 0.04 / (n - 1) ** 0.5
    assert stats.repeats_for(0.0, 0.05) == 2
    assert stats.repeats_for(5.0, 0.05, limit=50) is None


@pytest.mark.parametrize(
    ("values", "done", "more", "reason"),
    [
        (QUIET[:2], 2, True, "minimum"),
        (QUIET, 3, False, "reached"),  # a quiet machine stops at 3
        (SOME, 3, True, "wide"),
        (SOME + [100.0] * 7, 10, False, "reached"),
        (NOISY, 3, False, "noisy"),  # 10 would not do: stop now, say so
        (CAPPED, 10, False, "maximum"),
        (SOME[:2], 3, False, "failed"),  # the last repeat failed
    ],
)
def test_decide(values: list[float], done: int, more: bool, reason: str) -> None:
    found = budget.decide(values, done, 3, 10, last_ok=len(values) == done)
    assert (found.more, found.reason) == (more, reason)


def test_a_fixed_count_or_one_repeat_never_adds() -> None:
    assert budget.decide(NOISY, 3, 3, 3).reason == "fixed"
    assert budget.decide([100.0], 1, 1, 10).reason == "fixed"


def test_bounds_adaptive_only_when_the_length_is() -> None:
    base = RunSpec("t", "lenet", "mnist")
    assert budget.bounds(base) == (3, budget.DEFAULT_MAX)
    assert budget.bounds(RunSpec("t", "lenet", "mnist", steps=20)) == (3, 3)
    assert budget.bounds(RunSpec("t", "lenet", "mnist", epochs=1, repeats=2)) == (2, 2)
    assert budget.bounds(RunSpec("t", "lenet", "mnist", steps=20, max_repeats=6)) == (3, 6)
    assert budget.bounds(RunSpec("t", "lenet", "mnist", repeats=12)) == (12, 12)
    with pytest.raises(InvalidValue, match="--max-repeats"):
        check_values(RunSpec("t", "lenet", "mnist", repeats=4, max_repeats=3))


def _record(ips: float | None, ok: bool = True) -> SimpleNamespace:
    return SimpleNamespace(ok=ok, timed=SimpleNamespace(images_per_sec=ips))


def test_next_repeat_reads_the_records() -> None:
    spec = RunSpec("t", "lenet", "mnist")
    assert budget.next_repeat(spec, []).more
    assert budget.next_repeat(spec, [_record(v) for v in SOME]).more
    assert not budget.next_repeat(spec, [_record(v) for v in QUIET]).more
    failed = [*map(_record, SOME[:2]), _record(None, ok=False)]
    assert budget.next_repeat(spec, failed).reason == "failed"


def test_the_summary_says_plainly_when_the_interval_stayed_wide() -> None:
    noisy = Stat.of(NOISY)
    text = spread_text(noisy, "img/s", (3, 10))
    assert "not within ±5% after 3 repeats (of at most 10: stopped early)" in text
    needed = stats.repeats_for((noisy.std or 0) / (noisy.mean or 1), 0.05)
    assert f"about {needed} repeats would (--repeats {needed})" in text
    assert "docs/user-guide/timing.md" in text
    capped = spread_text(Stat.of(CAPPED), "img/s", (3, 10))
    assert "after 10 repeats (at most 10)" in capped
    assert "noisy" not in spread_text(Stat.of(QUIET), "img/s", (3, 10))
    assert "noisy" not in spread_text(noisy, "img/s", (3, 3))  # a fixed count: as before


def test_execute_adds_repeats_while_the_interval_is_wide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestrator's loop, with each worker replaced by a record of a chosen speed:
    CV 4% after 3 (±9.9%), so it adds repeats and stops once within ±5% (at 5 here)."""
    speeds = iter([100.0, 104.0, 96.0, 100.0, 100.0, 100.0, 100.0])

    def worker(plan: Any, run_dir: Path, run_id: str, repeat: int, **_: Any) -> RepeatRecord:
        return RepeatRecord(status="ok", repeat=repeat, timed=Timed(images_per_sec=next(speeds)))

    monkeypatch.setattr(orchestrator, "run_repeat", worker)
    pm = plugins.PluginManager(entry_points=False, plugins=(fake_backend,))
    spec = RunSpec(
        "fake", "lenet", "mnist", synthetic=True, batch_size=8, idle_baseline_s=0.0,
        output_dir=str(tmp_path / "logs"),
    )  # fmt: skip
    result = orchestrator.execute(orchestrator.plan_run(spec, pm), pm=pm).result
    assert [r.repeat for r in result.repeats] == [1, 2, 3, 4, 5]
    assert not budget.next_repeat(spec, result.repeats).more
