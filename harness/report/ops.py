"""The report's "Operations" section: every stored ops run, frameworks side by side.

One table per (suite, precision, hardware, device count), with a bar chart in HTML
(each kernel's runs side by side, relative to the best): a row per kernel and direction,
a column per run (its framework; with its start time where a framework ran more than
once there) with its TFLOP/s (GB/s for all-reduce) and the % of the device's peak, or
why there is none (unsupported, skipped, failed); a last row with each run's total time
per pass over each set. Empty when the store has no ops results. In HTML the section
goes before the page's footer.
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


def load(store: str | Path) -> list[OpsResult]:
    """Every ops run of the store, oldest first."""
    return ResultStore(store_path(store), readonly=True).ops()


def _devices(count: int) -> str:
    return f"{count} device" if count == 1 else f"{count} devices"


def grouped(results: list[OpsResult]) -> dict[str, list[tuple[str, OpsResult]]]:
    """Table title -> its runs with their column labels, one table per (suite, precision,
    hardware, device count), in first-seen order; a framework's runs in one table are
    told apart by their start time."""
    groups: dict[tuple[str, str, str, int], list[OpsResult]] = {}
    for result in results:
        key = (result.suite, result.precision, result.hardware, result.devices)
        groups.setdefault(key, []).append(result)
    out: dict[str, list[tuple[str, OpsResult]]] = {}
    for (suite, precision, hardware, devices), runs in groups.items():
        tools = [r.tool for r in runs]
        labelled = []
        for run in runs:
            label = run.tool
            if tools.count(run.tool) > 1:
                when = (run.started_at or run.ops_id or "?").replace("T", " ")[:16]
                label = f"{run.tool} ({when})"
            labelled.append((label, run))
        out[f"{suite} · {precision} · {hardware} · {_devices(devices)}"] = labelled
    return out


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
    out: list[Table] = []
    for title, runs in grouped(results).items():
        labels = [label for label, _ in runs]
        rows: dict[tuple[str, str], dict[str, str]] = {}
        totals: dict[str, list[str]] = {label: [] for label in labels}
        for label, run in runs:
            for op_set in run.sets:
                for op in op_set.ops:
                    rows.setdefault((op.name, op.direction), {})[label] = cell(op)
                if op_set.total_us:
                    totals[label].append(f"{op_set.kind} {op_set.total_us / 1e3:,.1f} ms")
        body = [
            [name if direction == "forward" else f"{name} ({direction})"]
            + [values.get(label, "-") for label in labels]
            for (name, direction), values in rows.items()
        ]
        body.append(["total per pass"] + ["; ".join(totals[label]) or "-" for label in labels])
        out.append((title, ["kernel", *labels], body))
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
    """Per table title: kernel label -> run label -> TFLOP/s (GB/s for all-reduce), ok ones."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for title, runs in grouped(results).items():
        chart = out.setdefault(title, {})
        for run_label, run in runs:
            for op_set in run.sets:
                for op in op_set.ops:
                    value = op.gb_per_s if op.gb_per_s is not None else op.tflops
                    if op.status == "ok" and value:
                        name = (
                            op.name if op.direction == "forward" else f"{op.name} ({op.direction})"
                        )
                        chart.setdefault(name, {})[run_label] = value
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
    # room right of the longest bar for the widest "run value" text (7 px a character)
    texts = [f"{tool} {value:.3g}" for per in values.values() for tool, value in per.items()]
    right = max(160, 8 + 7 * max(map(len, texts), default=0))
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
    full = left + width + right  # drawn at this size, scaled down on a narrower page
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{full}" height="{y}" '
        f'viewBox="0 0 {full} {y}" style="max-width: 100%; height: auto" role="img">'
        f"{''.join(rows)}</svg>"
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
    """The rendered report with the section added: in HTML before the page's footer (or
    before ``</body>``), so the footer stays last; in Markdown at the end."""
    if fmt == "markdown":
        return text + markdown(store)
    section = html(store)
    for mark in ("<footer", "</body>"):
        if section and mark in text:
            head, _, tail = text.rpartition(mark)
            return head + section + mark + tail
    return text + section
