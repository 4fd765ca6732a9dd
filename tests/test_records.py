"""Typed, versioned result records: one codec, strict for today's documents, and the
stores and result files written before the records had a schema version still open."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import store_from_fixture

from harness.report.data import build
from harness.results import compare, export
from harness.store import configkey
from harness.store.schema import (
    SCHEMA_VERSION,
    RepeatRecord,
    Resources,
    RunResult,
    SchemaError,
    Stat,
    from_dict,
)
from harness.store.store import ResultStore, StoreError

# store-schema3.sql: written by the code before typed records; result-v0.json: the
# result.json of its fake-GPU run
RESULT_V0 = Path(__file__).resolve().parent / "fixtures" / "result-v0.json"


def strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    return store_from_fixture("store-schema3.sql", tmp_path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_old_result_file_reads_as_typed_records() -> None:
    raw = json.loads(RESULT_V0.read_text())
    assert "schema_version" not in raw  # version 0
    result = RunResult.from_json(RESULT_V0.read_text())
    assert result.schema_version == SCHEMA_VERSION
    assert (result.spec.tool, result.spec.num_gpus, result.hardware) == ("fake", 1, "1 GPU")
    summary = raw["summary"]
    assert result.summary.images_per_sec.mean == summary["images_per_sec"]["mean"]
    assert result.summary.images_per_sec.ci95 == summary["images_per_sec"]["ci95"]
    assert result.summary.gpu_power_w.mean == summary["gpu_power_w"]["mean"] == 200.0
    assert result.summary.flops.mfu == summary["flops"]["mfu"]
    assert result.summary.timing.window_steps == summary["timing"]["window_steps"]
    assert result.config_key == raw["config_key"] == configkey.config_key(result)
    first, raw_first = result.repeats[0], raw["repeats"][0]
    assert first.timed.images_per_sec == raw_first["timed"]["images_per_sec"]
    assert first.timing.window_steps == raw_first["timing"]["window_steps"]
    assert first.resources.timed.energy_j == raw_first["resources"]["timed"]["energy_j"]
    assert first.resources.gpu["devices"] == raw_first["resources"]["gpu"]["devices"]
    assert first.windows["timed"] == [tuple(w) for w in raw_first["windows"]["timed"]]
    # and it writes back as today's version, losing no field it had
    again = strict_json(result.to_json())
    assert again["schema_version"] == SCHEMA_VERSION
    for key, value in raw.items():
        if key not in ("spec", "repeats", "summary"):
            assert again[key] == value, key
    assert RunResult.from_json(result.to_json()) == result


def test_records_round_trip_and_refuse_what_they_do_not_know() -> None:
    result = RunResult.from_json(RESULT_V0.read_text())
    text = result.to_json()
    assert RunResult.from_json(text) == result
    record = result.repeats[1]
    assert RepeatRecord.from_json(record.to_json()) == record
    doc = json.loads(text)
    doc["summary"]["images_per_sex"] = 1.0  # a renamed field does not pass silently
    with pytest.raises(SchemaError, match=r"RunResult.summary: unknown field 'images_per_sex'"):
        RunResult.from_json(doc)
    doc = json.loads(text)
    doc["repeats"][0]["timed"]["steps"] = "many"
    with pytest.raises(SchemaError, match=r"repeats\[0\].timed.steps: 'many' is not an integer"):
        RunResult.from_json(doc)
    doc = json.loads(text) | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(SchemaError, match="newer harness"):
        RunResult.from_json(doc)
    with pytest.raises(SchemaError, match="not JSON"):
        RunResult.from_json("{torn")
    # a version-0 document may hold fields that no longer exist: they are dropped
    old = json.loads(RESULT_V0.read_text())
    old["summary"]["retired_figure"] = 1
    assert RunResult.from_json(old) == result


def test_non_finite_numbers_are_written_as_null() -> None:
    record = RepeatRecord(status="ok", eval_compile_s=float("nan"))
    record.timed.step_time_s = Stat(n=1, mean=float("inf"))
    doc = strict_json(record.to_json())
    assert doc["eval_compile_s"] is None and doc["timed"]["step_time_s"]["mean"] is None


def test_a_monitor_summary_is_checked_when_it_becomes_a_record() -> None:
    assert from_dict(Resources, {"interval_s": 0.1, "gpu": {"available": False}}).gpu == {
        "available": False
    }
    with pytest.raises(SchemaError, match="unknown field 'gpus'"):
        from_dict(Resources, {"gpus": {}})


def test_an_old_store_is_read_as_typed_records(old_store: Path) -> None:
    before = digest(old_store)
    store = ResultStore(old_store, readonly=True)
    results = store.runs()
    assert digest(old_store) == before  # read-only: not migrated, not switched to WAL
    assert not old_store.with_name(old_store.name + "-wal").exists()
    assert [r.status for r in results] == ["ok", "ok", "oom", "ok"]
    assert [r.spec.precision for r in results] == ["fp32", "bf16", "fp32", "fp32"]
    gpu = results[-1]
    assert gpu.summary.energy_j.mean > 0 and gpu.repeats[0].resources.timed.gpu_power_w == 200.0
    for result in results:
        assert len(store.repeats(result.run_id)) == 2
        assert store.repeats(result.run_id) == result.repeats
    # the readers work on them
    data = build(results)
    assert [c.label for c in data.columns] == ["CPU", "1 GPU"]
    rows = compare.compare(results, results)
    assert {r.verdict for r in rows if r.a.shown} == {"same"}
    lines = export.to_csv(results).splitlines()
    assert len(lines) == 5 and lines[1].startswith(results[0].run_id)
    # opened for writing, it is migrated and new typed runs join the old ones
    writable = ResultStore(old_store)
    writable.add_run(dataclasses.replace(gpu, run_id="new-run", started_at="2027"))
    assert [r.run_id for r in writable.runs()][-1] == "new-run"
    assert writable.runs(run_id="new-run")[0].summary == gpu.summary


def test_report_export_and_compare_of_an_old_store_from_the_command_line(
    old_store: Path, tmp_path: Path
) -> None:
    before = digest(old_store)
    report = run_cli("report", "--store", str(old_store), "--format", "markdown")
    assert report.returncode == 0, report.stderr
    cells = ("images/sec", "MNIST", "LeNet", "fake · options none · fp32", "3,133.1 ± 0.1")
    assert "| " + " | ".join(cells) + " | 3,128.0 ± 2.1 |" in report.stdout
    out = run_cli("export", "--store", str(old_store), "--format", "json")
    assert out.returncode == 0, out.stderr
    runs = strict_json(out.stdout)["runs"]
    assert {r["result"]["schema_version"] for r in runs} == {SCHEMA_VERSION}
    same = run_cli("compare", str(old_store), str(old_store), "--format", "csv")
    assert same.returncode == 0, same.stderr
    listed = run_cli("sweep", "--list", "--output-dir", str(old_store.parent))
    assert listed.returncode == 0, listed.stderr
    assert digest(old_store) == before  # none of them changed the file


def test_a_bad_row_is_left_out_with_a_warning_naming_the_run(old_store: Path) -> None:
    db = sqlite3.connect(old_store)
    first = db.execute("SELECT run_id FROM runs ORDER BY started_at LIMIT 1").fetchone()[0]
    db.execute("UPDATE runs SET result_json = '{\"spec\": ' WHERE run_id = ?", (first,))
    db.commit()
    db.close()
    store = ResultStore(old_store, readonly=True)
    assert len(store.runs()) == 3
    assert store.skipped and store.skipped[0].startswith(first)
    report = run_cli("report", "--store", str(old_store), "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert f"skipped run {first}" in report.stderr
    assert "unreadable row left out" in report.stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x13\x37" * 3000), "not a readable SQLite database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200), "not a readable SQLite"),
        (lambda p: _foreign(p), "not a harness results store"),
        (lambda p: _newer(p), "newer harness"),
    ],
    ids=["random", "truncated", "foreign", "newer"],
)
def test_stores_that_cannot_be_read_get_one_line(make, message: str, tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    make(path)
    before = digest(path)
    for command in (["report"], ["export"]):
        out = run_cli(*command, "--store", str(path))
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    with pytest.raises(StoreError, match=message):
        ResultStore(path)  # nor for writing: another program's file gets no tables
    assert digest(path) == before


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    db.commit()
    db.close()


def _newer(path: Path) -> None:
    ResultStore(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
