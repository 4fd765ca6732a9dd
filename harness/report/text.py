"""The report as rich tables on a terminal and as Markdown."""

from __future__ import annotations

import html

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.report.data import (
    InferenceData,
    Metric,
    Ratio,
    ReportData,
    Value,
    dataset_title,
    model_title,
)


def number(value: float | None, digits: int) -> str:
    """1,234.5; values below 1 with three significant digits (0.00123); None as "-"."""
    if value is None:
        return "-"
    if value != 0 and abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def spread(std: float, mean: float | None, digits: int) -> str:
    """A std as precise as its mean is shown: 157.5 ± 0.4, 0.0123 ± 0.00041."""
    if mean is not None and abs(mean) >= 1:
        return f"{std:,.{digits}f}"
    return f"{std:.2g}"


def value_text(value: Value, metric: Metric, *, with_std: bool = True) -> str:
    """ "mean ± std" (std only over 2+ repeats), the run's status if it failed, or "-"."""
    if not value.shown:
        return value.status if value.status not in ("ok", "partial") else "-"
    text = number(value.mean, metric.digits)
    if with_std and value.std is not None and value.n > 1:
        text += f" ± {spread(value.std, value.mean, metric.digits)}"
    return text + ("*" if value.status == "partial" else "") + ("†" if value.contended else "")


def ratio_text(r: Ratio, *, percent: bool = False) -> str:
    if r.value is None:
        return r.status
    return f"{r.value:.0%}" if percent else f"{r.value:,.2f}x"


def _row_labels(data: ReportData, metric: Metric, index: int) -> list[str]:
    row = data.rows[index]
    return [metric.title, dataset_title(row.dataset), model_title(row.model), row.label]


INFERENCE_LABELS = ("dataset", "network", "framework", "hardware", "batch")


def inference_headers(data: InferenceData) -> list[str]:
    """The inference table's header: the row's labels, then one column per figure."""
    return [*INFERENCE_LABELS, *(m.title for m in data.metrics)]


def inference_rows(data: InferenceData) -> list[tuple[list[str], list[Value]]]:
    """Per inference row: its labels (dataset, network, framework, hardware, batch) and
    its values, one per metric of ``data.metrics``."""
    out = []
    for row in data.rows:
        labels = [
            dataset_title(row.dataset),
            model_title(row.model),
            row.label,
            row.hardware,
            "-" if row.batch_size is None else str(row.batch_size),
        ]
        out.append((labels, [data.value(m.key, row) for m in data.metrics]))
    return out


# Terminal ----------------------------------------------------------------------------------


def _styled(text: str, value: Value) -> str:
    if value.shown or text == "-":
        return escape(text) if value.shown else "[dim]-[/dim]"
    return f"[red]{escape(text)}[/red]"


def terminal(data: ReportData, console: Console) -> None:
    """The results table, the speedup tables, what was not run, and the notes."""
    for line in data.info:
        console.print(escape(line), highlight=False, soft_wrap=True)
    if data.empty:
        console.print("no runs to report")
        return
    if data.rows:
        _terminal_training(data, console)
    if data.not_run:
        console.print(f"[bold]not run ({len(data.not_run)})[/bold]")
        for why, what in data.not_run_by_reason().items():
            console.print(
                f"  {escape(why)}: {escape(', '.join(what))}", highlight=False, soft_wrap=True
            )
    if data.memory_limits:
        console.print("[bold]out of memory[/bold]")
        for line in data.memory_limits:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    for note in data.notes:
        console.print(f"[dim]{escape(note)}[/dim]", soft_wrap=True)
    if data.inference is not None:
        _terminal_inference(data.inference, console)


def _terminal_inference(data: InferenceData, console: Console) -> None:
    """The inference table: one row per (dataset, network, framework, hardware, batch)."""
    table = Table(title="Inference", title_justify="left", header_style="bold")
    for i, name in enumerate(inference_headers(data)):
        table.add_column(escape(name), justify="right" if i >= 4 else "left")
    for labels, values in inference_rows(data):
        texts = [value_text(v, m) for v, m in zip(values, data.metrics, strict=True)]
        table.add_row(
            *map(escape, labels),
            *(_styled(t, v) for t, v in zip(texts, values, strict=True)),
        )
    console.print(table)
    for note in data.notes:
        console.print(f"[dim]{escape(note)}[/dim]", soft_wrap=True)


def _terminal_training(data: ReportData, console: Console) -> None:
    """The study's table of the training runs and the speedup tables."""
    table = Table(title=data.title, title_justify="left", header_style="bold")
    for name in ("metric", "dataset", "network", "framework"):
        table.add_column(name)
    for column in data.columns:
        table.add_column(escape(column.label), justify="right")
    for metric in data.metrics:
        for i, row in enumerate(data.rows):
            values = [data.value(metric.key, row, c) for c in data.columns]
            table.add_row(
                *map(escape, _row_labels(data, metric, i)),
                *(_styled(value_text(v, metric), v) for v in values),
                end_section=i == len(data.rows) - 1,
            )
    console.print(table)
    for speed in data.speedups():
        t = Table(
            title=speed.title,
            caption=speed.description,
            title_justify="left",
            caption_justify="left",
            header_style="bold",
        )
        for name in ("dataset", "network", "framework"):
            t.add_column(name)
        efficiency = any(n != 1.0 for _, _, n in speed.pairs)
        for header in speed.headers:
            t.add_column(escape(header), justify="right")
            if efficiency:
                t.add_column("efficiency", justify="right")
        for row, ratios, effs in speed.rows:
            cells = []
            for r, e in zip(ratios, effs, strict=True):
                cells.append(escape(ratio_text(r)))
                if efficiency:
                    cells.append(escape(ratio_text(e, percent=True)))
            t.add_row(dataset_title(row.dataset), model_title(row.model), row.label, *cells)
        console.print(t)


# Markdown ----------------------------------------------------------------------------------


def md_escape(text: str) -> str:
    """``text`` as literal Markdown table/list text, on one line: HTML escaped (a label
    like ``<img onerror=...>`` stays text), ``\\`` and ``|`` backslashed (a ``|`` would
    end a table cell, and a name's own backslash must not undo the escape) and ``](``
    broken up (a label cannot become a link such as ``[x](javascript:...)``). Every
    field of every Markdown output goes through it: reports, ops, comparisons."""
    text = html.escape(str(text), quote=False).replace("\\", "\\\\")
    text = text.replace("|", "\\|").replace("](", "]\\(")
    return text.replace("\r", " ").replace("\n", " ")


_md = md_escape  # its former name


def _md_table(headers: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(map(md_escape, headers)) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(map(md_escape, row)) + " |" for row in rows]
    return lines


def markdown(data: ReportData) -> str:
    out = [f"# {md_escape(data.title)}", ""]
    out += [f"- {md_escape(line)}" for line in data.info]
    out.append("")
    if data.empty:
        return "\n".join([*out, "No runs to report.", ""])
    if data.rows:
        out += _markdown_training(data)
    if data.bottlenecks:
        out += ["", "## Bottleneck", ""]
        out += [f"- {md_escape(run)}: {md_escape(verdict)}" for run, verdict in data.bottlenecks]
    if data.inference is not None:
        out += _markdown_inference(data.inference)
    if data.not_run:
        out += ["", f"## Not run ({len(data.not_run)})", ""]
        out += [
            f"- {md_escape(why)}: {md_escape(', '.join(what))}"
            for why, what in data.not_run_by_reason().items()
        ]
    if data.memory_limits:
        out += ["", "## Out of memory", ""]
        out += [f"- {md_escape(line)}" for line in data.memory_limits]
    notes = data.notes + (data.inference.notes if data.inference is not None else [])
    out += ["", "## Notes", ""]
    out += [f"- {md_escape(note)}" for note in notes]
    return "\n".join(out) + "\n"


def _markdown_inference(data: InferenceData) -> list[str]:
    out = ["", "## Inference", ""]
    rows = [
        [*labels, *(value_text(v, m) for v, m in zip(values, data.metrics, strict=True))]
        for labels, values in inference_rows(data)
    ]
    return out + _md_table(inference_headers(data), rows, len(INFERENCE_LABELS))


def _markdown_training(data: ReportData) -> list[str]:
    out = ["## Results", ""]
    rows = []
    for metric in data.metrics:
        for i, row in enumerate(data.rows):
            values = [value_text(data.value(metric.key, row, c), metric) for c in data.columns]
            rows.append([*_row_labels(data, metric, i), *values])
    headers = ["metric", "dataset", "network", "framework", *(c.label for c in data.columns)]
    out += _md_table(headers, rows, 4)
    for speed in data.speedups():
        out += ["", f"## {md_escape(speed.title)}", "", md_escape(speed.description) + ".", ""]
        efficiency = any(n != 1.0 for _, _, n in speed.pairs)
        headers = ["dataset", "network", "framework"]
        for header in speed.headers:
            headers += [header, "efficiency"] if efficiency else [header]
        rows = []
        for row, ratios, effs in speed.rows:
            cells = [dataset_title(row.dataset), model_title(row.model), row.label]
            for r, e in zip(ratios, effs, strict=True):
                cells.append(ratio_text(r))
                if efficiency:
                    cells.append(ratio_text(e, percent=True))
            rows.append(cells)
        out += _md_table(headers, rows, 3)
    return out
