"""A worker that dies at teardown after every rank wrote its figures keeps them: the
repeat is ok and its cause records the teardown failure (issue 28, item 10)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fake_cli import run_cli

from harness.run.orchestrator import measured_before_exit
from harness.store.store import ResultStore


def _events(world: int, ended: tuple[int, ...], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    starts = [{"event": "start", "rank": r, "world_size": world} for r in range(world)]
    ends = [{"event": "end", "rank": r, "status": "ok"} for r in ended]
    return [*starts, *extra, *ends]


# (events, whether the figures are complete)
CASES = [
    (_events(1, (0,)), True),
    (_events(2, (0, 1)), True),  # rank 1 aborted after its end: kept
    (_events(2, (0,)), False),  # rank 1 died mid-benchmark
    (_events(2, (0, 1), {"event": "error", "rank": 1, "kind": "error"}), False),
    ([{"event": "end", "rank": 0, "status": "ok"}], False),  # never started
    ([], False),
]


@pytest.mark.parametrize("events, complete", CASES)
def test_figures_are_complete_only_when_every_rank_ended(
    events: list[dict[str, Any]], complete: bool
) -> None:
    assert measured_before_exit(events) is complete


def test_a_worker_aborting_at_teardown_keeps_its_figures(tmp_path: Path) -> None:
    output = tmp_path / "logs"
    done = run_cli(
        "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--batch-size", "8",
        "--warmup-steps", "1", "--steps", "3", "--idle-baseline", "0", "--repeats", "1",
        "-o", "step_s=0.001", "-o", "behaviour=abort_at_close", "--output-dir", str(output),
        HARNESS_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (result,) = ResultStore(output / "results.sqlite", readonly=True).runs()
    (repeat,) = result.repeats
    assert repeat.ok and repeat.timed.images == 3 * 8 and repeat.exit_code != 0
    assert repeat.cause is not None and "teardown failed" in repeat.cause
    assert "SIGABRT" in repeat.cause
    assert result.summary.repeats_ok == 1 and result.status == "ok"
    db = sqlite3.connect(output / "results.sqlite")
    assert db.execute("SELECT status FROM repeats").fetchall() == [("ok",)]
    db.close()
