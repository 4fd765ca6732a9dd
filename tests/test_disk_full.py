"""A disk that fills mid-run loses nothing already measured: what is on disk reaches
the store at the next start, and the run says what happened (issue 13, item 3).

Every command on a full disk says "no space left on device" with the path, exits 2 and
leaves the store as it was (issue 28, item 2): ENOSPC is injected at each write of the
store (in-process) and at each file or folder a run writes (the enospc_injector plugin),
and a real small filesystem (tmpfs: needs root, skipped where it cannot be mounted)
runs the commands as a user would."""

from __future__ import annotations

import errno
import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import make_result

from harness.run.recover import OWNER_KEY, adopt, owner
from harness.store import store as store_module
from harness.store.schema import RepeatRecord, RunResult
from harness.store.store import ResultStore, StoreFullError

RUN = (
    "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--batch-size", "8",
    "--warmup-steps", "1", "--steps", "3", "--idle-baseline", "0", "-o", "step_s=0.001",
)  # fmt: skip


def fake_run(output: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *RUN,
        "--output-dir",
        str(output),
        *args,
        HARNESS_CACHE_DIR=str(output.parent / "cache"),
        **env,
    )


def rows(store: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(store)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_a_run_left_out_of_the_store_is_taken_in_at_the_next_start(tmp_path: Path) -> None:
    output = tmp_path / "logs"
    first = fake_run(output, "--repeats", "2")
    assert first.returncode == 0, first.stderr
    store = output / "results.sqlite"
    ((run_id,),) = rows(store, "SELECT run_id FROM runs")
    # as if the disk had filled while storing repeat 2: no run row, no repeat-2 row, no
    # result.json, and repeat 2's record.json torn (its events.jsonl is whole)
    db = sqlite3.connect(store)
    db.execute("DELETE FROM runs")
    db.execute("DELETE FROM repeats WHERE repeat = 2")
    db.commit()
    db.close()
    (output / run_id / "result.json").unlink()
    record = output / run_id / "repeat-2" / "record.json"
    record.write_text(record.read_text()[:100])

    second = fake_run(output, "--repeats", "1")
    assert second.returncode == 0, second.stderr
    assert (
        f"taken into the store: run {run_id}: stopped before it was stored; taken in as "
        "interrupted with 2 ok repeat(s), 1 rebuilt from events.jsonl"
    ) in " ".join(second.stderr.split())
    runs = {r.run_id: r for r in ResultStore(store, readonly=True).runs()}
    adopted = runs[run_id]
    assert adopted.status == "interrupted" and adopted.summary.repeats_ok == 2
    assert [r.repeat for r in ResultStore(store).repeats(run_id)] == [1, 2]
    assert adopted.summary.images_per_sec.n == 2  # the rebuilt repeat's figure counts
    assert RunResult.from_json((output / run_id / "result.json").read_text()) == adopted
    third = fake_run(output, "--repeats", "1")  # nothing more to take in
    assert "taken into the store" not in third.stderr


def test_a_stored_result_json_is_taken_in_and_a_live_run_left_alone(tmp_path: Path) -> None:
    output = tmp_path / "logs"
    assert fake_run(output, "--repeats", "1").returncode == 0
    store = ResultStore(output / "results.sqlite")
    (result,) = store.runs()
    db = sqlite3.connect(output / "results.sqlite")
    db.execute("DELETE FROM runs")
    db.commit()
    db.close()
    # a second run folder whose orchestrator is this (live) process: still running
    live = output / "20990101-000000-live"
    live.mkdir()
    running = RunResult(run_id=live.name, environment={OWNER_KEY: owner()})
    (live / "run.json").write_text(running.to_json())
    notes = adopt(store, output)
    assert notes == [f"run {result.run_id}: its result.json was not in the store; taken in (ok)"]
    assert [r.run_id for r in store.runs()] == [result.run_id]
    assert adopt(store, output) == []


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(
            f"a small filesystem cannot be mounted here (needs root): {made.stderr.strip()}"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_mid_run(small_disk: Path) -> None:
    output = small_disk / "logs"
    full = fake_run(output, "--repeats", "2", HARNESS_PLUGINS="fake_backend,disk_filler",
                    HARNESS_TEST_FILL_DISK="1")  # fmt: skip
    assert full.returncode == 2, full.stderr
    assert "no space left on device" in full.stderr and "Traceback" not in full.stderr
    (run_dir,) = [p for p in output.iterdir() if (p / "run.json").is_file()]
    assert (run_dir / "repeat-1" / "record.json").is_file()
    (output / "filler.bin").unlink()  # the user frees space and starts again
    again = fake_run(output, "--repeats", "1")
    assert again.returncode == 0, again.stderr
    assert f"taken into the store: run {run_dir.name}" in " ".join(again.stderr.split())
    stored = {r.run_id: r for r in ResultStore(output / "results.sqlite").runs()}
    kept = stored[run_dir.name]
    assert kept.status == "interrupted"
    assert kept.repeats[0].ok and kept.repeats[0].timed.images == 3 * 8
    json.loads((run_dir / "result.json").read_text())  # written whole this time


# The store: SQLite fails at a statement (what it says on a full disk) -----------------

# (statement that fails, SQLite's words, step that meets it)
STORE_FAULTS = [
    ("PRAGMA journal_mode", "disk I/O error", "open"),  # the WAL index cannot grow
    ("PRAGMA user_version", "disk I/O error", "open"),  # was "not a readable database"
    ("CREATE TABLE", "database or disk is full", "open"),
    ("INSERT OR REPLACE INTO runs", "database or disk is full", "add_run"),
    ("INSERT OR REPLACE INTO repeats", "database or disk is full", "add_repeat"),
    ("ALTER TABLE", "database or disk is full", "migrate"),
]


@pytest.mark.parametrize("statement, words, step", STORE_FAULTS)
def test_a_full_disk_at_the_store_is_one_line_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str, words: str, step: str
) -> None:
    path = tmp_path / "results.sqlite"
    kept = make_result("pytorch", "lenet", "mnist")
    ResultStore(path).add_run(kept)
    if step == "migrate":  # an older file: opening it adds the task column
        db = sqlite3.connect(path)
        db.execute("ALTER TABLE runs DROP COLUMN task")
        db.commit()
        db.close()
    real = sqlite3.connect

    class Full(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql.lstrip().startswith(statement):
                raise sqlite3.OperationalError(words)
            return super().execute(sql, *args)

        def executescript(self, sql: str) -> sqlite3.Cursor:
            if sql.lstrip().startswith(statement):
                raise sqlite3.OperationalError(words)
            return super().executescript(sql)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, factory=Full, **k))
    monkeypatch.setattr(store_module, "_no_space", lambda folder: True)
    with pytest.raises(StoreFullError) as caught:
        store = ResultStore(path)
        if step == "add_run":
            store.add_run(make_result("jax", "lenet", "mnist"))
        if step == "add_repeat":
            store.add_repeat(kept.run_id, 1, RepeatRecord(status="ok", cause=None, global_batch=8))
    message = str(caught.value)
    assert message.startswith(f"no space left on device: {path} (") and "\n" not in message
    assert caught.value.exit_code == 2
    monkeypatch.undo()
    assert [r.run_id for r in ResultStore(path, readonly=True).runs()] == [kept.run_id]


def test_an_io_error_with_space_left_is_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(Exception) as caught:
        ResultStore(path)
    assert "not a readable SQLite database" in str(caught.value)
    assert not store_module._no_space(tmp_path)


def test_the_space_probe_sees_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "write", full)
    assert store_module._no_space(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


# Every file and folder a run writes: ENOSPC injected at the Nth ------------------------


@pytest.mark.slow
def test_enospc_at_every_write_of_a_run_is_one_line_and_keeps_the_store(tmp_path: Path) -> None:
    output = tmp_path / "logs"
    assert fake_run(output, "--repeats", "1").returncode == 0
    store = output / "results.sqlite"
    ((baseline,),) = rows(store, "SELECT run_id FROM runs")
    hit = 0
    for n in range(1, 40):
        done = fake_run(output, "--repeats", "1", HARNESS_PLUGINS="fake_backend,enospc_injector",
                        HARNESS_TEST_ENOSPC_AT=str(n))  # fmt: skip
        injected = re.search(r"injected ENOSPC at write \d+: (\S+)", done.stderr)
        if injected is None:  # the run makes fewer than n writes: all were tried
            assert done.returncode == 0, done.stderr
            break
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 2:  # else a write the run can do without (a monitor's CSV)
            hit += 1
            assert len([x for x in done.stderr.splitlines() if x.startswith("error:")]) == 1
            assert f"error: no space left on device: {injected.group(1)}" in " ".join(
                done.stderr.split()
            )
        else:
            assert done.returncode == 0, done.stderr
        assert (baseline,) in rows(store, "SELECT run_id FROM runs")
    else:
        pytest.fail("the run kept writing")
    assert hit >= 5  # run folder, run.json, repeat folder, job.json, record.json, result.json
    last = fake_run(output, "--repeats", "1")  # space again: what was measured is taken in
    assert last.returncode == 0, last.stderr
    stored = rows(store, "SELECT status FROM runs")
    assert len(stored) > 2 and "ok" in {s for (s,) in stored}


# A real small filesystem, filled: each command as a user runs it ---------------------

# (command, expected exit, words in stderr): a read that writes nothing works
FULL_DISK_COMMANDS = [
    ("run", 2, "no space left on device: {store}"),
    ("report", 0, ""),
    ("report --format markdown -o {out}/r.md", 2, "no space left on device: {out}/r.md"),
    ("export --format csv -o {out}/r.csv", 2, "no space left on device: {out}/r.csv"),
    ("compare {store} {store}", 0, ""),
    ("sweep --list --output-dir {out}", 0, ""),
]


@pytest.mark.slow
def test_each_command_on_a_full_disk(small_disk: Path) -> None:
    output = small_disk / "logs"
    assert fake_run(output, "--repeats", "1").returncode == 0
    store = output / "results.sqlite"
    ((measured,),) = rows(store, "SELECT run_id FROM runs")
    with (small_disk / "filler.bin").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    for command, code, words in FULL_DISK_COMMANDS:
        line = command.format(store=store, out=output)
        if command == "run":
            done = fake_run(output, "--repeats", "1")
        else:
            extra = ["--store", str(store)] if line.split()[0] in ("report", "export") else []
            done = run_cli(*line.split(), *extra)
        assert done.returncode == code, (command, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert words.format(store=store, out=output) in " ".join(done.stderr.split())
        assert [r.run_id for r in ResultStore(store, readonly=True).runs()] == [measured]
    (small_disk / "filler.bin").unlink()
