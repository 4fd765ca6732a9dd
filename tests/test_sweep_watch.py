"""`watch`: a sweep's state read from its store, as another process (or SLURM) leaves it."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sweep_helpers import make_result

from harness.cli.main import main
from harness.store.store import ResultStore
from harness.sweep.config import parse
from harness.sweep.state import SweepState
from harness.sweep.watch import snapshot

SWEEP = {
    "sweep": {"name": "w", "tools": ["pytorch"], "hardware": ["cpu"]},
    "workloads": [{"dataset": "mnist", "model": "lenet", "batch_size": [8, 16, 32, 64]}],
}
NOW = datetime.now(timezone.utc)  # stored runs end before the snapshot


def _at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def _sweep_in_flight(folder: Path) -> tuple[ResultStore, SweepState]:
    """Four cells: one done (a 60 s run), one failed, one running (repeat 2, timed), one left."""
    store = ResultStore(folder / "results.sqlite")
    cells = parse(SWEEP, "w.toml").cells()
    state = SweepState.create(store, name="w", source="w.toml", fingerprint="f" * 16,
                              config=SWEEP, cells=cells)  # fmt: skip
    done, failed, running, _ = state.cells()
    for cell, status in ((done, "ok"), (failed, "error")):
        result = make_result("pytorch", "lenet", "mnist", status=status, sweep_id=state.sweep_id,
                             started_at=_at(200), tags={"sweep_cell": cell.key})  # fmt: skip
        result = dataclasses.replace(result, finished_at=_at(140))
        store.add_run(result)
        state.mark_running(cell)
        state.mark_done(cell, result.run_id, status)
    state.mark_running(running)
    state.set_run_id(running, "run-in-flight")
    events = folder / "run-in-flight" / "repeat-2" / "events.jsonl"
    events.parent.mkdir(parents=True)
    (folder / "run-in-flight" / "repeat-1").mkdir()
    lines = [{"event": "phase", "name": n, "state": "start"} for n in ("setup", "warmup", "timed")]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return store, state


def test_a_snapshot_counts_the_cells_places_the_running_one_and_estimates_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, state = _sweep_in_flight(tmp_path)
    running = state.cells()[2]
    shot = snapshot(store, state.sweep_id, now=datetime.fromisoformat(running.updated_at)
                    + timedelta(seconds=25))  # fmt: skip
    assert (shot.total, dict(shot.counts)) == (4, {"ok": 1, "failed": 1, "running": 1, "left": 1})
    (run,) = shot.running
    assert (run.key, run.elapsed_s, run.where) == (running.key, 25.0, "repeat-2 · timed")
    assert shot.eta_s == pytest.approx((60 - 25) + 60)  # the running run's rest, one more
    assert not shot.finished


def test_watch_once_prints_the_snapshot_on_stdout_and_a_missing_sweep_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = _sweep_in_flight(tmp_path)
    assert main(["watch", "--store", str(tmp_path), "--once"]) == 0
    out = capsys.readouterr().out
    assert f"sweep {state.sweep_id} (running) · 2/4 done" in out
    assert "1 ok, 1 failed, 0 skipped, 1 running, 1 left" in out
    assert "repeat-2 · timed" in out
    assert main(["watch", "nosuch", "--store", str(tmp_path), "--once"]) == 2
    assert "no sweep 'nosuch'" in capsys.readouterr().err
    assert main(["watch", "--store", str(tmp_path / "none"), "--once"]) == 2
