"""Comparing operation benchmarks (``python -m harness compare A B --ops``).

A side is a results store, or an ops run id in ``--store``. Kernels are matched on
(tool, precision, kind, name, direction, shape): each side shows the latest ok figure
of each. The ratio is B's speed over A's (A's time per call / B's), with the 95%
confidence interval and the verdict of training comparisons (harness.results.compare:
the delta method on the log of the ratio of the mean times over the timed windows).
When the hardware of the two kernels differs (another CPU, GPU model or device count),
the row says so.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import UsageError
from harness.report.source import open_store
from harness.report.text import md_escape as md
from harness.results.compare import BAND
from harness.results.export import csv_cell
from harness.store import stats
from harness.store.schema import OpResult, OpsResult

Key = tuple[str, str, str, str, str, str]  # tool, precision, kind, name, direction, shape


@dataclass
class Measured:
    """One kernel's figure on one side, and where it ran."""

    op: OpResult
    run: OpsResult

    @property
    def hardware(self) -> str:
        gpu = f" {self.run.gpu_name}" if self.run.gpu_name else ""
        host = self.run.environment.get("cpu") if self.run.hardware == "cpu" else None
        return f"{self.run.hardware} x{self.run.devices}{gpu}" + (f" ({host})" if host else "")


@dataclass
class OpsComparison:
    tool: str
    precision: str
    kind: str
    name: str
    direction: str
    a: Measured | None
    b: Measured | None
    ratio: float | None  # B's speed / A's: A's time per call / B's
    ci: tuple[float, float] | None
    verdict: str  # faster, slower, same, inconclusive, - (a side has no figure)

    @property
    def differs(self) -> str:
        if self.a and self.b and self.a.hardware != self.b.hardware:
            return f"hardware: {self.a.hardware} vs {self.b.hardware}"
        return ""


def load_side(arg: str, store: str | None) -> tuple[str, list[OpsResult]]:
    """A store path (file or folder), or an ops run id in ``store``."""
    if Path(arg).exists():
        opened = open_store(arg)
        return str(opened.path), opened.ops()
    if store is None:
        raise UsageError(f"{arg!r} is not a results store; to name an ops run, give --store FILE")
    found = open_store(store).ops(ops_id=arg)
    if not found:
        raise UsageError(f"no ops run {arg!r} in {store}")
    return f"ops run {arg}", found


def _key(run: OpsResult, op: OpResult) -> Key:
    shape = json.dumps(op.shape, sort_keys=True, separators=(",", ":"))
    return (run.tool, op.precision, op.kernel, op.name, op.direction, shape)


def latest(results: list[OpsResult]) -> dict[Key, Measured]:
    """Each kernel's latest figure (``results`` oldest first): ok ones win over others."""
    chosen: dict[Key, Measured] = {}
    for run in results:
        for op_set in run.sets:
            for op in op_set.ops:
                key = _key(run, op)
                old = chosen.get(key)
                if old is None or op.status == "ok" or old.op.status != "ok":
                    chosen[key] = Measured(op, run)
    return chosen


def _ok(m: Measured | None) -> bool:
    return m is not None and m.op.status == "ok" and bool(m.op.time_us.mean)


def compare(a: list[OpsResult], b: list[OpsResult]) -> list[OpsComparison]:
    """One row per kernel present on either side, in the order A then B lists them."""
    side_a, side_b = latest(a), latest(b)
    rows = []
    for key in dict.fromkeys([*side_a, *side_b]):
        ma, mb = side_a.get(key), side_b.get(key)
        ratio = ci = None
        if _ok(ma) and _ok(mb):
            ta, tb = ma.op.time_us, mb.op.time_us  # type: ignore[union-attr]
            ratio = (ta.mean or 0.0) / (tb.mean or 1.0)
            found = stats.ratio_ci95_moments(
                ta.mean or 0.0, ta.std or 0.0, ta.n, tb.mean or 0.0, tb.std or 0.0, tb.n
            )
            ci = (found[1], found[2]) if found else None
        verdict = "-" if ratio is None else stats.verdict_of_ci(ci, BAND)
        rows.append(OpsComparison(*key[:5], ma, mb, ratio, ci, verdict))
    return rows


def _figure(m: Measured | None) -> str:
    if m is None:
        return "-"
    if m.op.status != "ok":
        return m.op.status
    t = m.op.time_us
    text = f"{t.mean:,.1f}" + (f" ± {t.std:,.1f}" if t.std is not None and t.n > 1 else "")
    return text + " µs"


def _cells(r: OpsComparison) -> list[str]:
    return [
        r.tool,
        r.precision,
        r.kind,
        r.name,
        r.direction,
        _figure(r.a),
        _figure(r.b),
        "-" if r.ratio is None else f"{r.ratio:.3f}",
        "-" if r.ci is None else f"{r.ci[0]:.3f}-{r.ci[1]:.3f}",
        r.verdict,
        r.differs or "-",
    ]


HEADERS = [
    "tool", "precision", "kind", "kernel", "direction", "A time/call", "B time/call",
    "B/A speed", "95% CI", "verdict", "differs",
]  # fmt: skip
EXPLAIN = (
    "B/A speed = A's time per call / B's; verdict from its 95% CI over the timed windows: "
    f"same = within ±{BAND:.0%}, faster/slower = wholly above/below 1, else inconclusive"
)


def summary_line(rows: list[OpsComparison]) -> str:
    count = {v: sum(r.verdict == v for r in rows) for v in ("faster", "slower", "same")}
    paired = sum(r.ratio is not None for r in rows)
    return (
        f"{paired} of {len(rows)} kernels measured on both sides: B faster in "
        f"{count['faster']}, slower in {count['slower']}, the same in {count['same']}"
    )


def terminal(rows: list[OpsComparison], a: str, b: str, console: Console) -> None:
    console.print(f"A: {escape(a)}\nB: {escape(b)}", highlight=False, soft_wrap=True)
    table = Table(header_style="bold")
    for i, name in enumerate(HEADERS):
        table.add_column(name, justify="right" if 5 <= i <= 8 else "left")
    for r in rows:
        table.add_row(*(escape(c) for c in _cells(r)))
    console.print(table)
    console.print(summary_line(rows), soft_wrap=True)
    console.print(f"[dim]{EXPLAIN}[/dim]", soft_wrap=True)


def markdown(rows: list[OpsComparison], a: str, b: str) -> str:
    lines = ["# Comparison of operations", "", f"- A: {md(a)}", f"- B: {md(b)}", ""]
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "---|" * 5 + "---:|" * 4 + "---|---|")
    lines += ["| " + " | ".join(map(md, _cells(r))) + " |" for r in rows]
    return "\n".join([*lines, "", summary_line(rows) + ".", "", EXPLAIN + ".", ""])


CSV_HEADERS = [
    "tool", "precision", "kind", "kernel", "direction", "a_time_us", "a_std_us", "a_status",
    "b_time_us", "b_std_us", "b_status", "ratio", "ratio_ci_low", "ratio_ci_high", "verdict",
    "differs",
]  # fmt: skip


def to_csv(rows: list[OpsComparison]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for r in rows:
        sides = []
        for m in (r.a, r.b):
            sides += [m.op.time_us.mean, m.op.time_us.std, m.op.status] if m else [None, None, "-"]
        ci = r.ci or (None, None)
        row = [r.tool, r.precision, r.kind, r.name, r.direction, *sides, r.ratio, *ci]
        writer.writerow([csv_cell(v) for v in [*row, r.verdict, r.differs]])
    return out.getvalue()
