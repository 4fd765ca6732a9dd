"""The metric registry: a metric declared once shows in the store, the summary after a
run, the report, the comparison and the export."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sweep_helpers import make_result

from harness.cli.summary import print_summary
from harness.report.data import build
from harness.report.text import markdown
from harness.results import compare, export
from harness.store import metrics
from harness.store.metrics import TRAIN, Metric
from harness.store.schema import RunResult, Stat
from harness.store.store import ResultStore


def _toy(result: RunResult) -> Stat | None:
    values = result.environment.get("toy")
    return Stat.of(values) if values else None


TOY = Metric(
    "toy_score", "toy score (pts)", "pts", 2, _toy, tasks=TRAIN, column="REAL",
    summary="toy score", compare="toy",
)  # fmt: skip


@pytest.fixture
def toy() -> Iterator[Metric]:
    with metrics.registered(TOY) as metric:
        yield metric


def _run(values: list[float]) -> RunResult:
    result = make_result("pytorch", "resnet50", "cifar10", ips=(100.0, 1.0))
    result.environment["toy"] = values
    return result


def test_a_metric_declared_once_shows_in_all_five(tmp_path: Path, toy: Metric) -> None:
    a, b = _run([2.0, 4.0, 6.0]), _run([4.0, 5.0, 6.0])
    # the store: a column, filled and searchable
    store = ResultStore(tmp_path / "results.sqlite")
    store.add_run(a)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT toy_score FROM runs").fetchone() == (4.0,)
    assert [r.run_id for r in store.runs(toy_score=4.0)] == [a.run_id]
    # the summary after a run
    buffer = io.StringIO()
    print_summary(Console(file=buffer, width=200), a, "logs/r")
    assert "toy score: 4.00 pts" in buffer.getvalue()
    # the report: a row of its table
    text = markdown(build([a]))
    assert "| toy score (pts) |" in text and "4.00 ± 2.00" in text
    # the comparison: B/A, lower spread on B
    rows = compare.compare([a], [b])
    figure = next(f for f in rows[0].figures if f.name == "toy")
    assert figure.ratio == pytest.approx(5.0 / 4.0)
    assert "toy B/A" in compare.markdown(rows, compare.Side("A", [a]), compare.Side("B", [b]))
    found = next(csv.DictReader(io.StringIO(compare.to_csv(rows))))
    assert float(found["toy_score_ratio"]) == pytest.approx(1.25)
    # the export: mean and std columns
    row = next(csv.DictReader(io.StringIO(export.to_csv([a]))))
    assert float(row["toy_score"]) == 4.0 and float(row["toy_score_std"]) == 2.0
    assert export.dtypes()["toy_score"] == "float64"


def test_a_metric_declared_later_gets_its_column(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).add_run(_run([1.0]))  # no toy column yet
    with metrics.registered(TOY):
        old = ResultStore(path, readonly=True)  # read-only: compared in Python
        assert len(old.runs(toy_score=1.0)) == 1 and old.runs(toy_score=2.0) == []
        ResultStore(path).add_run(_run([3.0]))  # opened for writing: the column is added
        assert len(ResultStore(path, readonly=True).runs(toy_score=3.0)) == 1
    assert "toy_score" not in {m.name for m in metrics.registry()}
    assert len(ResultStore(path, readonly=True).runs()) == 2  # the extra column is harmless


def test_names_are_unique_and_tasks_known() -> None:
    with pytest.raises(ValueError, match="already declared"):
        metrics.register_metric(metrics.get("images_per_sec"))
    with pytest.raises(ValueError, match="already declared"):  # the same store column
        metrics.register_metric(Metric("flops", "x", "x", 1, _toy, stored_as="flops_per_sec"))
    with pytest.raises(ValueError, match="unknown task"):
        metrics.register_metric(Metric("x", "x", "x", 1, _toy, tasks=("pretrain",)))
    with pytest.raises(ValueError, match="built-in"):
        metrics.unregister_metric("accuracy")


def test_every_stored_column_of_before_is_still_declared() -> None:
    """Stored results must still read: no metric column of an older store is renamed."""
    stored = {c for m in metrics.registry() for c in m.store_columns()}
    assert stored == {
        "images_per_sec", "images_per_sec_std", "gpu_power_w", "gpu_memory_mib", "energy_j",
        "joules_per_image", "execution_time_s", "accuracy", "flops_per_sec", "mfu",
        "latency_p50_s", "latency_p99_s", "total_inference_s",
    }  # fmt: skip
    assert metrics.per_batch("inference") and not metrics.per_batch("train")
