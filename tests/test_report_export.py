"""export (beside the reports): CSV and JSON round trips of stored runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from fake_cli import run_cli
from sweep_helpers import make_result, make_store, study_like_results

from harness.report.source import open_store
from harness.results.export import COLUMNS, csv_cell, flat
from harness.store.schema import SCHEMA_VERSION, RunResult


def test_csv_round_trip(tmp_path: Path) -> None:
    store = make_store(tmp_path / "results.sqlite", study_like_results(sweep_id="s1"))
    target = tmp_path / "out" / "runs.csv"
    out = run_cli("export", "--store", str(tmp_path), "--format", "csv", "-o", str(target))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    stored = store.runs()
    assert len(rows) == len(stored) == 12
    assert list(rows[0]) == list(COLUMNS)
    for row, result in zip(rows, stored, strict=True):
        expected = flat(result)
        for column, value in expected.items():
            if value is None:
                assert row[column] == "", column
            elif isinstance(value, bool):
                assert row[column] == str(value)
            elif isinstance(value, (int, float)):
                assert float(row[column]) == value, column
            else:
                assert row[column] == str(value), column
    pytorch_cpu = rows[0]
    assert (pytorch_cpu["tool"], pytorch_cpu["hardware"], pytorch_cpu["sweep_id"]) == (
        "pytorch", "CPU", "s1",
    )  # fmt: skip
    assert float(pytorch_cpu["images_per_sec"]) == 2000.0
    assert float(pytorch_cpu["images_per_sec_std"]) == 40.0
    assert pytorch_cpu["gpu_power_w"] == ""  # not measured on the CPU
    assert next(r for r in rows if r["status"] == "oom")["causes"] == "RuntimeError: it went oom"


def test_json_round_trip_and_filters(tmp_path: Path) -> None:
    make_store(tmp_path / "results.sqlite", [
        make_result("pytorch", "lenet", "mnist", ips=(10.0, 1.0), sweep_id="a"),
        make_result("pytorch", "lenet", "mnist", ips=(20.0, 1.0), sweep_id="a"),
        make_result("jax", "lenet", "mnist", ips=(30.0, 1.0), sweep_id="b"),
    ])  # fmt: skip
    out = run_cli("export", "--store", str(tmp_path), "--format", "json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout, parse_constant=_no_constant)  # strict JSON
    assert body["format"] == "harness-runs" and body["version"] == 3
    stored = open_store(tmp_path).runs()
    assert [RunResult.from_json(r["result"]) for r in body["runs"]] == stored
    assert {r["result"]["schema_version"] for r in body["runs"]} == {SCHEMA_VERSION}
    assert [r["images_per_sec"] for r in body["runs"]] == [10.0, 20.0, 30.0]

    out = run_cli("export", "--store", str(tmp_path), "--format", "json", "--sweep", "a",
                  "--latest", "--brief")  # fmt: skip
    runs = json.loads(out.stdout)["runs"]
    assert [r["images_per_sec"] for r in runs] == [20.0]  # the latest ok run of sweep a
    assert "result" not in runs[0]


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_csv_cells_are_never_formulas(tmp_path: Path) -> None:
    """A label a spreadsheet would evaluate (=, +, -, @) is written as text."""
    hostile = make_result("pytorch", "lenet", "mnist", host="=HYPERLINK(1)")
    hostile.summary.causes = ["+cmd|' /C calc'!A0", "@SUM(1)"]
    hostile.spec.tags["hardware_label"] = "-2+3"
    make_store(tmp_path / "results.sqlite", [hostile])
    out = run_cli("export", "--store", str(tmp_path), "--format", "csv")
    assert out.returncode == 0, out.stderr
    (row,) = csv.DictReader(io.StringIO(out.stdout))
    assert row["host"] == "'=HYPERLINK(1)"
    assert row["hardware_label"] == "'-2+3"
    assert row["causes"] == "'+cmd|' /C calc'!A0; @SUM(1)"
    assert row["num_gpus"] == "-1"  # numbers stay numbers
    assert csv_cell(-1.5) == -1.5 and csv_cell("\tx") == "'\tx" and csv_cell(None) == ""
