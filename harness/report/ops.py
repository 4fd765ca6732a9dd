"""The report's "Operations" section: the latest ops run of each framework, side by side.

One table per (suite, precision, hardware), with a bar chart in HTML (each kernel's
frameworks side by side, relative to the best): a row per kernel and direction, a column
per framework with its TFLOP/s (GB/s for all-reduce) and the % of the device's peak, or
why there is none (unsupported, skipped, failed); a last row with each framework's
total time per pass over each set. Empty when the store has no ops results.
"""

from __future__ import annotations

import html as html_lib
from pathlib import Path
from typing import Any

from rich.table import Table as RichTable

from harness.report.source import store_path
from harness.report.text import md_escape as md
from harness.store.schema import OpResult, OpsResult
from harness.store.store import ResultStore

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def latest(results: list[OpsResult]) -> list[OpsResult]:
    """The latest run of each (tool, suite, precision, hardware), in first-seen order."""
    chosen: dict[tuple[str, str, str, str], OpsResult] = {}
    for result in results:  # oldest first: later ones replace
        chosen[(result.tool, result.suite, result.precision, result.hardware)] = result
    return list(chosen.values())


def load(store: str | Path) -> list[OpsResult]:
    return latest(ResultStore(store_path(store), readonly=True).ops())


def cell(op: OpResult) -> str:
    if op.status != "ok":
        return op.status  # unsupported, skipped, failed: the reason is in the record
    if op.gb_per_s is not None:
        return f"{op.gb_per_s:.3g} GB/s"
    if op.tflops is None:
        return "-"
    text = f"{op.tflops:.3g} TFLOP/s"
    return text + (f" ({op.percent_of_peak:.0f}%)" if op.percent_of_peak is not None else "")


def tables(results: list[OpsResult]) -> list[Table]:
    groups: dict[tuple[str, str, str], list[OpsResult]] = {}
    for result in results:
        groups.setdefault((result.suite, result.precision, result.hardware), []).append(result)
    out: list[Table] = []
    for (suite, precision, hardware), runs in groups.items():
        tools = [r.tool for r in runs]
        rows: dict[tuple[str, str], dict[str, str]] = {}
        totals: dict[str, list[str]] = {t: [] for t in tools}
        for run in runs:
            for op_set in run.sets:
                for op in op_set.ops:
                    rows.setdefault((op.name, op.direction), {})[run.tool] = cell(op)
                if op_set.total_us:
                    totals[run.tool].append(f"{op_set.kind} {op_set.total_us / 1e3:,.1f} ms")
        body = [
            [name if direction == "forward" else f"{name} ({direction})"]
            + [values.get(t, "-") for t in tools]
            for (name, direction), values in rows.items()
        ]
        body.append(["total per pass"] + ["; ".join(totals[t]) or "-" for t in tools])
        out.append((f"{suite} · {precision} · {hardware}", ["kernel", *tools], body))
    return out


def terminal(store: str | Path, console: Any) -> None:
    found = tables(load(store))
    if not found:
        return
    console.print("\n[bold]Operations[/bold]")
    for title, header, rows in found:
        table = RichTable(title=title, title_justify="left")
        for name in header:
            table.add_column(name)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def markdown(store: str | Path) -> str:
    found = tables(load(store))
    if not found:
        return ""
    lines = ["", "## Operations", ""]
    for title, header, rows in found:
        lines += [f"### {md(title)}", "", "| " + " | ".join(map(md, header)) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(map(md, row)) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def rates(results: list[OpsResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Per table title: kernel label -> tool -> TFLOP/s (GB/s for all-reduce), ok ones."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in results:
        chart = out.setdefault(f"{run.suite} · {run.precision} · {run.hardware}", {})
        for op_set in run.sets:
            for op in op_set.ops:
                value = op.gb_per_s if op.gb_per_s is not None else op.tflops
                if op.status == "ok" and value:
                    label = op.name if op.direction == "forward" else f"{op.name} ({op.direction})"
                    chart.setdefault(label, {})[run.tool] = value
    return out


def chart(values: dict[str, dict[str, float]]) -> str:
    """Inline SVG: a group of bars per kernel, one per framework, each kernel's bars
    relative to its best framework (the figure is printed at the bar's end)."""
    esc = html_lib.escape
    tools = list(dict.fromkeys(t for per in values.values() for t in per))
    colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]
    bar, gap, left, width = 12, 8, 260, 300
    rows: list[str] = []
    y = 0
    for label, per in values.items():
        best = max(per.values())
        rows.append(f'<text x="0" y="{y + bar}" font-size="11">{esc(label)}</text>')
        for i, tool in enumerate(tools):
            if tool not in per:
                continue
            w = max(1.0, width * per[tool] / best)
            colour = colours[i % len(colours)]
            rows.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{colour}">'
                f"<title>{esc(tool)}: {per[tool]:.3g}</title></rect>"
            )
            rows.append(
                f'<text x="{left + w + 4:.1f}" y="{y + bar - 2}" font-size="10">'
                f"{esc(tool)} {per[tool]:.3g}</text>"
            )
            y += bar
        y += gap
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" '
        f'height="{y}" role="img">{"".join(rows)}</svg>'
    )


def html(store: str | Path) -> str:
    results = load(store)
    found = tables(results)
    if not found:
        return ""
    charts = rates(results)
    esc = html_lib.escape
    parts = [
        "<section><h2>Operations</h2>",
        "<p>TFLOP/s (GB/s for all-reduce); bars relative to each kernel's best.</p>",
    ]
    for title, header, rows in found:
        if charts.get(title):
            parts.append(f"<h3>{esc(title)}</h3>{chart(charts[title])}<table><thead><tr>")
        else:
            parts.append(f"<h3>{esc(title)}</h3><table><thead><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in header]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def add_to(text: str, fmt: str, store: str | Path) -> str:
    """The rendered report with the section appended (before ``</body>`` in HTML)."""
    if fmt == "markdown":
        return text + markdown(store)
    section = html(store)
    if section and "</body>" in text:
        head, _, tail = text.rpartition("</body>")
        return head + section + "</body>" + tail
    return text + section
