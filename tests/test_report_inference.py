"""The report of inference runs (issue 14, item 5): their own table (one row per batch
size, latency percentiles, throughput, load / session / first-inference times, total
inference time and accuracy on real data, energy per image, the model file's size),
charts against the batch size (throughput; latency percentiles on a log axis), in the
terminal, Markdown and HTML reports; the training table stays as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import (
    check_page_in_browser,
    make_inference_result,
    make_result,
    make_store,
    require_chromium,
    with_spec,
)

from harness.report import render, report_data
from harness.report.data import INFERENCE_METRICS, build
from harness.report.svg import log_ticks
from harness.report.text import inference_headers, inference_rows

# latency per batch in ms: p50, p90, p99, p99.9 (the helper's mean is p50)
LATENCY = {1: (1.0, 1.2, 1.5, 2.0), 8: (2.0, 2.5, 3.0, 4.0), 64: (9.0, 10.0, 12.0, 16.0)}
BASE_HEADERS = ["dataset", "network", "framework", "hardware", "batch"]
LATENCY_HEADERS = ["latency mean (ms)", "p50 (ms)", "p90 (ms)", "p99 (ms)", "p99.9 (ms)"]


def inference_runs(**kwargs) -> list:
    """PyTorch and TensorFlow at batch 1, 8 and 64 (TensorFlow 1.5x slower)."""
    out = []
    for tool, factor in (("pytorch", 1.0), ("tensorflow", 1.5)):
        for batch, latency in LATENCY.items():
            scaled = tuple(v * factor for v in latency)
            out.append(
                make_inference_result(tool, "lenet", "mnist", batch, latency_ms=scaled, **kwargs)
            )
    return out


def test_training_and_inference_are_reported_apart() -> None:
    training = make_result("pytorch", "lenet", "mnist", ips=(2000.0, 20.0))
    data = build([training, *inference_runs()])
    # the study's table: the training run only, as before
    assert [(r.tool, r.variant) for r in data.rows] == [("pytorch", "")]
    assert [c.label for c in data.columns] == ["CPU"]
    assert data.value("images_per_sec", data.rows[0], data.columns[0]).mean == 2000.0
    # the inference table: one row per framework and batch size, batch not in the label
    inference = data.inference
    assert inference is not None
    assert [(r.tool, r.batch_size, r.variant, r.hardware) for r in inference.rows] == [
        (tool, batch, "", "CPU") for tool in ("pytorch", "tensorflow") for batch in (1, 8, 64)
    ]
    # without inference runs there is no inference part; without training, no rows
    assert build([training]).inference is None
    only = build(inference_runs())
    assert only.rows == [] and only.inference is not None and not only.empty


def test_inference_columns_and_values_synthetic() -> None:
    """Synthetic inputs: no test pass, so no total inference time nor accuracy column."""
    data = build(inference_runs()).inference
    assert data is not None
    headers = inference_headers(data)
    assert headers == [
        *BASE_HEADERS, *LATENCY_HEADERS, "images/sec", "load (s)", "session (s)",
        "first inference (ms)", "model file (MB)",
    ]  # fmt: skip
    rows = {(labels[2], labels[4]): labels for labels, _ in inference_rows(data)}
    texts = {
        key: dict(zip(headers[5:], _texts(data, labels), strict=True))
        for key, labels in rows.items()
    }
    assert texts[("pytorch", "8")]["p99 (ms)"] == "3.00 ± 0.10"
    assert texts[("pytorch", "8")]["p99.9 (ms)"] == "4.00 ± 0.10"
    assert texts[("pytorch", "64")]["p50 (ms)"] == "9.00 ± 0.10"
    assert texts[("tensorflow", "1")]["p90 (ms)"] == "1.80 ± 0.10"
    assert texts[("pytorch", "8")]["images/sec"] == "4,000.0 ± 40.0"  # 8 / 2 ms
    assert texts[("pytorch", "1")]["first inference (ms)"] == "20.00 ± 2.00"
    assert texts[("pytorch", "1")]["session (s)"] == "1.500 ± 0.075"
    assert texts[("pytorch", "1")]["model file (MB)"] == "1.7"


def _texts(data, labels) -> list[str]:
    from harness.report.text import value_text

    for row_labels, values in inference_rows(data):
        if row_labels == labels:
            return [value_text(v, m) for v, m in zip(values, data.metrics, strict=True)]
    raise AssertionError(labels)


def test_real_data_adds_total_inference_time_accuracy_and_energy() -> None:
    runs = inference_runs(total_s=4.25, accuracy=0.987, jpi=(0.002, 0.0001))
    data = build(runs).inference
    assert data is not None
    headers = inference_headers(data)
    assert headers[-4:] == [
        "total inference time (s)", "energy per image (J)", "accuracy (%)", "model file (MB)",
    ]  # fmt: skip
    measured = [m.key for m in INFERENCE_METRICS if m.key != "joules_per_image_dynamic"]
    assert [m.key for m in data.metrics] == measured  # no idle baseline: no dynamic energy
    (labels, _), *_ = inference_rows(data)
    got = dict(zip(headers[5:], _texts(data, labels), strict=True))
    assert got["total inference time (s)"] == "4.25 ± 0.01"
    assert got["accuracy (%)"] == "98.7 ± 0.0"
    assert got["energy per image (J)"] == "0.002 ± 0.0001"
    assert any(n.startswith("Total inference time = load + session") for n in data.notes)


def test_a_failed_run_shows_its_status_and_variants_keep_batch_apart() -> None:
    runs = inference_runs()
    runs.append(make_inference_result("mxnet", "lenet", "mnist", 64, status="oom", latency_ms=None))
    bf16 = make_inference_result("pytorch", "lenet", "mnist", 8, latency_ms=(1.0, 1.1, 1.2, 1.3))
    runs.append(with_spec(bf16, precision="bf16"))
    data = build(runs).inference
    assert data is not None
    labels = [(r.label, r.batch_size) for r in data.rows]
    assert ("mxnet", 64) in labels
    assert ("pytorch · bf16", 8) in labels and ("pytorch · fp32", 64) in labels
    (oom,) = [r for r in data.rows if r.tool == "mxnet"]
    assert data.value("latency_p99_s", oom).status == "oom"
    assert not data.value("latency_p99_s", oom).shown
    text = render(build(runs), "markdown")
    assert "| MNIST | LeNet | mxnet | CPU | 64 | oom | oom | oom | oom | oom | oom |" in text


def test_markdown_has_the_inference_table() -> None:
    text = render(build([make_result("pytorch", "lenet", "mnist"), *inference_runs()]), "markdown")
    assert text.index("## Results") < text.index("## Inference") < text.index("## Notes")
    header = "| " + " | ".join(BASE_HEADERS + LATENCY_HEADERS) + " | images/sec |"
    assert header in text
    assert (
        "| MNIST | LeNet | tensorflow | CPU | 64 | 13.50 ± 0.10 | 13.50 ± 0.10 | 15.00 ± 0.10 "
        "| 18.00 ± 0.10 | 24.00 ± 0.10 | 4,740.7 ± 47.4 |"
    ) in text


def _charts(page: str) -> list[tuple[str, str]]:
    """(caption, svg) of every figure of the inference charts."""
    section = page[page.index('<h2 id="inference">') :]
    return re.findall(r"<figcaption>([^<]*)</figcaption>(<svg.*?</svg>)", section)


def test_html_inference_charts_against_batch_size() -> None:
    runs = inference_runs()
    runs.append(make_inference_result("mxnet", "lenet", "mnist", 64, status="oom", latency_ms=None))
    page = render(build(runs), "html")
    assert '<table class="inference">' in page
    charts = _charts(page)
    assert [c for c, _ in charts] == [
        "MNIST · LeNet · CPU · inference throughput vs batch size",
        "MNIST · LeNet · CPU · latency percentiles per batch vs batch size",
    ]
    (_, throughput), (_, latency) = charts
    groups = re.findall(r'<text class="group"[^>]*>([^<]*)</text>', throughput)
    assert groups == ["batch 1", "batch 8", "batch 64"]
    # throughput: one bar per ok (framework, batch), images/sec = batch / p50
    values = [
        float(v) for v in re.findall(r'rect class="bar"[^>]*data-value="([^"]+)"', throughput)
    ]
    want = [b / (LATENCY[b][0] * f / 1e3) for b in LATENCY for f in (1.0, 1.5)]
    assert values == pytest.approx(want, rel=1e-5)
    # latency: a box per ok (framework, batch) from p50 to p99, on a log axis
    boxes = re.findall(r'rect class="bar"[^>]*data-p50="([^"]+)" data-p99="([^"]+)"', latency)
    want = [v * f for b in LATENCY for f in (1.0, 1.5) for v in (LATENCY[b][0], LATENCY[b][2])]
    assert [float(v) for box in boxes for v in box] == pytest.approx(want)
    assert len(re.findall(r'<path class="p90"', latency)) == 6
    assert len(re.findall(r'<path class="err"', latency)) == 6  # whiskers to p99.9
    assert "(log)" in latency
    ticks = [t for t in re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', latency)]
    assert ticks == ["1", "2", "5", "10", "20", "50"]  # 1 ms .. 24 ms
    # the failed run's status where its marks would be
    assert re.search(r'<text class="status"[^>]*>oom<title>', latency)
    assert re.search(r'<text class="status"[^>]*>oom<title>', throughput)


def test_log_ticks() -> None:
    assert log_ticks(1.0, 24.0) == [1, 2, 5, 10, 20, 50]
    assert log_ticks(0.13, 0.9) == pytest.approx([0.1, 0.2, 0.5, 1.0])
    assert log_ticks(3.0, 3.0) == [2, 5]


def test_report_of_a_store_with_both_tasks(tmp_path: Path) -> None:
    """Through the store (typed records round-trip) and the CLI: both tables."""
    make_store(
        tmp_path / "results.sqlite", [make_result("pytorch", "lenet", "mnist"), *inference_runs()]
    )
    data = report_data(tmp_path)
    assert len(data.rows) == 1 and data.inference is not None and len(data.inference.rows) == 6
    out = run_cli("report", "--store", str(tmp_path), "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert "## Inference" in out.stdout and "| MNIST | LeNet | pytorch | CPU | 1 |" in out.stdout
    terminal = run_cli("report", "--store", str(tmp_path))
    assert terminal.returncode == 0, terminal.stderr
    assert "Inference" in terminal.stdout and "p99.9 (ms)" in terminal.stdout


def test_inference_report_renders_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    make_store(tmp_path / "results.sqlite", inference_runs())
    page = tmp_path / "report.html"
    page.write_text(render(report_data(tmp_path), "html"))
    # 6 throughput bars and 6 latency boxes, drawn with a positive size
    check_page_in_browser(page, tmp_path, bars=12)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_inference_figures(tmp_path: Path, fmt: str) -> None:
    """Publication figures: throughput and latency percentiles against the batch size, per
    (dataset, network, hardware) with data; the training figures as before."""
    from harness.report.figures import write_figures

    runs = [make_result("pytorch", "lenet", "mnist"), *inference_runs()]
    runs.append(
        make_inference_result("mxnet", "lenet", "cifar10", 8, status="oom", latency_ms=None)
    )
    written = write_figures(build(runs), fmt, tmp_path / "figures")
    names = [p.name for p in written]
    assert names == [
        f"mnist-lenet-images_per_sec.{fmt}",
        f"mnist-lenet-execution_time_s.{fmt}",
        f"mnist-lenet-CPU-inference_throughput.{fmt}",
        f"mnist-lenet-CPU-inference_latency.{fmt}",
    ]  # the failed cifar10 run has no figure
    assert all(p.stat().st_size > 1000 for p in written)
    if fmt == "svg":
        latency = written[-1].read_text()
        for label in ("pytorch", "tensorflow", "p50", "p90", "p99", "p99.9", "batch size"):
            assert f"<!-- {label} -->" in latency, label


def test_export_has_the_inference_columns() -> None:
    from harness.results.export import COLUMNS, DTYPES, INFERENCE_COLUMNS, flat, to_csv, to_frame

    training = make_result("pytorch", "lenet", "mnist")
    inference = make_inference_result(
        "pytorch", "lenet", "mnist", 8, latency_ms=LATENCY[8], total_s=4.25, accuracy=0.987
    )
    row = flat(inference)
    assert row["task"] == "inference" and row["batch_size"] == 8
    assert row["latency_p99_s"] == pytest.approx(0.003)
    assert row["latency_p999_s"] == pytest.approx(0.004)
    assert row["latency_p50_s_std"] == pytest.approx(0.0001)
    assert row["load_s"] == 0.5 and row["prepare_s"] == 1.5
    assert row["first_inference_s"] == pytest.approx(0.02)
    assert row["total_inference_s"] == 4.25 and row["accuracy"] == 0.987
    assert row["model_bytes"] == 1_700_000 and row["model_format"] == "pytorch format"
    assert row["latency_basis"] == "window"
    plain = flat(training)
    assert plain["task"] == "train" and all(plain[c] is None for c in INFERENCE_COLUMNS)
    assert set(INFERENCE_COLUMNS) <= set(COLUMNS)
    header = to_csv([training, inference]).splitlines()[0].split(",")
    assert header == list(COLUMNS)
    assert DTYPES["model_bytes"] == "Int64" and DTYPES["latency_p99_s"] == "float64"
    frame = to_frame([training, inference])
    assert list(frame["task"]) == ["train", "inference"]
    assert frame["latency_p99_s"].iloc[1] == pytest.approx(0.003)
