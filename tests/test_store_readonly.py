"""Reading the store writes nothing: no ``-wal``, ``-shm`` or any other file beside it,
and a read sees what a live writer committed (issue 28, item 8)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sweep_helpers import make_result

from harness.cli.main import main
from harness.store.store import ResultStore


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "results.sqlite"
    writer = ResultStore(path)  # WAL mode: the mode that made readers leave files
    writer.add_run(make_result("pytorch", "lenet", "mnist"))
    writer.add_run(make_result("jax", "lenet", "mnist"))
    assert sorted(os.listdir(path.parent)) == ["results.sqlite"]
    return path


def test_reading_the_store_leaves_no_file(store: Path) -> None:
    reader = ResultStore(store, readonly=True)
    (first, _) = reader.runs()
    assert reader.repeats(first.run_id) == [] and reader.ops() == []
    assert reader.has_table("sweeps")
    assert sorted(os.listdir(store.parent)) == ["results.sqlite"]


# (command line, its output file or None): every read command
READS = [
    ("report", None),
    ("report --format markdown -o {out}", "out.md"),
    ("export --format csv -o {out}", "out.csv"),
    ("export --format json -o {out}", "out.json"),
    ("compare {store} {store}", None),
    ("sweep --list --output-dir {dir}", None),
]


@pytest.mark.parametrize("command, output", READS)
def test_a_read_command_leaves_no_file_beside_the_store(
    store: Path, tmp_path: Path, command: str, output: str | None, capsys
) -> None:
    out = tmp_path / (output or "unused")
    line = command.format(store=store, dir=store.parent, out=out).split()
    if line[0] in ("report", "export"):
        line += ["--store", str(store)]
    assert main(line) == 0, capsys.readouterr().err
    assert sorted(os.listdir(store.parent)) == ["results.sqlite"]


def test_a_read_sees_what_a_live_writer_committed(store: Path) -> None:
    """A writer's -wal beside the store: the reader reads through it (mode=ro)."""
    live = sqlite3.connect(store)
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA wal_autocheckpoint=0")  # the row stays in the -wal
        live.execute("DELETE FROM runs WHERE tool = 'jax'")
        live.commit()
        assert Path(f"{store}-wal").stat().st_size > 0
        assert [r.spec.tool for r in ResultStore(store, readonly=True).runs()] == ["pytorch"]
    finally:
        live.close()


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_OFD_SETLK"), reason="Linux only")
def test_no_writer_checkpoints_into_the_file_while_it_is_read(store: Path) -> None:
    """While a read holds the store (immutable), a writer that ends cannot copy its
    WAL into the file under the reader: it leaves its -wal for the next writer."""
    reader = ResultStore(store, readonly=True)
    with reader._connect() as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        ResultStore(store).add_run(make_result("mxnet", "lenet", "mnist"))
        assert Path(f"{store}-wal").stat().st_size > 0  # not checkpointed
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2  # its snapshot
    assert len(ResultStore(store, readonly=True).runs()) == 3
    ResultStore(store).add_run(make_result("tensorflow", "lenet", "mnist"))
    assert sorted(os.listdir(store.parent)) == ["results.sqlite"]  # the writer cleaned up
