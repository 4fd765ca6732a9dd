"""The results store: one SQLite file that every run appends to.

Two tables. ``repeats`` gets a row as soon as each worker process ends, so a crash
later in the run loses nothing already measured. ``runs`` gets one row per run
(the aggregate over its repeats) when the run ends. Both keep the full JSON record
beside the columns that reports filter and group by. Sweeps keep their state in
``sweeps`` and ``sweep_cells`` (see harness.sweep.state).

Schema versions: 1 had runs and repeats; 2 adds the sweep tables (opening a version-1
file adds them); 3 adds the runs' configuration key (``config_key``, see
harness.store.configkey), achieved FLOP/s and MFU. Opening an older file adds the columns and
fills ``config_key`` of its runs from their stored results (the same function computes
it); their FLOP/s and MFU stay empty (those runs did not record them). 4 adds ``ops``,
one row per operation-benchmark run (harness.ops; opening an older file creates it).
Within version 4, the inference task added the columns ``task`` (rows stored before it
are training runs: "train"), ``latency_p50_s``, ``latency_p99_s`` and
``total_inference_s``: opening a file for writing adds any of the added columns it
lacks, so older files of the same version keep working (read-only opening changes
nothing; the columns it lacks are compared in Python, see ``runs``).

The columns of ``runs`` are declared once: the identity columns here (``_IDENTITY``),
a column per stored metric (and its std where declared) in harness.store.metrics.
A metric declared later (a plugin's) gets its column the same way: opening a file for
writing adds it.

The JSON of runs and repeats is harness.store.schema's records; rows written before
the records had a schema version are read through its upgrade, not rewritten.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.errors import UsageError
from harness.store import configkey, metrics
from harness.store.schema import OpsResult, RepeatRecord, RunResult, SchemaError

SCHEMA_VERSION = 4

_TABLES = """
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
CREATE TABLE IF NOT EXISTS ops (
    ops_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    tool TEXT NOT NULL,
    suite TEXT NOT NULL,
    precision TEXT NOT NULL,
    hardware TEXT NOT NULL,
    result_json TEXT NOT NULL
);
"""

# The identity columns of ``runs`` (what a run is, where and when it ran): name -> (SQL
# type, value of a run). The metric columns follow, from harness.store.metrics.
_IDENTITY: dict[str, tuple[str, Callable[[RunResult], Any]]] = {
    "run_id": ("TEXT PRIMARY KEY", lambda r: r.run_id),
    "started_at": ("TEXT NOT NULL", lambda r: r.started_at),
    "finished_at": ("TEXT", lambda r: r.finished_at),
    "status": ("TEXT NOT NULL", lambda r: r.summary.status),
    "tool": ("TEXT NOT NULL", lambda r: r.spec.tool),
    "model": ("TEXT NOT NULL", lambda r: r.spec.model),
    "dataset": ("TEXT NOT NULL", lambda r: r.spec.dataset),
    "num_gpus": ("INTEGER NOT NULL", lambda r: r.spec.num_gpus),
    "hardware": ("TEXT NOT NULL", lambda r: r.hardware),
    "gpu_name": ("TEXT", lambda r: r.gpu_name),
    "batch_size": ("INTEGER", lambda r: r.spec.batch_size),
    "global_batch": ("INTEGER", lambda r: r.global_batch),
    "precision": ("TEXT", lambda r: r.spec.precision),
    "synthetic": ("INTEGER", lambda r: None if r.synthetic is None else int(r.synthetic)),
    "repeats": ("INTEGER", lambda r: r.summary.repeats),
    "repeats_ok": ("INTEGER", lambda r: r.summary.repeats_ok),
    "host": ("TEXT", lambda r: r.environment.get("hostname")),
    "harness_commit": ("TEXT", lambda r: r.environment.get("harness_commit")),
    "sweep_id": ("TEXT", lambda r: r.sweep_id),
    "config_key": ("TEXT", lambda r: configkey.config_key(r)),
    "task": ("TEXT", lambda r: r.spec.task),
}


def run_columns() -> dict[str, tuple[str, Callable[[RunResult], Any]]]:
    """Every column of ``runs`` but ``result_json``: the identity columns, then one (or
    two, with its std) per stored metric of the registry."""
    columns = dict(_IDENTITY)
    for metric in metrics.registry():
        columns |= metric.store_columns()
    return columns


def _create_runs() -> str:
    lines = [f"    {name} {kind}," for name, (kind, _) in run_columns().items()]
    body = "\n".join([*lines, "    result_json TEXT NOT NULL"])
    return f"CREATE TABLE IF NOT EXISTS runs (\n{body}\n);\n"


def _added_type(kind: str) -> str:
    """The type of a column added to an older file (ALTER TABLE cannot add NOT NULL)."""
    return kind.split()[0]


class StoreError(UsageError):
    """A file that cannot be used as a results store (one line for the user)."""


class StoreFullError(StoreError):
    """The store's disk is full (SQLite rolled the write back: nothing stored is lost)."""


def _no_space(folder: Path) -> bool:
    """Whether ``folder`` cannot take one more page (tells a full disk from another I/O
    error); False where nothing can be written for another reason (read-only)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".harness-space-check-")
    except OSError as exc:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as exc:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    finally:
        os.close(fd)
        os.unlink(name)
    return False


class ResultStore:
    """Append-only access to ``results.sqlite``; safe for several processes (WAL).

    ``readonly``: for reports, exports and comparisons: the file is opened read-only and
    never changed (no WAL switch, no tables, no migration; an older file is read as it
    is). A file that is not a SQLite database, not the harness's, or of a newer schema
    raises :class:`StoreError`. Rows whose JSON cannot be read are skipped with a warning
    naming the run (see ``skipped``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.skipped: list[str] = []  # "run_id: why" of the rows left out
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no results store at {self.path}")
            self._check(write=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        version = self._check(write=True)
        with self._connect() as db:
            db.executescript(_create_runs() + _TABLES)
        if version < SCHEMA_VERSION or self._lacks_columns():
            self._migrate()

    def _lacks_columns(self) -> bool:
        """Whether ``runs`` lacks one of its columns (added within the current version,
        or a metric's declared since)."""
        with self._connect(journal=False) as db:
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        return not set(run_columns()) <= present

    def _check(self, *, write: bool) -> int:
        """The file's schema version, after checking it is a store this harness reads."""
        try:
            with self._connect(journal=False) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {
                    row[0]
                    for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
        except sqlite3.DatabaseError as exc:
            self._if_full(exc)
            raise StoreError(f"{self.path} is not a readable SQLite database ({exc})") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer harness (schema {version}, this one "
                f"reads up to {SCHEMA_VERSION}); upgrade the harness"
            )
        if tables and "runs" not in tables:
            raise StoreError(f"{self.path} is not a harness results store (it has no runs table)")
        if not tables and not write:
            raise StoreError(f"{self.path} is an empty database, not a results store")
        self.tables = tables
        return int(version)

    def _migrate(self) -> None:
        """Adds the columns the file lacks and fills the configuration key of older runs.

        One IMMEDIATE transaction: several processes may open an old file at once."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, (kind, _) in run_columns().items():
                if column not in present:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {_added_type(kind)}")
            if "task" not in present:  # every run stored before the column trained
                db.execute("UPDATE runs SET task = 'train' WHERE task IS NULL")
            rows = db.execute(
                "SELECT run_id, result_json FROM runs WHERE config_key IS NULL"
            ).fetchall()
            for run_id, text in rows:
                try:
                    key = configkey.config_key(RunResult.from_json(text))
                except SchemaError:
                    key = "legacy"  # an unreadable record: its own cell
                db.execute("UPDATE runs SET config_key = ? WHERE run_id = ?", (key, run_id))
            db.execute("CREATE INDEX IF NOT EXISTS runs_key ON runs (config_key)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                self._if_full(exc)
            raise
        finally:
            db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A connection inside one transaction (committed on success), for modules that
        keep their own tables in this file (the sweep state)."""
        return self._connect()

    def has_table(self, name: str) -> bool:
        with self._connect() as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name = ?", (name,)
            ).fetchone()
        return found is not None

    @contextmanager
    def _connect(self, *, journal: bool = True) -> Iterator[sqlite3.Connection]:
        try:
            with ExitStack() as stack:
                if self.readonly:
                    db = stack.enter_context(_reader(self.path))
                else:
                    db = sqlite3.connect(self.path, timeout=30)
                    stack.callback(db.close)
                db.row_factory = sqlite3.Row
                if journal and not self.readonly:
                    db.execute("PRAGMA journal_mode=WAL")
                with db:  # one transaction
                    yield db
        except sqlite3.OperationalError as exc:
            self._if_full(exc)
            raise

    def _if_full(self, exc: sqlite3.Error) -> None:
        """Raises StoreFullError when ``exc`` comes of a full disk: SQLite says so
        ("database or disk is full"), or only "disk I/O error" (a WAL index it could
        not grow) while the store's folder cannot take one more page."""
        if "disk is full" in str(exc) or (not self.readonly and _no_space(self.path.parent)):
            raise StoreFullError(
                f"no space left on device: {self.path} ({exc}); what was measured is kept: "
                "free some space and start again (the next start takes into the store what "
                "a run left on disk)"
            ) from None

    def add_repeat(self, run_id: str, repeat: int, record: RepeatRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO repeats VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    repeat,
                    record.status,
                    record.cause,
                    record.timed.images_per_sec,
                    record.to_json(),
                ),
            )

    def add_run(self, result: RunResult) -> None:
        if self._lacks_columns():  # a metric registered after the file was opened
            self._migrate()
        columns_of = run_columns()
        values = [get(result) for _, get in columns_of.values()]
        values.append(result.to_json())
        columns = ", ".join([*columns_of, "result_json"])
        marks = ", ".join("?" * len(values))
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", values)

    def runs(self, **where: Any) -> list[RunResult]:
        """Full results of the runs whose columns equal ``where``, oldest first."""
        columns_of = run_columns()
        for column in where:
            if column not in columns_of:
                raise ValueError(f"unknown column {column!r}")
        with self._connect() as db:
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            in_sql = {c: v for c, v in where.items() if c in present}
            clause = " AND ".join(f"{c} = ?" for c in in_sql) or "1"
            rows = db.execute(
                f"SELECT run_id, result_json FROM runs WHERE {clause} ORDER BY started_at, run_id",
                list(in_sql.values()),
            ).fetchall()
        results = []
        for row in rows:
            try:
                result = RunResult.from_json(row["result_json"])
            except SchemaError as exc:
                self._skip(str(row["run_id"]), exc)
                continue
            # columns an older file lacks (read-only, not migrated): compared here
            if all(columns_of[c][1](result) == v for c, v in where.items() if c not in in_sql):
                results.append(result)
        return results

    def repeats(self, run_id: str) -> list[RepeatRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT repeat, record_json FROM repeats WHERE run_id = ? ORDER BY repeat",
                (run_id,),
            ).fetchall()
        records = []
        for row in rows:
            try:
                records.append(RepeatRecord.from_json(row["record_json"]))
            except SchemaError as exc:
                self._skip(f"{run_id} repeat {row['repeat']}", exc)
        return records

    def add_ops(self, result: OpsResult) -> None:
        """Stores one operation-benchmark run (replacing a row of the same ``ops_id``)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.ops_id,
                    result.started_at or "",
                    result.finished_at,
                    result.status,
                    result.tool,
                    result.suite,
                    result.precision,
                    result.hardware,
                    result.to_json(),
                ),
            )

    def ops(self, **where: Any) -> list[OpsResult]:
        """Operation-benchmark runs whose columns equal ``where``, oldest first (none in a
        file older than schema 4 opened read-only)."""
        allowed = {"ops_id", "status", "tool", "suite", "precision", "hardware"}
        for column in where:
            if column not in allowed:
                raise ValueError(f"unknown column {column!r}")
        if not self.has_table("ops"):
            return []
        clause = " AND ".join(f"{c} = ?" for c in where) or "1"
        with self._connect() as db:
            rows = db.execute(
                f"SELECT ops_id, result_json FROM ops WHERE {clause} ORDER BY started_at, ops_id",
                list(where.values()),
            ).fetchall()
        results = []
        for row in rows:
            try:
                results.append(OpsResult.from_json(row["result_json"]))
            except SchemaError as exc:
                self._skip(f"ops {row['ops_id']}", exc)
        return results

    def _skip(self, what: str, exc: Exception) -> None:
        note = f"{what}: {exc}"
        if note not in self.skipped:
            self.skipped.append(note)
            print(f"warning: {self.path}: skipped run {note}", file=sys.stderr)


# SQLite's lock bytes (os_unix.c): a writer needs the whole SHARED range to checkpoint
# into the file at its last close; a reader's read lock on that range keeps it out.
_SHARED_FIRST, _SHARED_SIZE = 0x40000000 + 2, 510
_LIVE = ("-wal", "-shm", "-journal")  # a writer is (or was) at work: SQLite's own files


@contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that leaves no file beside the store (issue 28, item 8).

    SQLite's ``mode=ro`` on a WAL-mode file creates ``-wal`` and ``-shm`` and cannot
    remove them. So: when no writer's file is there, the store is read ``immutable``
    (no file, no lock of SQLite's) while this process holds a read lock on SQLite's
    shared range, so that no writer can checkpoint into the file meanwhile (a writer that
    starts still commits to its own ``-wal``: the read is the store as it was when it
    began). When a writer's files are there, or no such lock can be taken (not Linux),
    ``mode=ro`` reads the WAL through them (the writer removes them when it ends). On a
    read-only filesystem ``mode=ro`` cannot work with a WAL file: ``immutable``."""
    uri = f"file:{quote(str(path.resolve()))}"
    lock = None if _live(path) else _read_lock(path)
    if lock is not None and _live(path):  # a writer started before the lock was taken
        os.close(lock)
        lock = None
    try:
        if lock is not None:
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=30)
        else:
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
                db.execute("PRAGMA user_version").fetchone()
            except sqlite3.OperationalError:
                db = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30)
        try:
            yield db
        finally:
            db.close()
    finally:
        if lock is not None:
            os.close(lock)


def _live(path: Path) -> bool:
    return any(Path(f"{path}{suffix}").exists() for suffix in _LIVE)


def _read_lock(path: Path) -> int | None:
    """A descriptor of ``path`` holding an open-file-description read lock on SQLite's
    shared range (released when it is closed, never by SQLite's own closes); None where
    such locks do not exist or the file cannot be opened."""
    try:
        import fcntl

        ofd_setlk = fcntl.F_OFD_SETLK  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    request = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, _SHARED_FIRST, _SHARED_SIZE, 0)
    deadline = time.monotonic() + 30
    while True:  # a writer holds the range only while it checkpoints
        try:
            fcntl.fcntl(fd, ofd_setlk, request)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)
