"""A results store written before configuration keys (schema 2) opens, gains the key
columns, and its runs keep their configurations apart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sweep_helpers import make_result, store_from_fixture

from harness.report.data import build
from harness.store import configkey
from harness.store.schema import RunResult
from harness.store.store import SCHEMA_VERSION, ResultStore, StoreError


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    return store_from_fixture("store-schema2.sql", tmp_path)


def columns(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    finally:
        db.close()


def test_old_store_opens_and_gets_keys(old_store: Path) -> None:
    assert "config_key" not in columns(old_store)
    store = ResultStore(old_store)
    assert {"config_key", "flops_per_sec", "mfu"} <= columns(old_store)
    db = sqlite3.connect(old_store)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    rows = db.execute("SELECT run_id, config_key, result_json FROM runs").fetchall()
    db.close()
    assert len(rows) == 4
    for _, key, text in rows:  # the key of each stored result, computed as today
        assert key == configkey.config_key(RunResult.from_json(text))
        assert "schema_version" not in json.loads(text)  # the rows are not rewritten
    assert len({key for _, key, _ in rows}) == 4  # batch 32, batch 64, bf16, and the oom's option
    results = store.runs()
    configs = [configkey.config_of(r) for r in results]
    assert [c["batch_size"] for c in configs] == [32, 64, 32, 32]
    assert [c["precision"] for c in configs] == ["fp32", "fp32", "bf16", "fp32"]
    assert {c["threads"] for c in configs} == {None}  # then: the framework's default
    assert {c["sync_every"] for c in configs} == {1}  # then: per-step timing
    # the columns filter by key
    first = configkey.config_key(results[0])
    assert [r.run_id for r in store.runs(config_key=first)] == [results[0].run_id]


def test_reopening_is_idempotent_and_new_runs_are_added(old_store: Path) -> None:
    ResultStore(old_store)
    store = ResultStore(old_store)  # already version 3: nothing to do
    new = make_result("pytorch", "lenet", "mnist")
    store.add_run(new)
    assert len(store.runs()) == 5
    assert store.runs(config_key=configkey.config_key(new))[0].run_id == new.run_id


def test_the_report_of_an_old_store_keeps_configurations_apart(old_store: Path) -> None:
    data = build(ResultStore(old_store).runs())
    assert len(data.columns) == 1 and data.columns[0].label == "CPU"
    labels = {row.label for row in data.rows}
    assert labels == {
        "fake · batch 32 · options step_s=0.002 · fp32",
        "fake · batch 32 · options behaviour=oom,step_s=0.002 · fp32",
        "fake · batch 32 · options step_s=0.002 · bf16",
        "fake · batch 64 · options step_s=0.002 · fp32",
    }


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer harness"):
        ResultStore(path)
