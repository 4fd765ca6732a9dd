"""A disk that fills mid-run loses nothing already measured: what is on disk reaches
the store at the next start, and the run says what happened (issue 13, item 3)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fake_cli import run_cli

from harness.results.recover import OWNER_KEY, adopt, owner
from harness.results.schema import RunResult
from harness.results.store import ResultStore

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
    assert full.returncode == 1, full.stderr
    assert "the disk is full" in full.stderr and "Traceback" not in full.stderr
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
