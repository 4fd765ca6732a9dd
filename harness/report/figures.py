"""The report's charts as publication figures: PNG, SVG or PDF files through matplotlib.

One figure per (dataset, network, metric) that some run of the pair has, with the
content of the HTML report's charts (harness.report.html and svg): hardware
configurations along x, one bar per framework (row label) in each group in the same
colours, error bars of one standard deviation (over 2+ repeats), the value above a bar,
and the run's status ("oom", "-") written where a cell has no value. Files are named
``<dataset>-<network>-<metric>.<format>`` (e.g. ``cifar10-resnet50-images_per_sec.png``).
Inference runs add two figures per (dataset, network, hardware) with data, as the HTML
report's inference charts, the batch size along x (log 2): throughput, one line per
framework, and the latency percentiles per batch (p50, p90, p99, p99.9: one line style
each, the framework's colour) on a log axis, named
``<dataset>-<network>-<hardware>-inference_throughput.<format>`` and
``...-inference_latency.<format>``.

matplotlib is an optional extra, imported here only when figures are drawn; drawing
uses the Agg canvas and never pyplot, so no global backend is changed. The output is
deterministic: no dates in SVG or PDF metadata, fixed SVG ids, fonts that ship with
matplotlib (DejaVu Sans).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.report.data import (
    INFERENCE_METRIC,
    LATENCY_PERCENTILES,
    InferenceData,
    Metric,
    ReportData,
    dataset_title,
    model_title,
)
from harness.report.svg import PALETTE, compact
from harness.report.text import value_text

FORMATS = ("png", "svg", "pdf")
DISTRIBUTION = "dlbench-harness"
INSTALL = f"pip install '{DISTRIBUTION}[figures]'"
_STATUS_COLOR = "#b3261e"
_DPI = 200
_RC = {
    "svg.hashsalt": "harness-report",  # element ids that do not change between runs
    "svg.fonttype": "path",  # text as outlines: the SVG needs no installed font
    "pdf.fonttype": 42,  # TrueType: text in the PDF stays text (journals ask for it)
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# No timestamps nor version strings that change between runs.
_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}


class FiguresUnavailable(UsageError):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    """The matplotlib module, or FiguresUnavailable with the install command."""
    try:
        import matplotlib
    except ImportError:
        raise FiguresUnavailable(
            f"figures need matplotlib, which is not installed: {INSTALL}"
        ) from None
    return matplotlib


def file_name(dataset: str, model: str, metric: Metric, fmt: str) -> str:
    """``<dataset>-<network>-<metric>.<fmt>``, any character unsafe in a file name as _."""
    stem = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part) for part in (dataset, model, metric.key))
    return f"{stem}.{fmt}"


def title(dataset: str, model: str, metric: Metric) -> str:
    return f"{dataset_title(dataset)} · {model_title(model)} · {metric.title}"


def write_figures(data: ReportData, fmt: str, folder: str | Path) -> list[Path]:
    """One figure file per (dataset, network, metric) with data, in ``folder`` (made if
    needed); the paths written, in report order."""
    if fmt not in FORMATS:
        raise ValueError(f"figures are {', '.join(FORMATS)}, not {fmt!r}")
    matplotlib = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tools = list(dict.fromkeys(r.label for r in data.rows))
    colors = {tool: PALETTE[i % len(PALETTE)] for i, tool in enumerate(tools)}
    written = []
    with matplotlib.rc_context(_RC):
        for dataset, model in data.pairs():
            for metric in data.metrics:
                if not data.has_data(metric, dataset, model):
                    continue  # nothing measured for this pair: no empty figure
                figure = draw(data, dataset, model, metric, colors)
                path = folder / file_name(dataset, model, metric, fmt)
                figure.savefig(
                    path,
                    format=fmt,
                    dpi=_DPI,
                    metadata={**_METADATA[fmt], "Title": title(dataset, model, metric)},
                    bbox_inches="tight",
                    pad_inches=0.05,
                )
                written.append(path)
        if data.inference is not None:
            written += _inference_figures(data.inference, fmt, folder, tools)
    return written


_LATENCY_STYLES = {"latency_p50_s": "-", "latency_p90_s": "--", "latency_p99_s": "-.",
                   "latency_p999_s": ":"}  # fmt: skip
_PERCENTILE_NAMES = {"latency_p50_s": "p50", "latency_p90_s": "p90", "latency_p99_s": "p99",
                     "latency_p999_s": "p99.9"}  # fmt: skip


def inference_file_name(dataset: str, model: str, hardware: str, what: str, fmt: str) -> str:
    """``<dataset>-<network>-<hardware>-inference_<what>.<fmt>``, unsafe characters as _."""
    parts = (dataset, model, hardware, f"inference_{what}")
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part) for part in parts) + f".{fmt}"


def _inference_figures(
    data: InferenceData, fmt: str, folder: Path, before: list[str]
) -> list[Path]:
    """The inference figures; ``before``: the training figures' frameworks, so a framework
    keeps its colour."""
    tools = list(dict.fromkeys([*before, *(r.label for r in data.rows)]))
    colors = {tool: PALETTE[i % len(PALETTE)] for i, tool in enumerate(tools)}
    written = []
    for dataset, model, hardware in data.groups():
        where = f"{dataset_title(dataset)} · {model_title(model)} · {hardware}"
        for what, figure in (
            ("throughput", _inference_throughput(data, dataset, model, hardware, colors)),
            ("latency", _inference_latency(data, dataset, model, hardware, colors)),
        ):
            if figure is None:
                continue  # nothing finished ok: no empty figure
            path = folder / inference_file_name(dataset, model, hardware, what, fmt)
            figure.savefig(
                path,
                format=fmt,
                dpi=_DPI,
                metadata={**_METADATA[fmt], "Title": f"{where} · inference {what}"},
                bbox_inches="tight",
                pad_inches=0.05,
            )
            written.append(path)
    return written


def _lines(
    data: InferenceData, dataset: str, model: str, hardware: str, key: str
) -> dict[str, tuple[list[int], list[float]]]:
    """Per framework: the batch sizes and the figure's values where the run has one."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for label in data.series(dataset, model, hardware):
        xs, ys = [], []
        for batch in data.batch_sizes(dataset, model, hardware):
            row = data.row(dataset, model, hardware, label, batch)
            value = data.value(key, row) if row is not None else None
            if batch and value is not None and value.shown and value.mean and value.mean > 0:
                xs.append(batch)
                ys.append(value.mean)
        if xs:
            out[label] = (xs, ys)
    return out


def _axes(title_text: str, ylabel: str, batches: list[int]) -> tuple[Any, Any]:
    # matplotlib: the optional `figures` extra (require_matplotlib says how to install it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.set_title(title_text, loc="left", fontsize=10, fontweight="bold")
    ax.grid(color="#e8ebf0", zorder=0)
    ax.set_axisbelow(True)
    return figure, ax


def _inference_throughput(
    data: InferenceData, dataset: str, model: str, hardware: str, colors: dict[str, str]
) -> Any:
    lines = _lines(data, dataset, model, hardware, "images_per_sec")
    if not lines:
        return None
    batches = sorted({b for xs, _ in lines.values() for b in xs})
    metric = INFERENCE_METRIC["images_per_sec"]
    where = f"{dataset_title(dataset)} · {model_title(model)} · {hardware}"
    figure, ax = _axes(f"{where} · inference throughput", _axis_label(metric), batches)
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", color=colors[label], label=label, zorder=2)
    ax.set_ylim(bottom=0)
    _legend(figure, ax.get_legend_handles_labels()[0], "framework")
    return figure


def _inference_latency(
    data: InferenceData, dataset: str, model: str, hardware: str, colors: dict[str, str]
) -> Any:
    from matplotlib.lines import Line2D  # the optional `figures` extra

    per_key = {k: _lines(data, dataset, model, hardware, k) for k in LATENCY_PERCENTILES}
    if not any(per_key.values()):
        return None
    batches = sorted({b for lines in per_key.values() for xs, _ in lines.values() for b in xs})
    where = f"{dataset_title(dataset)} · {model_title(model)} · {hardware}"
    figure, ax = _axes(f"{where} · latency per batch", "latency per batch (ms, log)", batches)
    ax.set_yscale("log")
    for key, lines in per_key.items():
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, linestyle=_LATENCY_STYLES[key], marker="o", markersize=3,
                    color=colors[label], zorder=2)  # fmt: skip
    labels = list(dict.fromkeys(label for lines in per_key.values() for label in lines))
    handles = [Line2D([], [], color=colors[label], label=label) for label in labels]
    handles += [
        Line2D([], [], color="#4a5466", linestyle=_LATENCY_STYLES[k], label=_PERCENTILE_NAMES[k])
        for k in LATENCY_PERCENTILES
    ]
    _legend(figure, handles, None)
    return figure


def draw(data: ReportData, dataset: str, model: str, metric: Metric, colors: dict[str, str]) -> Any:
    """The matplotlib Figure of one (dataset, network, metric) grouped bar chart."""
    # matplotlib: the optional `figures` extra (require_matplotlib says how to install it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [r for r in data.rows if (r.dataset, r.model) == (dataset, model)]
    groups = data.columns
    width = max(4.8, 1.1 + 1.15 * len(groups) * max(1, len(rows)) ** 0.5)
    figure = Figure(figsize=(width, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    values = {(r, c): data.value(metric.key, r, c) for r in rows for c in groups}
    highest = max(
        ((v.mean or 0) + (v.std if v.n > 1 and v.std else 0) for v in values.values() if v.shown),
        default=0.0,
    )
    top = highest * 1.15 if highest > 0 else 1.0
    slot = 0.8 / max(1, len(rows))  # bar width: the group's 0.8 shared by its bars
    for si, row in enumerate(rows):
        xs, heights, errors, labels = [], [], [], []
        for gi, column in enumerate(groups):
            v = values[(row, column)]
            x = gi - 0.4 + slot * (si + 0.5)
            if not v.shown or v.mean is None or v.mean <= 0:
                text = "0" if v.shown else value_text(v, metric)
                status = text not in ("-", "0")  # a failed run's status, in red
                ax.text(
                    x, top * 0.02, text, rotation=90 if status else 0, ha="center",
                    va="bottom", color=_STATUS_COLOR if status else "#9aa3b2", fontsize=8,
                )  # fmt: skip
                continue
            xs.append(x)
            heights.append(v.mean)
            errors.append(v.std if v.n > 1 and v.std else 0.0)
            labels.append(compact(v.mean))
        bars = ax.bar(
            xs,
            heights,
            width=slot * 0.92,
            color=colors[row.label],
            yerr=errors if any(errors) else None,
            capsize=3 if any(errors) else 0,
            error_kw={"elinewidth": 1.0, "ecolor": "#1d2330"},
            zorder=2,
        )
        for bar, error, label in zip(bars, errors, labels, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height() + error + top * 0.01,
                label,
                ha="center",
                va="bottom",
                fontsize=7,
                color="#4a5466",
            )
    ax.set_xticks(range(len(groups)), [c.label for c in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0, top)
    ax.set_xlabel("hardware")
    ax.set_ylabel(_axis_label(metric))
    ax.set_title(title(dataset, model, metric), loc="left", fontsize=10, fontweight="bold")
    ax.grid(axis="y", color="#e8ebf0", zorder=0)
    ax.set_axisbelow(True)
    _legend(figure, [Patch(color=colors[r.label], label=r.label) for r in rows], "framework")
    return figure


_CHAR_IN = 0.075  # a generous width of one 8 pt legend character, in inches
_ENTRY_IN = 0.55  # an entry's handle and padding, in inches
_LINE_IN = 0.17  # one legend line's height, in inches


def _legend(figure: Any, handles: list[Any], heading: str | None) -> None:
    """The legend below the plot, inside the figure: as many columns as its width holds,
    a label too long for the figure cut with an ellipsis; the figure grows by its lines,
    so the plot keeps its height."""
    width, height = figure.get_size_inches()
    fits = max(8, int((width - _ENTRY_IN - 0.2) / _CHAR_IN))
    for handle in handles:
        label = handle.get_label()
        if len(label) > fits:
            handle.set_label(label[: fits - 1].rstrip() + "\u2026")
    longest = max((len(h.get_label()) for h in handles), default=1)
    columns = max(1, min(len(handles), int((width - 0.2) / (_ENTRY_IN + _CHAR_IN * longest))))
    lines = -(-len(handles) // columns) + (1 if heading else 0)
    figure.set_size_inches(width, height + _LINE_IN * lines)
    figure.legend(handles=handles, title=heading, loc="outside lower center", ncols=columns,
                  frameon=False, fontsize=8, title_fontsize=8)  # fmt: skip


def _axis_label(metric: Metric) -> str:
    """The y label with its unit: "images/sec (images/s)" reads oddly, so a label that
    names its unit already stays as it is."""
    label = metric.axis_label
    return label if metric.unit in label else f"{label} ({metric.unit})"
