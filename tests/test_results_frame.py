"""harness.results.load: a store's runs as a typed pandas DataFrame; export --format parquet."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
from fake_cli import FAKES, run_cli
from sweep_helpers import figure, make_result, make_store, study_like_results

from harness.results import load
from harness.results.export import COLUMNS, DTYPES, flat
from harness.store.store import ResultStore


def _results():
    results = study_like_results(sweep_id="s1")
    results[0].summary.accuracy = figure(0.91, 0.01)
    results[0].summary.host_rss_mib = figure(1500.0, 4.0)
    results.append(make_result("pytorch", "vgg16", "cifar10", ips=(7.0, 0.5), sweep_id="s2"))
    return results


def test_load_columns_dtypes_and_values(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    results = _results()
    make_store(tmp_path / "results.sqlite", results)
    frame = load(tmp_path / "results.sqlite")
    assert list(frame.columns) == list(COLUMNS)  # the CSV export's columns
    assert len(frame) == len(results)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DTYPES
    assert DTYPES["run_id"] == "string" and DTYPES["images_per_sec"] == "float64"
    assert DTYPES["num_gpus"] == "Int64" and DTYPES["synthetic"] == "boolean"
    assert DTYPES["started_at"] == "datetime64[ns, UTC]"
    assert frame["run_id"].tolist() == [r.run_id for r in results]  # oldest first
    first = frame.iloc[0]
    assert first["images_per_sec"] == 2000.0 and first["images_per_sec_std"] == 40.0
    assert first["accuracy"] == pytest.approx(0.91) and first["host_rss_mib"] == 1500.0
    assert first["num_gpus"] == -1 and bool(first["synthetic"]) is True
    assert first["started_at"] == pd.Timestamp(results[0].started_at)
    assert math.isnan(first["gpu_power_w"])  # not measured: NaN, not None
    assert frame["gpu_power_w"].notna().sum() == 7  # the ok GPU runs
    oom = frame[frame["status"] == "oom"].iloc[0]
    assert math.isnan(oom["images_per_sec"]) and oom["causes"] == "RuntimeError: it went oom"
    assert frame["sync_every"].isna().all()  # nullable integers stay integers
    for result, (_, row) in zip(results, frame.iterrows(), strict=True):  # as export's flat
        expected = flat(result)
        for column in ("tool", "model", "dataset", "hardware_label", "config_key", "repeats"):
            assert row[column] == expected[column]

    # one sweep, the latest sweep, an open store
    assert frame.groupby("tool")["images_per_sec"].max()["pytorch"] == 54000.0
    only = load(tmp_path, sweep="s2")
    assert only["model"].tolist() == ["vgg16"]
    store = ResultStore(tmp_path / "results.sqlite", readonly=True)
    assert len(load(store, sweep="s1")) == 12
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="no sweep 'nope'"):
        load(tmp_path, sweep="nope")
    with pytest.raises(UsageError, match="no sweeps in"):  # these runs have no sweep record
        load(tmp_path, sweep="latest")


def test_load_of_an_empty_store_has_the_columns(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    make_store(tmp_path / "results.sqlite", [])
    frame = load(tmp_path)
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DTYPES


def test_load_without_pandas_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(tmp_path / "results.sqlite", study_like_results())
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'dlbench-harness\[dataframe\]'"):
        load(tmp_path)


@pytest.mark.slow
def test_parquet_round_trip(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    make_store(tmp_path / "results.sqlite", _results())
    target = tmp_path / "out" / "runs.parquet"
    out = run_cli("export", "--store", str(tmp_path), "--format", "parquet", "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert "13 runs" in out.stderr
    back = pd.read_parquet(target)
    pd.testing.assert_frame_equal(back, load(tmp_path))  # values and dtypes
    out = run_cli(
        "export", "--store", str(tmp_path), "--format", "parquet", "--sweep", "s2", "-o",
        str(tmp_path / "s2.parquet"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert pd.read_parquet(tmp_path / "s2.parquet")["model"].tolist() == ["vgg16"]
    stdout = run_cli("export", "--store", str(tmp_path), "--format", "parquet")
    assert stdout.returncode == 2 and "give -o FILE" in stdout.stderr


def test_parquet_without_pyarrow_is_one_line(tmp_path: Path) -> None:
    make_store(tmp_path / "results.sqlite", study_like_results())
    blocked = tmp_path / "blocked" / "pyarrow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("blocked by a test")\n')
    out = run_cli(
        "export", "--store", str(tmp_path), "--format", "parquet", "-o",
        str(tmp_path / "runs.parquet"),
        PYTHONPATH=os.pathsep.join([str(blocked.parent), str(FAKES)]),
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dlbench-harness[dataframe]'" in lines[0], lines
    assert "pyarrow" in lines[0] and not (tmp_path / "runs.parquet").exists()
