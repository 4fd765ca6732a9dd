"""Comparing two sets of results side by side: images/sec of A and B per configuration.

A side is a results store (a ``results.sqlite`` file or the folder holding one), or a
sweep id or a run id in the store given with ``--store``. Runs are matched on their
configuration key (harness.store.configkey): each side shows its latest ok run per key (as
the report does), and a row pairs the same key on both sides. Configurations left over
on both sides are then paired by (tool, model, dataset, hardware label), fewest
differences first, so that two machines (another GPU model, another CPU) or two
harness versions can be compared: such a row names what differs ("gpus: A100 vs H100")
and is never called the same configuration. ``--strict`` pairs on the key only. Two
single runs (two run ids) are always paired, whatever differs.

The verdict compares the mean images/sec of B with A's through the 95% confidence
interval of the ratio of means R = mean_B / mean_A, by the delta method on log R:
Var(log mean) ~= s^2 / (n * mean^2) per side, SE = sqrt(sum of both), Welch-Satterthwaite
degrees of freedom, interval R * exp(+-t95(df) * SE). With a band of +-2% (0.98..1.02):

- ``same``: the whole interval lies within the band;
- ``faster`` / ``slower``: the whole interval lies above / below 1 (B is faster or
  slower, by more or by less than 2%: the interval says which and by how much);
- ``inconclusive``: the interval straddles 1 without lying within the band (the repeats
  cannot tell), or a side has fewer than two ok repeats (no interval);
- ``-``: a side has no images/sec (no run, or it failed).

Inference runs (``--task inference``) are compared the same way: the task is part of
the configuration key, and leftover configurations pair only with configurations of the
same task and, for inference, the same batch size (a batch-1 latency is never set
against a batch-64 one). Their rows add the latency per batch, mean and the p50, p90,
p99 and p99.9 percentiles (each a figure over the repeats): B/A with the same 95%
interval and band, where a ratio below 1 (lower latency) is ``faster``. Terminal and
Markdown output show them in a table of their own.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import datasets, models
from harness.errors import UsageError
from harness.report.data import (
    Value,
    base_of,
    configurations,
    dataset_title,
    hardware_label,
    metric_value,
    model_title,
    task_of,
)
from harness.report.source import describe_hosts, open_store, resolve_sweep
from harness.report.text import md_escape
from harness.results.export import csv_cell
from harness.store import configkey, metrics, stats
from harness.store.schema import RunResult

BAND = 0.02  # "same" means the ratio's 95% CI lies within 1 +- BAND
VERDICTS = ("faster", "slower", "same", "inconclusive", "-")


@dataclass
class FigureComparison:
    """One more figure of a row, A against B (harness.store.metrics: those with a
    ``compare`` name, e.g. the latencies of an inference row, lower is better)."""

    key: str  # e.g. latency_p99_s
    name: str  # e.g. p99
    a: Value  # in the report's unit (ms)
    b: Value
    ratio: float | None
    ci: tuple[float, float] | None
    verdict: str


@dataclass
class Side:
    label: str
    results: list[RunResult]
    single_run: bool = False  # named by a run id


@dataclass
class Comparison:
    tool: str
    model: str
    dataset: str
    hardware: str
    a: Value
    b: Value
    ratio: float | None  # B / A
    verdict: str  # faster, slower, same, inconclusive, - (a side has no value)
    ci: tuple[float, float] | None = None  # 95% CI of the ratio
    variant: str = ""  # what tells this configuration apart from others in the same cell
    key_a: str | None = None
    key_b: str | None = None
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)  # field, A, B
    task: str = "train"
    batch_size: int | None = None  # inference rows: the batch size (both sides)
    figures: list[FigureComparison] = field(default_factory=list)  # the task's compared

    @property
    def same_configuration(self) -> bool:
        return self.key_a is not None and self.key_a == self.key_b

    @property
    def framework(self) -> str:
        return f"{self.tool} · {self.variant}" if self.variant else self.tool

    @property
    def differs(self) -> str:
        """What differs between A's and B's configuration ("" when they are the same)."""
        return configkey.difference_text(self.differences)

    @property
    def settle(self) -> str:
        """For an inconclusive row: what would settle it, from the spread observed."""
        return settle_text(self.verdict, self.ratio, self.a, self.b)


def settle_text(verdict: str, ratio: float | None, a: Value, b: Value) -> str:
    """How many repeats a side would turn an inconclusive ratio into a verdict
    (stats.repeats_to_settle, with the ratio and spreads observed), or that its
    difference is below the noise; "" for the other verdicts."""
    if verdict != "inconclusive" or ratio is None or not a.mean or not b.mean:
        return ""
    if min(a.n, b.n) < 2:
        return "a side has 1 repeat, so no spread: run 2 or more"
    cv_a, cv_b = (a.std or 0.0) / a.mean, (b.std or 0.0) / b.mean
    n = stats.repeats_to_settle(ratio, cv_a, cv_b, BAND)
    if n is None:
        return f"a {abs(ratio - 1):.1%} difference is below the noise of these repeats"
    return f"about {n} repeats a side would settle a {abs(ratio - 1):.1%} difference"


def load_side(arg: str, store: str | None) -> Side:
    """A store path (file or folder), or a run id, a sweep id or ``latest`` in ``store``."""
    path = Path(arg)
    if path.exists():
        opened = open_store(path)
        return Side(str(opened.path), opened.runs())
    if store is None:
        raise UsageError(
            f"{arg!r} is not a results store; to name a sweep or a run, give --store FILE"
        )
    opened = open_store(store)
    run = opened.runs(run_id=arg)
    if run:
        return Side(f"run {arg}", run, single_run=True)
    sweep = resolve_sweep(opened, arg)
    assert sweep is not None
    return Side(f"sweep {sweep}", opened.runs(sweep_id=sweep))


def ratio_ci(a: Value, b: Value) -> tuple[float, float] | None:
    """95% CI of mean_B / mean_A (stats.ratio_ci95_moments); None below 2 repeats."""
    if not (a.shown and b.shown) or not a.mean or not b.mean:
        return None
    found = stats.ratio_ci95_moments(b.mean, b.std or 0.0, b.n, a.mean, a.std or 0.0, a.n)
    return (found[1], found[2]) if found else None


def verdict(ci: tuple[float, float] | None) -> str:
    """same / faster / slower / inconclusive for a 95% CI of B/A (see the module docstring)."""
    return stats.verdict_of_ci(ci, BAND)


def _base(result: RunResult) -> tuple[str, str, str, str]:
    return (*base_of(result), hardware_label(result))


def _pairable(result: RunResult) -> tuple[Any, ...]:
    """What leftover configurations must share to be paired: the cell, the task and,
    for inference, the batch size."""
    task = task_of(result)
    return (*_base(result), task, _batch(result))


def _batch(result: RunResult) -> int | None:
    """The batch size of a run whose task has figures per batch (None for the others)."""
    return result.spec.batch_size if metrics.per_batch(task_of(result)) else None


def _figure(metric: metrics.Metric, ra: RunResult | None, rb: RunResult | None) -> FigureComparison:
    """A figure of A and B (in its shown unit), B/A, its 95% CI and the verdict."""
    va, vb = metric_value(ra, metric.name), metric_value(rb, metric.name)
    ratio = vb.mean / va.mean if va.shown and vb.shown and va.mean else None
    ci = ratio_ci(va, vb) if ratio is not None else None
    mark = (
        "-"
        if ratio is None
        else stats.verdict_of_ci(ci, BAND, higher_is_faster=metric.higher_is_better)
    )
    return FigureComparison(metric.name, metric.compare, va, vb, ratio, ci, mark)


def _figures(task: str, ra: RunResult | None, rb: RunResult | None) -> list[FigureComparison]:
    """The compared figures of ``task``: a latency always (it carries the statuses), the
    others (energy per image) where a side measured them."""
    found = [(m, _figure(m, ra, rb)) for m in metrics.compared(task)]
    return [f for m, f in found if m.per_batch or f.a.shown or f.b.shown]


def _pairs(a: Side, b: Side, strict: bool) -> list[tuple[Any, Any]]:
    """(configuration of A or None, configuration of B or None): exact keys first."""
    ca, cb = configurations(a.results), configurations(b.results)
    pairs: list[tuple[Any, Any]] = [(ca[k], cb[k]) for k in ca if k in cb]
    left_a = [g for k, g in ca.items() if k not in cb]
    left_b = [g for k, g in cb.items() if k not in ca]
    if a.single_run and b.single_run and len(left_a) == len(left_b) == 1:
        return [(left_a[0], left_b[0])]
    if not strict:
        candidates = sorted(
            (
                (len(configkey.differences(ga.config, gb.config)), i, j)
                for i, ga in enumerate(left_a)
                for j, gb in enumerate(left_b)
                if _pairable(ga.shown) == _pairable(gb.shown)
            ),
        )
        used_a: set[int] = set()
        used_b: set[int] = set()
        for _, i, j in candidates:
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                pairs.append((left_a[i], left_b[j]))
        left_a = [g for i, g in enumerate(left_a) if i not in used_a]
        left_b = [g for j, g in enumerate(left_b) if j not in used_b]
    pairs += [(g, None) for g in left_a] + [(None, g) for g in left_b]
    return pairs


def compare(
    a: list[RunResult] | Side, b: list[RunResult] | Side, *, strict: bool = False
) -> list[Comparison]:
    """One row per configuration present on either side, in catalogue order."""
    side_a = a if isinstance(a, Side) else Side("A", a)
    side_b = b if isinstance(b, Side) else Side("B", b)
    pairs = _pairs(side_a, side_b, strict)
    # Variants: what tells apart the configurations that share a (tool, model, dataset,
    # hardware) cell, over both sides.
    in_cell: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for pair in pairs:
        for g in pair:
            if g is not None:
                in_cell.setdefault(_pairable(g.shown), {})[g.key] = g.config
    varying = {c: configkey.varying_fields(list(v.values())) for c, v in in_cell.items()}
    rows = []
    for ga, gb in pairs:
        first = ga or gb
        base = _base(first.shown)
        cell = _pairable(first.shown)
        ra = ga.shown if ga else None
        rb = gb.shown if gb else None
        va, vb = metric_value(ra, "images_per_sec"), metric_value(rb, "images_per_sec")
        ratio = vb.mean / va.mean if va.shown and vb.shown and va.mean else None
        ci = ratio_ci(va, vb) if ratio is not None else None
        mark = "-" if ratio is None else verdict(ci)
        diffs = configkey.differences(ga.config, gb.config) if ga and gb else []
        task = task_of(first.shown)
        exclude = ("batch_size", "task") if metrics.per_batch(task) else ()
        if ga and gb and ga.key != gb.key:
            variant = ""  # the differences column says it
        else:
            fields = [f for f in varying.get(cell, []) if f not in exclude]
            variant = configkey.label(first.config, fields)
        rows.append(
            Comparison(
                *base,
                va,
                vb,
                ratio,
                mark,
                ci,
                variant,
                ga.key if ga else None,
                gb.key if gb else None,
                diffs,
                task,
                _batch(first.shown),
                _figures(task, ra, rb),
            )
        )
    ds_rank = {n: i for i, n in enumerate(datasets.DATASETS)}
    model_rank = {n: i for i, n in enumerate(models.MODELS)}
    rows.sort(
        key=lambda r: (
            ds_rank.get(r.dataset, 99),
            r.dataset,
            model_rank.get(r.model, 99),
            r.model,
            metrics.TASKS.index(r.task) if r.task in metrics.TASKS else 99,
            r.tool,
            not r.hardware.startswith("CPU"),
            r.hardware,
            r.variant,
            r.batch_size or 0,
        )
    )
    return rows


def _speed(v: Value) -> str:
    if not v.shown:
        return v.status
    text = f"{v.mean:,.1f}"
    text += f" ± {v.std:,.1f}" if v.std is not None and v.n > 1 else ""
    return text + ("†" if v.contended else "")


def _ci_text(r: Comparison) -> str:
    return "-" if r.ci is None else f"{r.ci[0]:.3f}-{r.ci[1]:.3f}"


def summary_line(rows: list[Comparison]) -> str:
    ratios = [r.ratio for r in rows if r.ratio]
    if not ratios:
        return "no configuration has images/sec on both sides"
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    count = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    text = (
        f"B/A geometric mean over {len(ratios)} configurations: {geo:.3f}x; B faster in "
        f"{count['faster']}, slower in {count['slower']}, the same (within ±{BAND:.0%}) in "
        f"{count['same']}, inconclusive in {count['inconclusive']}"
    )
    differing = sum(bool(r.differences) for r in rows)
    if differing:
        text += f"; {differing} row(s) pair different configurations (see what differs)"
    contended = sum(r.a.contended or r.b.contended for r in rows)
    if contended:
        text += (
            f"; † {contended} row(s) have a side measured while another process used its GPUs"
            " or CPU cores"
        )
    return text


_EXPLAIN = (
    "verdict: from the 95% CI of the ratio of mean images/sec (delta method on the log, "
    f"Welch df): same = CI within ±{BAND:.0%}, faster/slower = CI wholly above/below 1, "
    "inconclusive = CI straddles 1 (and is not within the band) or fewer than 2 ok "
    "repeats on a side; it says how many repeats a side would settle the difference seen "
    "(if the spread stayed as observed), or that the difference is below the noise"
)


def _headers(rows: list[Comparison]) -> list[str]:
    headers = [
        "dataset",
        "network",
        "framework",
        "hardware",
        "A images/sec",
        "B images/sec",
        "B/A",
        "95% CI",
        "verdict",
        *(f"{name} B/A" for name in _extra(rows)),
    ]
    return headers + (["configuration differs"] if any(r.differences for r in rows) else [])


def _cells_text(
    r: Comparison, with_differs: bool, extra: list[str] | None = None, with_ci: bool = True
) -> list[str]:
    cells = [
        dataset_title(r.dataset),
        model_title(r.model),
        r.framework,
        r.hardware,
        _speed(r.a),
        _speed(r.b),
        "-" if r.ratio is None else f"{r.ratio:.3f}",
        _ci_text(r),
        f"{r.verdict} ({r.settle})" if r.settle else r.verdict,
        *(_latency_text(_latency(r, name), with_ci) for name in extra or []),
    ]
    return cells + ([r.differs or "-"] if with_differs else [])


_COLOUR = {"faster": "green", "slower": "red", "same": "dim", "inconclusive": "yellow", "-": "dim"}
_SHOWN_LATENCIES = ("p50", "p90", "p99", "p99.9")  # the inference table's latency columns
_TERMINAL_LATENCIES = ("p50", "p99")  # on a terminal (the others: markdown and CSV)
_EXPLAIN_LATENCY = (
    "latency columns: B/A of the mean latency percentile per batch over the repeats, its "
    f"95% CI and verdict, the same rule with lower = faster (CI wholly below 1: B faster; "
    f"within ±{BAND:.0%}: same)"
)


def split_tasks(rows: list[Comparison]) -> tuple[list[Comparison], list[Comparison]]:
    """(training rows, inference rows): rows of a task with figures per batch (latencies)
    have a table of their own."""
    per_batch = [metrics.per_batch(r.task) for r in rows]
    return (
        [r for r, p in zip(rows, per_batch, strict=True) if not p],
        [r for r, p in zip(rows, per_batch, strict=True) if p],
    )


def _latency(r: Comparison, name: str) -> FigureComparison | None:
    return next((f for f in r.figures if f.name == name), None)


def _extra(rows: list[Comparison]) -> list[str]:
    """The compared figures of the training table (besides images/sec), by short name."""
    names = {f.name: None for r in rows for f in r.figures}
    return list(names)


def _ms(v: Value) -> str:
    return f"{v.mean:,.3g}" if v.shown and v.mean is not None else v.status


def _latency_text(f: FigureComparison | None, with_ci: bool = True) -> str:
    """``0.953 (0.941-0.966) faster`` (``0.953 faster`` without the CI), or ``-``."""
    if f is None or f.ratio is None:
        return "-"
    if not with_ci:
        return f"{f.ratio:.3f} {f.verdict}"
    ci = "-" if f.ci is None else f"{f.ci[0]:.3f}-{f.ci[1]:.3f}"
    return f"{f.ratio:.3f} ({ci}) {f.verdict}"


def _inference_headers(
    rows: list[Comparison], shown: tuple[str, ...] = _SHOWN_LATENCIES
) -> list[str]:
    headers = [
        "dataset",
        "network",
        "framework",
        "hardware",
        "batch",
        "A images/sec",
        "B images/sec",
        "B/A",
        "95% CI",
        "verdict",
        "A p50 (ms)",
        "B p50 (ms)",
        *(f"{name} B/A" for name in shown),
    ]
    return headers + (["configuration differs"] if any(r.differences for r in rows) else [])


def _inference_cells(
    r: Comparison,
    with_differs: bool,
    with_ci: bool = True,
    shown: tuple[str, ...] = _SHOWN_LATENCIES,
) -> list[str]:
    p50 = _latency(r, "p50")
    cells = _cells_text(r, False)
    cells.insert(4, "-" if r.batch_size is None else str(r.batch_size))
    cells += [_ms(p50.a) if p50 else "-", _ms(p50.b) if p50 else "-"]
    cells += [_latency_text(_latency(r, name), with_ci) for name in shown]
    return cells + ([r.differs or "-"] if with_differs else [])


def latency_summary(rows: list[Comparison], name: str = "p99") -> str:
    """The geometric mean of one latency's B/A over the inference rows, and the verdicts."""
    found = [f for r in rows if (f := _latency(r, name)) is not None and f.ratio]
    if not found:
        return f"no inference configuration has a {name} latency on both sides"
    geo = math.exp(sum(math.log(f.ratio or 1.0) for f in found) / len(found))
    count = {v: sum(f.verdict == v for f in found) for v in VERDICTS}
    return (
        f"{name} latency B/A geometric mean over {len(found)} configurations: {geo:.3f}x; "
        f"B faster (lower) in {count['faster']}, slower in {count['slower']}, the same in "
        f"{count['same']}, inconclusive in {count['inconclusive']}"
    )


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
    training, inference = split_tasks(rows)
    if training or not inference:
        headers, extra = _headers(training), _extra(training)
        with_differs = headers[-1] == "configuration differs"
        table = Table(header_style="bold")
        for i, name in enumerate(headers):
            table.add_column(name, justify="right" if 4 <= i <= 7 else "left")
        for r in training:
            cells = [escape(c) for c in _cells_text(r, with_differs, extra, False)]
            cells[8] = f"[{_COLOUR[r.verdict]}]{cells[8]}[/{_COLOUR[r.verdict]}]"
            table.add_row(*cells)
        console.print(table)
        console.print(summary_line(training), soft_wrap=True)
        console.print(f"[dim]{_EXPLAIN}[/dim]", soft_wrap=True)
    if inference:
        headers = _inference_headers(inference, _TERMINAL_LATENCIES)
        with_differs = headers[-1] == "configuration differs"
        table = Table(title="Inference", title_justify="left", header_style="bold")
        for i, name in enumerate(headers):
            table.add_column(name, justify="right" if 4 <= i <= 8 or 10 <= i <= 13 else "left")
        for r in inference:
            cells = _inference_cells(r, with_differs, False, _TERMINAL_LATENCIES)
            cells = [escape(c) for c in cells]
            cells[9] = f"[{_COLOUR[r.verdict]}]{cells[9]}[/{_COLOUR[r.verdict]}]"
            table.add_row(*cells)
        console.print(table)
        console.print("inference throughput: " + summary_line(inference), soft_wrap=True)
        console.print(latency_summary(inference), soft_wrap=True)
        console.print(
            f"[dim]{_EXPLAIN}; {_EXPLAIN_LATENCY} (p90, p99.9 and the latency CIs: --format "
            "markdown or csv)[/dim]",
            soft_wrap=True,
        )


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(map(md_escape, cells)) + " |"


def markdown(rows: list[Comparison], a: Side, b: Side) -> str:
    training, inference = split_tasks(rows)
    lines = ["# Comparison", "", f"- A: {md_escape(a.label)}", f"- B: {md_escape(b.label)}", ""]
    if training or not inference:
        headers, extra = _headers(training), _extra(training)
        with_differs = headers[-1] == "configuration differs"
        align = ["---", "---", "---", "---", "---:", "---:", "---:", "---:", "---"]
        align += ["---"] * len(extra)
        lines += [
            _md_row(headers),
            "|" + "|".join(align + (["---"] if with_differs else [])) + "|",
        ]
        lines += [_md_row(_cells_text(r, with_differs, extra)) for r in training]
        lines += [
            "",
            summary_line(training) + ".",
            "",
            _EXPLAIN[0].upper() + _EXPLAIN[1:] + ".",
            "",
        ]
    if inference:
        headers = _inference_headers(inference)
        with_differs = headers[-1] == "configuration differs"
        align = ["---"] * 4 + ["---:"] * 5 + ["---"] + ["---:"] * 6
        lines += [
            "## Inference",
            "",
            _md_row(headers),
            "|" + "|".join(align + (["---"] if with_differs else [])) + "|",
        ]
        lines += [_md_row(_inference_cells(r, with_differs)) for r in inference]
        lines += [
            "",
            "Inference throughput: " + summary_line(inference) + ".",
            "",
            latency_summary(inference) + ".",
            "",
            _EXPLAIN[0].upper() + _EXPLAIN[1:] + "; " + _EXPLAIN_LATENCY + ".",
            "",
        ]
    return "\n".join(lines)


def to_csv(rows: list[Comparison]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    compared = metrics.all_compared()
    writer.writerow(
        [
            "tool",
            "model",
            "dataset",
            "hardware",
            "variant",
            "task",
            "batch_size",
            "a_config_key",
            "a_mean",
            "a_std",
            "a_n",
            "a_status",
            "b_config_key",
            "b_mean",
            "b_std",
            "b_n",
            "b_status",
            "ratio",
            "ratio_ci_low",
            "ratio_ci_high",
            "verdict",
            "settle",
            # each compared figure (harness.store.metrics), in its shown unit: the
            # latencies per batch of inference rows in ms (e.g. latency_p99_ms_ratio)
            *(f"{m.csv_stem}_{part}" for m in compared for part in _LATENCY_CSV),
            "differences",
            "a_contended",
            "b_contended",
        ]
    )
    for r in rows:
        ci = r.ci or (None, None)
        latency = [
            cell
            for m in compared
            for cell in _latency_csv(next((f for f in r.figures if f.key == m.name), None))
        ]
        row = [
            r.tool, r.model, r.dataset, r.hardware, r.variant, r.task, r.batch_size,
            r.key_a, r.a.mean, r.a.std, r.a.n, r.a.status,
            r.key_b, r.b.mean, r.b.std, r.b.n, r.b.status,
            r.ratio, *ci, r.verdict, r.settle, *latency, r.differs,
            int(r.a.contended), int(r.b.contended),
        ]  # fmt: skip
        writer.writerow([csv_cell(v) for v in row])  # None as "", no formula cells
    return out.getvalue()


_LATENCY_CSV = ("a_mean", "a_std", "a_n", "b_mean", "b_std", "b_n", "ratio", "ci_low",
                "ci_high", "verdict")  # fmt: skip


def _latency_csv(f: FigureComparison | None) -> list[Any]:
    """The CSV cells of one compared figure of a row; empty where its task has none."""
    if f is None:
        return [None] * len(_LATENCY_CSV)
    ci = f.ci or (None, None)
    a = (f.a.mean, f.a.std, f.a.n) if f.a.shown else (None, None, f.a.n)
    b = (f.b.mean, f.b.std, f.b.n) if f.b.shown else (None, None, f.b.n)
    return [*a, *b, f.ratio, *ci, f.verdict]
