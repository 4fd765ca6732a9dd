"""Sweep state in the results store, recovery after abrupt ends, and the runner's
bookkeeping (in process, with the orchestrator replaced by a stand-in)."""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from sweep_helpers import make_result

from harness.errors import UsageError
from harness.run.orchestrator import RunOutcome
from harness.store.store import SCHEMA_VERSION, ResultStore
from harness.sweep import runner
from harness.sweep.config import parse
from harness.sweep.progress import Eta, duration
from harness.sweep.runner import SweepRequest, run_sweep
from harness.sweep.state import SweepState

SWEEP = {
    "sweep": {"name": "unit", "tools": ["pytorch"], "hardware": ["cpu"]},
    "workloads": [{"dataset": "mnist", "model": "lenet"},
                  {"dataset": "cifar10", "model": ["alexnet", "resnet50"]}],
}  # fmt: skip


def test_version_1_store_gains_the_sweep_tables(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).add_run(make_result("pytorch", "lenet", "mnist"))
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE sweeps; DROP TABLE sweep_cells; PRAGMA user_version = 1;")
    db.close()
    store = ResultStore(path)  # migrates
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "repeats", "sweeps", "sweep_cells"} <= tables
    assert [r.spec.model for r in store.runs()] == ["lenet"]


def _state(tmp_path: Path) -> tuple[ResultStore, SweepState, list]:
    store = ResultStore(tmp_path / "results.sqlite")
    cells = parse(SWEEP, "unit.toml").cells()
    state = SweepState.create(store, name="unit", source="unit.toml", fingerprint="f" * 16,
                              config=SWEEP, cells=cells)  # fmt: skip
    return store, state, cells


def _stored(store: ResultStore, state: SweepState, key: str, status: str = "ok") -> str:
    tool, model, dataset, _ = key.split("/")
    result = make_result(tool, model, dataset, status=status, sweep_id=state.sweep_id,
                         tags={"sweep_cell": key})  # fmt: skip
    store.add_run(result)
    return result.run_id


def test_reconcile_after_an_abrupt_end(tmp_path: Path) -> None:
    store, state, _ = _state(tmp_path)
    lenet, alexnet, resnet = state.cells()
    assert state.find_unfinished(store, "f" * 16) == state.sweep_id
    # lenet: the run was stored, then the sweep died before marking the cell done
    state.mark_running(lenet)
    state.set_run_id(lenet, _stored(store, state, lenet.key))
    # alexnet: killed in the middle of its run (no runs row)
    state.mark_running(alexnet)
    state.set_run_id(alexnet, "run-killed")
    # resnet: Ctrl-C stored an interrupted run, then the sweep died before marking it
    state.mark_running(resnet)
    interrupted = _stored(store, state, resnet.key, status="interrupted")
    state.set_run_id(resnet, interrupted)

    notes = state.reconcile()
    after = {c.key: c for c in state.cells()}
    assert after[lenet.key].status == "done" and after[lenet.key].run_id == lenet.run_id
    assert after[lenet.key].run_status == "ok"
    assert after[alexnet.key].status == "pending"
    assert after[alexnet.key].superseded == ["run-killed"]
    assert after[resnet.key].status == "pending" and after[resnet.key].superseded == [interrupted]
    assert len(notes) == 3 and "did not finish; it will run again" in notes[1]
    assert state.reconcile() == []  # idempotent


def test_retry_failed_reopens_cells_that_were_not_ok(tmp_path: Path) -> None:
    store, state, _ = _state(tmp_path)
    first, second, _ = state.cells()
    state.mark_done(first, _stored(store, state, first.key, "oom"), "oom", "out of memory")
    state.mark_done(second, _stored(store, state, second.key), "ok")
    state.reconcile(retry_failed=True)
    after = {c.key: c for c in state.cells()}
    assert after[first.key].status == "pending" and after[first.key].superseded
    assert after[second.key].status == "done"
    # the superseded oom run is not taken as the cell's result again
    assert state.reconcile() == []
    assert {c.key: c.status for c in state.cells()}[first.key] == "pending"


def test_claim_refuses_a_live_owner(tmp_path: Path) -> None:
    store, state, _ = _state(tmp_path)
    with store.transaction() as db:
        db.execute("UPDATE sweeps SET status = 'running', owner = ?",
                   (f"{socket.gethostname()}:{os.getppid()}",))  # fmt: skip
    with pytest.raises(UsageError, match="is being run by process"):
        state.claim()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with store.transaction() as db:
        db.execute("UPDATE sweeps SET owner = ?", (f"{socket.gethostname()}:{gone.pid}",))
    state.claim()
    assert state.info()["owner"] == f"{socket.gethostname()}:{os.getpid()}"


def test_eta_uses_like_runs_first() -> None:
    eta = Eta()
    assert eta.left([("lenet", "mnist", "CPU")]) is None
    eta.add(("lenet", "mnist", "CPU"), 10.0)
    eta.add(("vgg16", "cifar10", "CPU"), 50.0)
    kinds = [("lenet", "mnist", "CPU"), ("vgg16", "cifar10", "CPU"), ("alexnet", "cifar10", "CPU")]
    assert eta.left(kinds) == 10 + 50 + 30  # unknown kinds: the mean of all
    assert eta.left(kinds, current_elapsed=4.0) == 6 + 50 + 30
    assert [duration(s) for s in (None, 3, 245, 7620)] == ["?", "3 s", "4m05s", "2h07m"]


class _Orchestrator:
    """Stands in for plan_run and execute: runs nothing, stores a result per run."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.executed: list[str] = []
        self.plugin_managers: list[Any] = []  # the pm each plan_run and execute was given

    def plan_run(self, spec: Any, pm: Any = None) -> Any:
        self.plugin_managers.append(pm)
        if spec.model == "resnet50" and spec.num_gpus > 0:
            raise UsageError("asks for 1 GPU(s) but this machine has 0")
        return SimpleNamespace(spec=spec)

    def execute(self, plan: Any, *, pm: Any, sweep_id: str, **_: Any) -> RunOutcome:
        spec = plan.spec
        key = spec.tags["sweep_cell"]
        self.executed.append(key)
        self.plugin_managers.append(pm._pm)  # the sweep's _Observer around its pm
        result = make_result(spec.tool, spec.model, spec.dataset, num_gpus=spec.num_gpus,
                             sweep_id=sweep_id, tags=spec.tags)  # fmt: skip
        run_dir = Path(spec.output_dir) / result.run_id
        pm.run_started(spec, run_dir)
        if key in self.fail:
            raise OSError("No space left on device")
        ResultStore(Path(spec.output_dir) / "results.sqlite").add_run(result)
        return RunOutcome(result.run_id, run_dir, result)


def _sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: _Orchestrator, **kw: Any) -> int:
    monkeypatch.setattr(runner, "plan_run", fake.plan_run)
    monkeypatch.setattr(runner, "execute", fake.execute)
    path = tmp_path / "unit.toml"
    path.write_text(
        '[sweep]\nname = "unit"\ntools = ["pytorch"]\nhardware = ["cpu", "1gpu"]\n'
        '[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n'
        '[[workloads]]\ndataset = "cifar10"\nmodel = ["alexnet", "resnet50"]\n'
    )
    request = SweepRequest(source=str(path), output_dir=str(tmp_path / "logs"), **kw)
    console = Console(file=io.StringIO(), width=200)
    code = run_sweep(request, console)
    fake.output = console.file.getvalue()  # type: ignore[attr-defined]
    return code


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _Orchestrator(fail={"pytorch/alexnet/cifar10/CPU"})
    assert _sweep(tmp_path, monkeypatch, fake) == 1
    assert fake.executed == [
        "pytorch/lenet/mnist/CPU",
        "pytorch/lenet/mnist/1 GPU",
        "pytorch/alexnet/cifar10/CPU",
        "pytorch/alexnet/cifar10/1 GPU",
        "pytorch/resnet50/cifar10/CPU",
    ]
    out = fake.output  # type: ignore[attr-defined]
    assert out.index("asks for 1 GPU(s) but this machine has 0") < out.index("[1/5]")
    assert "[3/5] pytorch · alexnet · cifar10 · CPU: failed · - · 0 s · OSError: No space" in out
    store = ResultStore(tmp_path / "logs" / "results.sqlite")
    (sweep,) = SweepState.all_sweeps(store)
    assert sweep["status"] == "done" and sweep["cells"] == {"done": 5, "skipped": 1}
    cells = {c.key: c for c in SweepState(store, sweep["sweep_id"]).cells()}
    failed = cells["pytorch/alexnet/cifar10/CPU"]
    assert (failed.run_status, failed.reason) == ("failed", "OSError: No space left on device")
    assert failed.run_id  # learnt when the run started
    assert cells["pytorch/resnet50/cifar10/1 GPU"].status == "skipped"

    # --resume with --retry-failed runs only the failed cell again
    fake.executed.clear()
    fake.fail.clear()
    code = _sweep(tmp_path, monkeypatch, fake, resume=sweep["sweep_id"], retry_failed=True)
    assert code == 0
    assert fake.executed == ["pytorch/alexnet/cifar10/CPU"]
    cells = {c.key: c for c in SweepState(store, sweep["sweep_id"]).cells()}
    assert cells["pytorch/alexnet/cifar10/CPU"].run_status == "ok"
    assert cells["pytorch/alexnet/cifar10/CPU"].superseded == [failed.run_id]


def test_one_plugin_manager_plans_and_runs_every_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _Orchestrator(fail=set())
    assert _sweep(tmp_path, monkeypatch, fake) == 0
    assert len(fake.plugin_managers) == 6 + 5  # six cells planned, five run
    (pm,) = {id(p): p for p in fake.plugin_managers}.values()
    assert pm is not None  # given explicitly, not left to plan_run's default
