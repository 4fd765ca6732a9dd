"""The results store: one SQLite file that every run appends to.

Two tables. ``repeats`` gets a row as soon as each worker process ends, so a crash
later in the run loses nothing already measured. ``runs`` gets one row per run
(the aggregate over its repeats) when the run ends. Both keep the full JSON record
beside the columns that reports filter and group by. Sweeps keep their state in
``sweeps`` and ``sweep_cells`` (see harness.sweep.state).

Schema versions: 1 had runs and repeats; 2 adds the sweep tables (opening a version-1
file adds them); 3 adds the runs' configuration key (``config_key``, see
harness.results.configkey), achieved FLOP/s and MFU. Opening an older file adds the columns and
fills ``config_key`` of its runs from their stored results (the same function computes
it); their FLOP/s and MFU stay empty (those runs did not record them).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    num_gpus INTEGER NOT NULL,
    hardware TEXT NOT NULL,
    gpu_name TEXT,
    batch_size INTEGER,
    global_batch INTEGER,
    precision TEXT,
    synthetic INTEGER,
    repeats INTEGER,
    repeats_ok INTEGER,
    images_per_sec REAL,
    images_per_sec_std REAL,
    gpu_power_w REAL,
    gpu_memory_mib REAL,
    energy_j REAL,
    joules_per_image REAL,
    execution_time_s REAL,
    accuracy REAL,
    host TEXT,
    harness_commit TEXT,
    sweep_id TEXT,
    result_json TEXT NOT NULL,
    config_key TEXT,
    flops_per_sec REAL,
    mfu REAL
);
CREATE TABLE IF NOT EXISTS repeats (
    run_id TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    status TEXT NOT NULL,
    cause TEXT,
    images_per_sec REAL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (run_id, repeat)
);
CREATE INDEX IF NOT EXISTS runs_config ON runs (tool, model, dataset, hardware);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    owner TEXT,
    config_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_cells (
    sweep_id TEXT NOT NULL,
    cell TEXT NOT NULL,
    position INTEGER NOT NULL,
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    hardware TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    run_id TEXT,
    run_status TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    superseded_json TEXT NOT NULL DEFAULT '[]',
    spec_json TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sweep_id, cell)
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep_id);
"""

# Columns of ``runs`` filled from the result dict: column -> path of keys.
_RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "run_id": ("run_id",),
    "started_at": ("started_at",),
    "finished_at": ("finished_at",),
    "status": ("summary", "status"),
    "tool": ("spec", "tool"),
    "model": ("spec", "model"),
    "dataset": ("spec", "dataset"),
    "num_gpus": ("spec", "num_gpus"),
    "hardware": ("hardware",),
    "gpu_name": ("gpu_name",),
    "batch_size": ("spec", "batch_size"),
    "global_batch": ("global_batch",),
    "precision": ("spec", "precision"),
    "synthetic": ("synthetic",),
    "repeats": ("summary", "repeats"),
    "repeats_ok": ("summary", "repeats_ok"),
    "images_per_sec": ("summary", "images_per_sec", "mean"),
    "images_per_sec_std": ("summary", "images_per_sec", "std"),
    "gpu_power_w": ("summary", "gpu_power_w", "mean"),
    "gpu_memory_mib": ("summary", "gpu_memory_mib", "mean"),
    "energy_j": ("summary", "energy_j", "mean"),
    "joules_per_image": ("summary", "joules_per_image", "mean"),
    "execution_time_s": ("summary", "execution_time_s", "mean"),
    "accuracy": ("summary", "accuracy", "mean"),
    "host": ("environment", "hostname"),
    "harness_commit": ("environment", "harness_commit"),
    "sweep_id": ("sweep_id",),
    "config_key": ("config_key",),
    "flops_per_sec": ("summary", "flops", "achieved_total"),
    "mfu": ("summary", "flops", "mfu"),
}
# Columns added after version 2, with their types (added to older files when opened).
_ADDED_COLUMNS = {"config_key": "TEXT", "flops_per_sec": "REAL", "mfu": "REAL"}


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    if isinstance(node, bool):
        return int(node)
    return node


class ResultStore:
    """Append-only access to ``results.sqlite``; safe for several processes (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer harness (schema {version}); upgrade"
                )
            db.executescript(_SCHEMA)
        if version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Adds the version-3 columns and fills the configuration key of older runs.

        One IMMEDIATE transaction: several processes may open an old file at once."""
        from harness.results import configkey

        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            rows = db.execute(
                "SELECT run_id, result_json FROM runs WHERE config_key IS NULL"
            ).fetchall()
            for run_id, text in rows:
                try:
                    key = configkey.config_key(json.loads(text))
                except (ValueError, TypeError, AttributeError):
                    key = "legacy"  # an unreadable record: its own cell
                db.execute("UPDATE runs SET config_key = ? WHERE run_id = ?", (key, run_id))
            db.execute("CREATE INDEX IF NOT EXISTS runs_key ON runs (config_key)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A connection inside one transaction (committed on success), for modules that
        keep their own tables in this file (the sweep state)."""
        return self._connect()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction
                yield db
        finally:
            db.close()

    def add_repeat(self, run_id: str, repeat: int, record: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO repeats VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    repeat,
                    record["status"],
                    record.get("cause"),
                    _dig(record, ("timed", "images_per_sec")),
                    json.dumps(record, default=str),
                ),
            )

    def add_run(self, result: dict[str, Any]) -> None:
        from harness.results import configkey

        values = [
            configkey.config_key(result) if column == "config_key" else _dig(result, path)
            for column, path in _RUN_COLUMNS.items()
        ]
        values.append(json.dumps(result, default=str))
        columns = ", ".join([*_RUN_COLUMNS, "result_json"])
        marks = ", ".join("?" * len(values))
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", values)

    def runs(self, **where: Any) -> list[dict[str, Any]]:
        """Full results of the runs whose columns equal ``where``, oldest first."""
        for column in where:
            if column not in _RUN_COLUMNS:
                raise ValueError(f"unknown column {column!r}")
        clause = " AND ".join(f"{c} = ?" for c in where) or "1"
        with self._connect() as db:
            rows = db.execute(
                f"SELECT result_json FROM runs WHERE {clause} ORDER BY started_at, run_id",
                list(where.values()),
            ).fetchall()
        return [json.loads(row["result_json"]) for row in rows]

    def repeats(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT record_json FROM repeats WHERE run_id = ? ORDER BY repeat", (run_id,)
            ).fetchall()
        return [json.loads(row["record_json"]) for row in rows]
