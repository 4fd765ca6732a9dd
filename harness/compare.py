"""Comparing two sets of results side by side: images/sec of A and B per configuration.

A side is a results store (a ``results.sqlite`` file or the folder holding one), or a
sweep id in the store given with ``--store``. Configurations are matched on (tool,
model, dataset, hardware), where hardware is the configuration ("CPU", "1 GPU", or the
sweep's own label), not the GPU model, so two machines can be compared. Each side
shows its latest ok run per configuration (as the report does).

A difference is *significant* when Welch's t-test over the two runs' repeats rejects
"same mean" at the 5% level (two-sided): |mean_B - mean_A| / sqrt(s_A²/n_A + s_B²/n_B)
exceeds Student's t critical value for the Welch-Satterthwaite degrees of freedom
(rounded down). It needs at least two ok repeats on each side; otherwise the verdict
is "?". The mark is "faster" or "slower" (B against A) when significant, "same" when not.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import stats
from harness.errors import UsageError
from harness.report.data import (
    Value,
    dataset_title,
    hardware_label,
    metric_value,
    model_title,
    pick,
)
from harness.report.source import describe_hosts, open_store, resolve_sweep


@dataclass
class Side:
    label: str
    results: list[dict[str, Any]]


@dataclass
class Comparison:
    tool: str
    model: str
    dataset: str
    hardware: str
    a: Value
    b: Value
    ratio: float | None  # B / A
    verdict: str  # faster, slower, same, ? (too few repeats), - (a side has no value)


def load_side(arg: str, store: str | None) -> Side:
    """A store path (file or folder), or a sweep id (or ``latest``) in ``store``."""
    path = Path(arg)
    if path.exists():
        opened = open_store(path)
        return Side(str(opened.path), opened.runs())
    if store is None:
        raise UsageError(f"{arg!r} is not a results store; to name a sweep, give --store FILE")
    opened = open_store(store)
    sweep = resolve_sweep(opened, arg)
    assert sweep is not None
    return Side(f"sweep {sweep}", opened.runs(sweep_id=sweep))


def _cells(results: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        spec = r.get("spec") or {}
        key = (
            spec.get("tool", "?"),
            spec.get("model", "?"),
            spec.get("dataset", "?"),
            hardware_label(r),
        )
        groups.setdefault(key, []).append(r)
    return {key: pick(runs) for key, runs in groups.items()}


def significant(a: Value, b: Value) -> bool | None:
    """Welch's t-test at 5%; None when a side has fewer than two repeats."""
    if a.mean is None or b.mean is None or a.n < 2 or b.n < 2:
        return None
    va, vb = (a.std or 0.0) ** 2 / a.n, (b.std or 0.0) ** 2 / b.n
    if va + vb == 0:
        return a.mean != b.mean
    t = abs(b.mean - a.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (a.n - 1)) + (vb**2 / (b.n - 1)))
    return t > stats.t95(df)


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Comparison]:
    """One row per configuration present on either side, in catalogue order."""
    from harness import datasets, models

    cells_a, cells_b = _cells(a), _cells(b)
    ds_rank = {n: i for i, n in enumerate(datasets.DATASETS)}
    model_rank = {n: i for i, n in enumerate(models.MODELS)}
    keys = sorted(
        set(cells_a) | set(cells_b),
        key=lambda k: (
            ds_rank.get(k[2], 99),
            k[2],
            model_rank.get(k[1], 99),
            k[1],
            k[0],
            not k[3].startswith("CPU"),
            k[3],
        ),
    )
    rows = []
    for key in keys:
        va = metric_value(cells_a.get(key), "images_per_sec")
        vb = metric_value(cells_b.get(key), "images_per_sec")
        ratio = vb.mean / va.mean if va.shown and vb.shown and va.mean else None
        if ratio is None:
            verdict = "-"
        else:
            sig = significant(va, vb)
            verdict = (
                "?"
                if sig is None
                else ("same" if not sig else ("faster" if ratio > 1 else "slower"))
            )
        rows.append(Comparison(key[0], key[1], key[2], key[3], va, vb, ratio, verdict))
    return rows


def _speed(v: Value) -> str:
    if not v.shown:
        return v.status
    text = f"{v.mean:,.1f}"
    return text + (f" ± {v.std:,.1f}" if v.std is not None and v.n > 1 else "")


def summary_line(rows: list[Comparison]) -> str:
    ratios = [r.ratio for r in rows if r.ratio]
    if not ratios:
        return "no configuration has images/sec on both sides"
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    count = {v: sum(r.verdict == v for r in rows) for v in ("faster", "slower", "same", "?")}
    return (
        f"B/A geometric mean over {len(ratios)} configurations: {geo:.3f}x; B significantly "
        f"faster in {count['faster']}, slower in {count['slower']}, no significant difference "
        f"in {count['same']}, too few repeats to tell in {count['?']}"
    )


_HEADERS = [
    "dataset",
    "network",
    "framework",
    "hardware",
    "A images/sec",
    "B images/sec",
    "B/A",
    "difference",
]


def _cells_text(r: Comparison) -> list[str]:
    return [
        dataset_title(r.dataset),
        model_title(r.model),
        r.tool,
        r.hardware,
        _speed(r.a),
        _speed(r.b),
        "-" if r.ratio is None else f"{r.ratio:.3f}",
        r.verdict,
    ]


def terminal(rows: list[Comparison], a: Side, b: Side, console: Console) -> None:
    console.print(
        f"A: {escape(a.label)} ({'; '.join(describe_hosts(a.results)) or 'no runs'})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"B: {escape(b.label)} ({'; '.join(describe_hosts(b.results)) or 'no runs'})",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(header_style="bold")
    for i, name in enumerate(_HEADERS):
        table.add_column(name, justify="right" if 4 <= i <= 6 else "left")
    colour = {"faster": "green", "slower": "red", "same": "dim", "?": "yellow", "-": "dim"}
    for r in rows:
        cells = [escape(c) for c in _cells_text(r)]
        cells[-1] = f"[{colour[r.verdict]}]{cells[-1]}[/{colour[r.verdict]}]"
        table.add_row(*cells)
    console.print(table)
    console.print(summary_line(rows), soft_wrap=True)
    console.print(
        "[dim]difference: Welch's t-test over the repeats at the 5% level "
        "(? = fewer than 2 ok repeats on a side)[/dim]"
    )


def markdown(rows: list[Comparison], a: Side, b: Side) -> str:
    lines = [
        "# Comparison",
        "",
        f"- A: {a.label}",
        f"- B: {b.label}",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(_cells_text(r)) + " |" for r in rows]
    lines += [
        "",
        summary_line(rows) + ".",
        "",
        "Difference: Welch's t-test over the repeats at the 5% level.",
        "",
    ]
    return "\n".join(lines)


def to_csv(rows: list[Comparison]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "tool",
            "model",
            "dataset",
            "hardware",
            "a_mean",
            "a_std",
            "a_n",
            "a_status",
            "b_mean",
            "b_std",
            "b_n",
            "b_status",
            "ratio",
            "verdict",
        ]
    )
    for r in rows:
        writer.writerow(
            [
                r.tool,
                r.model,
                r.dataset,
                r.hardware,
                *("" if x is None else x for x in (r.a.mean, r.a.std, r.a.n, r.a.status)),
                *("" if x is None else x for x in (r.b.mean, r.b.std, r.b.n, r.b.status)),
                "" if r.ratio is None else r.ratio,
                r.verdict,
            ]
        )
    return out.getvalue()
