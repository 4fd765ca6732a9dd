"""A sweep's state, kept in the results store beside the runs it produced.

Table ``sweeps`` has one row per sweep (its id, name, fingerprint, status, the parsed
sweep file); ``sweep_cells`` one row per cell: its RunSpec, status, the run that
finished it and the runs it superseded. Every change is one SQLite transaction, so a
sweep killed at any instant (Ctrl-C, crash, power loss, SIGKILL) leaves a consistent
state; the runs table is the ground truth for which cells finished (see reconcile).

Cell statuses: ``pending`` (to run), ``running`` (a run was started), ``done`` (a run
finished: ``run_status`` is its status, ok or not, or ``failed`` when the harness
itself raised), ``skipped`` (the plan was refused; ``reason`` says why).

Cells run by an executor that submits jobs (SLURM) also keep ``job_id`` (empty while
being submitted) and ``job_state`` (the scheduler's last word). Those columns are added
to an older store's ``sweep_cells`` when it is opened for writing; read-only, a store
without them reads as having no jobs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.errors import UsageError
from harness.run.orchestrator import utc_now
from harness.spec import RunSpec
from harness.store.schema import RunResult
from harness.store.store import ResultStore
from harness.sweep.config import Cell

PENDING, RUNNING, DONE, SKIPPED = "pending", "running", "done", "skipped"
FAILED = "failed"  # run_status of a cell whose run raised inside the harness


@dataclass
class CellState:
    key: str
    position: int
    tool: str
    model: str
    dataset: str
    hardware: str
    status: str
    spec: RunSpec
    reason: str | None = None
    run_id: str | None = None
    run_status: str | None = None
    attempts: int = 0
    superseded: list[str] = field(default_factory=list)
    job_id: str | None = None  # the scheduler's job; "" while it is being submitted
    job_state: str | None = None  # e.g. PENDING, RUNNING, COMPLETED, CANCELLED
    updated_at: str | None = None  # when the cell last changed state (ISO 8601, UTC)


# Columns added to sweep_cells after schema version 4 (no schema change: older stores
# get them when opened for writing, and read them as absent).
_JOB_COLUMNS = {"job_id": "TEXT", "job_state": "TEXT"}


def new_sweep_id(name: str) -> str:
    return f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_elsewhere(owner: str | None) -> bool:
    """Whether ``owner`` (host:pid) is another live process on this host."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepState:
    """Read and update one sweep's rows."""

    def __init__(self, store: ResultStore, sweep_id: str) -> None:
        self.store = store
        self.sweep_id = sweep_id
        if not store.readonly:
            _add_job_columns(store)

    # Creating and finding ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        store: ResultStore,
        *,
        name: str,
        source: str,
        fingerprint: str,
        config: dict[str, Any],
        cells: list[Cell],
    ) -> SweepState:
        """A new sweep, claimed by this process in the same transaction.

        Atomic: checking that no live process runs a sweep of the same plan and creating
        this one are one write transaction (BEGIN IMMEDIATE), so the same sweep started
        twice at once runs once; the second start gets a UsageError naming the holder."""
        sweep_id = new_sweep_id(name)
        now = utc_now()
        _add_job_columns(store)  # the rows are written whole
        with store.transaction() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer from here to the commit
            for row in db.execute(
                "SELECT sweep_id, owner FROM sweeps WHERE fingerprint = ? AND status = ?",
                (fingerprint, RUNNING),
            ).fetchall():
                if _alive_elsewhere(row["owner"]):
                    raise UsageError(
                        f"sweep {row['sweep_id']} (the same plan) is being run by process "
                        f"{row['owner']}; wait for it or stop it first"
                    )
            db.execute(
                "INSERT INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    name,
                    source,
                    fingerprint,
                    RUNNING,  # claimed at once: no window for a second start
                    now,
                    now,
                    None,
                    json.dumps(config, default=str),
                ),
            )
            db.execute("UPDATE sweeps SET owner = ? WHERE sweep_id = ?", (_owner(), sweep_id))
            db.executemany(
                "INSERT INTO sweep_cells (sweep_id, cell, position, tool, model, dataset,"
                " hardware, status, spec_json, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        sweep_id,
                        c.key,
                        c.position,
                        c.tool,
                        c.model,
                        c.dataset,
                        c.hardware,
                        PENDING,
                        c.spec.to_json(),
                        now,
                    )
                    for c in cells
                ],
            )
        return cls(store, sweep_id)

    @staticmethod
    def _newest(store: ResultStore, fingerprint: str, condition: str = "") -> str | None:
        """The newest sweep with this fingerprint (and the SQL ``condition``), if any."""
        if not store.has_table("sweeps"):  # an old store read as it is
            return None
        with store.transaction() as db:
            row = db.execute(
                f"SELECT sweep_id FROM sweeps WHERE fingerprint = ?{condition}"
                " ORDER BY created_at DESC, sweep_id DESC LIMIT 1",
                (fingerprint,),
            ).fetchone()
        return row["sweep_id"] if row else None

    @staticmethod
    def find_latest(store: ResultStore, fingerprint: str) -> str | None:
        """The newest sweep with this fingerprint, finished or not."""
        return SweepState._newest(store, fingerprint)

    @staticmethod
    def find_unfinished(store: ResultStore, fingerprint: str) -> str | None:
        """The newest sweep with this fingerprint that has not finished, if any."""
        return SweepState._newest(store, fingerprint, " AND status != 'done'")

    @staticmethod
    def all_sweeps(store: ResultStore) -> list[dict[str, Any]]:
        """Every sweep, oldest first, with its cell counts by status."""
        if not store.has_table("sweeps"):  # an old store read as it is
            return []
        with store.transaction() as db:
            rows = db.execute(
                "SELECT sweep_id, name, source, status, created_at, updated_at FROM sweeps"
                " ORDER BY created_at, sweep_id"
            ).fetchall()
            counts = db.execute(
                "SELECT sweep_id, status, COUNT(*) AS n FROM sweep_cells GROUP BY sweep_id, status"
            ).fetchall()
        out = [dict(r) | {"cells": {}} for r in rows]
        index = {s["sweep_id"]: s for s in out}
        for row in counts:
            if row["sweep_id"] in index:
                index[row["sweep_id"]]["cells"][row["status"]] = row["n"]
        return out

    @staticmethod
    def latest_id(store: ResultStore) -> str | None:
        sweeps = SweepState.all_sweeps(store)
        return sweeps[-1]["sweep_id"] if sweeps else None

    def info(self) -> dict[str, Any]:
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM sweeps WHERE sweep_id = ?", (self.sweep_id,)).fetchone()
        if row is None:
            raise UsageError(f"no sweep {self.sweep_id!r} in {self.store.path}")
        info = dict(row)
        info["config"] = json.loads(info.pop("config_json"))
        return info

    def cells(self) -> list[CellState]:
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT * FROM sweep_cells WHERE sweep_id = ? ORDER BY position",
                (self.sweep_id,),
            ).fetchall()
        jobs = bool(rows) and "job_id" in rows[0].keys()  # noqa: SIM118 (a Row's keys)
        return [
            CellState(
                key=r["cell"],
                position=r["position"],
                tool=r["tool"],
                model=r["model"],
                dataset=r["dataset"],
                hardware=r["hardware"],
                status=r["status"],
                spec=RunSpec.from_dict(json.loads(r["spec_json"])),
                reason=r["reason"],
                run_id=r["run_id"],
                run_status=r["run_status"],
                attempts=r["attempts"],
                superseded=json.loads(r["superseded_json"]),
                job_id=r["job_id"] if jobs else None,
                job_state=r["job_state"] if jobs else None,
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    # Ownership -----------------------------------------------------------------------

    def claim(self) -> None:
        """Marks the sweep as running in this process; refuses if another live one runs it."""
        with self.store.transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT status, owner FROM sweeps WHERE sweep_id = ?", (self.sweep_id,)
            ).fetchone()
            if row is None:
                raise UsageError(f"no sweep {self.sweep_id!r} in {self.store.path}")
            if row["status"] == RUNNING and _alive_elsewhere(row["owner"]):
                raise UsageError(
                    f"sweep {self.sweep_id} is being run by process {row['owner']}; "
                    "wait for it or stop it first"
                )
            db.execute(
                "UPDATE sweeps SET status = ?, owner = ?, updated_at = ? WHERE sweep_id = ?",
                (RUNNING, _owner(), utc_now(), self.sweep_id),
            )

    def release(self, status: str) -> None:
        """Ends this process's hold: status ``done``, ``interrupted`` or ``incomplete``."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sweeps SET status = ?, owner = NULL, updated_at = ? WHERE sweep_id = ?",
                (status, utc_now(), self.sweep_id),
            )

    # Cell transitions (each one transaction) -----------------------------------------

    def _update(self, key: str, **values: Any) -> None:
        values["updated_at"] = utc_now()
        if "superseded" in values:
            values["superseded_json"] = json.dumps(values.pop("superseded"))
        sets = ", ".join(f"{column} = ?" for column in values)
        with self.store.transaction() as db:
            db.execute(
                f"UPDATE sweep_cells SET {sets} WHERE sweep_id = ? AND cell = ?",
                [*values.values(), self.sweep_id, key],
            )

    def mark_running(self, cell: CellState) -> None:
        cell.status, cell.run_id, cell.attempts = RUNNING, None, cell.attempts + 1
        self._update(
            cell.key,
            status=RUNNING,
            run_id=None,
            run_status=None,
            reason=None,
            attempts=cell.attempts,
        )

    def mark_submitting(self, cell: CellState) -> None:
        """About to submit the cell's job: running, one more attempt, job id "" (so a
        submitter killed before it learns the id looks the job up instead of submitting
        it again)."""
        self.mark_running(cell)
        self.set_job(cell, "", None)

    def set_job(self, cell: CellState, job_id: str | None, job_state: str | None) -> None:
        cell.job_id, cell.job_state = job_id, job_state
        self._update(cell.key, job_id=job_id, job_state=job_state)

    def set_run_id(self, cell: CellState, run_id: str) -> None:
        cell.run_id = run_id
        self._update(cell.key, run_id=run_id)

    def mark_done(
        self, cell: CellState, run_id: str | None, run_status: str, reason: str | None = None
    ) -> None:
        cell.status, cell.run_id, cell.run_status, cell.reason = DONE, run_id, run_status, reason
        self._update(cell.key, status=DONE, run_id=run_id, run_status=run_status, reason=reason)

    def mark_pending(self, cell: CellState, *, supersede: bool = True) -> None:
        """Back to pending; the run it had (interrupted, killed, or retried) is superseded."""
        if supersede and cell.run_id and cell.run_id not in cell.superseded:
            cell.superseded.append(cell.run_id)
        cell.status, cell.run_id, cell.run_status, cell.reason = PENDING, None, None, None
        self._update(
            cell.key,
            status=PENDING,
            run_id=None,
            run_status=None,
            reason=None,
            superseded=cell.superseded,
        )

    def mark_skipped(self, cell: CellState, reason: str) -> None:
        cell.status, cell.reason = SKIPPED, reason
        self._update(cell.key, status=SKIPPED, reason=reason)

    # Recovery ------------------------------------------------------------------------

    def reconcile(self, *, retry_failed: bool = False, keep_jobs: bool = False) -> list[str]:
        """Brings cells in line with the runs table after an abrupt end; returns notes.

        A cell that is not done but has a finished run of this sweep (any status but
        ``interrupted``, and not superseded) is done: the sweep died between storing the
        run and marking the cell. A cell left ``running`` without one is pending again and
        its run is superseded. With ``retry_failed``, done cells whose run was not ok
        become pending too. With ``keep_jobs``, a running cell that has a job (or was
        being submitted) is left to its executor, which re-attaches to the job.
        """
        finished: dict[str, list[RunResult]] = {}
        for result in self.store.runs(sweep_id=self.sweep_id):
            key = result.spec.tags.get("sweep_cell")
            if key and result.status != "interrupted":
                finished.setdefault(key, []).append(result)
        notes = []
        for cell in self.cells():
            if cell.status in (PENDING, RUNNING, SKIPPED):
                runs = [r for r in finished.get(cell.key, []) if r.run_id not in cell.superseded]
                if runs:
                    latest = runs[-1]
                    self.mark_done(cell, latest.run_id, latest.status)
                    notes.append(f"{cell.key}: finished as run {latest.run_id}")
                elif cell.status == RUNNING and keep_jobs and cell.job_id is not None:
                    continue
                elif cell.status == RUNNING:
                    lost = cell.run_id or "(no run id yet)"
                    self.mark_pending(cell)
                    notes.append(f"{cell.key}: run {lost} did not finish; it will run again")
            elif cell.status == DONE and retry_failed and cell.run_status != "ok":
                self.mark_pending(cell)
                self.set_job(cell, None, None)
                notes.append(f"{cell.key}: {cell.run_status}; it will run again")
        return notes


def _add_job_columns(store: ResultStore) -> None:
    """Adds the job columns to an older store's sweep_cells (one IMMEDIATE transaction)."""
    with store.transaction() as db:
        present = {row[1] for row in db.execute("PRAGMA table_info(sweep_cells)")}
        if all(column in present for column in _JOB_COLUMNS):
            return
        db.execute("BEGIN IMMEDIATE")
        present = {row[1] for row in db.execute("PRAGMA table_info(sweep_cells)")}
        for column, kind in _JOB_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE sweep_cells ADD COLUMN {column} {kind}")
