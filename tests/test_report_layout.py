"""Legends and labels fit (issue 29, item 1): a report with long series labels (two
frameworks in four configurations each, training and inference) draws no text outside
its chart, in the HTML page at 1280 px and at A4 width, and in the matplotlib figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import layout_problems, make_inference_result, make_result, make_store, with_spec

from harness.report import ops, render, report_data
from harness.report.data import ReportData, build
from harness.store.schema import OpResult, OpSet, OpsResult

# Chromium prints A4 (210 mm) with 10 mm margins: 190 mm of page = 718 CSS px.
A4_PX = 718


def long_label_runs() -> list:
    """2 frameworks x 2 precisions x 2 options, on CPU and one GPU, trained and served."""
    runs = []
    for tool in ("pytorch", "tensorflow"):
        for precision in ("fp32", "fp16"):
            for option in ("enabled", "disabled"):
                spec = {"precision": precision, "options": {"channels_last_format": option}}
                runs.append(with_spec(make_result(tool, "resnet50", "cifar10"), **spec))
                runs.append(with_spec(make_result(tool, "resnet50", "cifar10", num_gpus=1), **spec))
                for batch in (1, 32):
                    served = make_inference_result(tool, "resnet50", "cifar10", batch)
                    runs.append(with_spec(served, **spec, batch_size=batch))
    return runs


def test_long_labels_make_long_legends() -> None:
    data = build(long_label_runs())
    assert data.inference is not None
    labels = [r.label for r in data.rows]
    assert len(labels) == 8 and min(map(len, labels)) > 40  # what the other tests draw
    assert {r.label for r in data.inference.rows} == set(labels)


def _figures(data: ReportData) -> list:
    from harness.report import figures

    assert data.inference is not None
    tools = list(dict.fromkeys(r.label for r in data.rows))
    colors = {t: figures.PALETTE[i % len(figures.PALETTE)] for i, t in enumerate(tools)}
    out = [figures.draw(data, "cifar10", "resnet50", m, colors) for m in data.metrics[:1]]
    for hardware in ("CPU",):
        out.append(figures._inference_throughput(data.inference, "cifar10", "resnet50",
                                                 hardware, colors))  # fmt: skip
        out.append(figures._inference_latency(data.inference, "cifar10", "resnet50",
                                              hardware, colors))  # fmt: skip
    return out


def test_figure_legends_fit_in_the_figure() -> None:
    """matplotlib: each legend lies inside its figure, so the file is the figure's size
    and its legend is not cut where a page or a column sets the width."""
    pytest.importorskip("matplotlib")
    for figure in _figures(build(long_label_runs())):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
        assert legends
        bounds = figure.bbox
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert box.x0 >= bounds.x0 - 0.5 and box.x1 <= bounds.x1 + 0.5, (box, bounds)
            assert box.y0 >= bounds.y0 - 0.5 and box.y1 <= bounds.y1 + 0.5, (box, bounds)
        # the legend does not cover the plot
        for ax in figure.axes:
            plot = ax.get_window_extent(renderer)
            for legend in legends:
                assert not plot.overlaps(legend.get_window_extent(renderer))


def test_html_charts_draw_no_text_outside(tmp_path: Path) -> None:
    """Chromium: no text of any chart (legends, group labels, values) lies outside its
    SVG, and no chart is wider than the page, at 1280 px and at A4 width."""
    store = make_store(tmp_path / "results.sqlite", long_label_runs())
    for day, tool in enumerate(("tensorflow", "pytorch", "tensorflow"), 1):  # ops run twice
        gemm = OpResult(kernel="gemm", name="gemm-3072x128x1024-transposed", tflops=1.5 * day)
        sets = [OpSet(kind="gemm", ops=[gemm])]
        started = f"2026-01-0{day}T00:00:00"
        store.add_ops(OpsResult(f"ops-{day}", started, tool=tool, suite="deepbench", sets=sets))
    page = tmp_path / "report.html"
    page.write_text(ops.add_to(render(report_data(tmp_path), "html"), "html", tmp_path))
    for width in (1280, A4_PX):
        found = layout_problems(page, tmp_path / str(width), width)
        assert found["svgs"] >= 5, found
        assert found["problems"] == [], (width, found["problems"][:5])
