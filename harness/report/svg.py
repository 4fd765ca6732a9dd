"""Grouped bar charts as inline SVG, drawn in Python (no JavaScript, no fonts to fetch).

One chart: groups along x (hardware configurations), one bar per series in each group
(frameworks), error bars of one standard deviation, and the run's status written in
place of a bar that has no value ("oom", "-").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from html import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

_CHAR_W = 7.0  # a generous width of one 11 px legend character (system-ui, sans-serif)
_LEGEND_LINE = 16  # px between legend lines


@dataclass(frozen=True)
class Bar:
    mean: float | None
    std: float | None = None
    status: str = "-"  # shown when mean is None
    detail: str = ""  # tooltip text


@dataclass(frozen=True)
class Frame:
    """What a chart is drawn in: its size, unit, series colours and title; and what
    both kinds of chart draw alike in it (the y grid, the unit, the legend, the groups)."""

    unit: str
    colors: dict[str, str]
    title: str = ""
    width: int = 560
    height: int = 300
    left: int = 58
    right: int = 10
    top: int = 34
    bottom: int = 40

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def head(
        self,
        css: str,
        ticks: list[float],
        y: Callable[[float], float],
        unit: str,
        series: list[str],
    ) -> list[str]:
        """The opening tag, the y grid with its labels, the unit and the legend."""
        width, left = self.width, self.left
        out = [
            f'<svg class="{css}" width="{width}" '
            f'height="{self.height}" viewBox="0 0 {width} {self.height}" role="img" '
            f'aria-label="{escape(self.title)}">'
        ]
        for t in ticks:  # grid and y labels
            out.append(
                f'<line class="grid" x1="{left}" x2="{width - self.right}" '
                f'y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                f'<text class="tick" x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">'
                f"{compact(t)}</text>"
            )
        out.append(
            f'<text class="unit" transform="translate(14 {self.top + self.plot_h / 2:.1f}) '
            f'rotate(-90)" text-anchor="middle">{escape(unit)}</text>'
        )
        for row, entries in enumerate(self.legend_rows(series)):  # legend
            for x, name, text in entries:
                y = 8 + _LEGEND_LINE * row
                tip = f"<title>{escape(name)}</title>" if text != name else ""
                out.append(
                    f'<rect x="{x:.0f}" y="{y}" width="11" height="11" '
                    f'fill="{self.colors[name]}"/><text class="legend" x="{x + 15:.0f}" '
                    f'y="{y + 10}">{escape(text)}{tip}</text>'
                )
        return out

    def legend_rows(self, series: list[str]) -> list[list[tuple[float, str, str]]]:
        """The legend laid out in lines across the chart's width: per line, (x, series,
        text shown) of each entry; a label too long for a line is cut with an ellipsis
        (the whole label is its tooltip)."""
        start, end = self.left + 8, self.width - self.right
        fits = max(4, int((end - start - 15) / _CHAR_W))
        rows: list[list[tuple[float, str, str]]] = [[]]
        x = start
        for name in series:
            text = name if len(name) <= fits else name[: fits - 1].rstrip() + "\u2026"
            w = 15 + _CHAR_W * len(text)
            if rows[-1] and x + w > end:
                rows.append([])
                x = start
            rows[-1].append((x, name, text))
            x += w + 12
        return rows

    def fitted(self, series: list[str]) -> Frame:
        """This frame, taller at the top by the legend's lines after the first."""
        extra = _LEGEND_LINE * (len(self.legend_rows(series)) - 1)
        return replace(self, top=self.top + extra, height=self.height + extra)

    def slots(
        self, out: list[str], groups: list[str], series: list[str], widest: float
    ) -> Iterator[tuple[str, str, float, float]]:
        """(group, series, left x, width) of every mark, group by group; each group's
        label is appended to ``out`` before its marks."""
        slot = self.plot_w / max(1, len(groups))
        mark_w = min(widest, (slot - 12) / max(1, len(series)))
        for gi, group in enumerate(groups):
            start = self.left + gi * slot + (slot - mark_w * len(series)) / 2
            out.append(
                f'<text class="group" x="{self.left + (gi + 0.5) * slot:.1f}" '
                f'y="{self.height - self.bottom + 18}" '
                f'text-anchor="middle">{escape(group)}</text>'
            )
            for si, name in enumerate(series):
                yield group, name, start + si * mark_w, mark_w


def _status(cx: float, base: float, label: str, detail: str) -> str:
    """A status written upwards in place of a mark that has no value ("oom", "-")."""
    return (
        f'<text class="status" transform="translate({cx + 3:.1f} {base - 4:.1f}) '
        f'rotate(-90)">{escape(label)}<title>{escape(detail or label)}</title>'
        "</text>"
    )


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and evenly spaced round values (1, 2, 2.5, 5 x 10^k) up to at least ``top``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def compact(value: float) -> str:
    """Short axis and bar labels: 950, 1.2k, 34k, 2.1M, 0.012."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if size >= 1e3:
        return f"{value / 1e3:.2g}k" if value % 1000 else f"{value / 1e3:.0f}k"
    if size >= 1 or value == 0:
        return f"{value:.3g}"
    return f"{value:.2g}"


def bar_chart(
    groups: list[str], series: list[str], bars: dict[tuple[str, str], Bar], frame: Frame
) -> str:
    """The SVG element of one grouped bar chart."""
    frame = frame.fitted(series)
    top, plot_h, colors = frame.top, frame.plot_h, frame.colors
    highest = max(
        ((b.mean or 0) + (b.std or 0) for b in bars.values() if b.mean is not None), default=0
    )
    ticks = nice_ticks(highest)
    y_max = ticks[-1]

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    out = frame.head("chart", ticks, y, frame.unit, series)
    for group, name, bx, bar_w in frame.slots(out, groups, series, 42.0):
        bar = bars.get((group, name), Bar(None))
        cx = bx + bar_w / 2
        if bar.mean is None or bar.mean <= 0:
            label = "0" if bar.mean is not None else bar.status
            out.append(_status(cx, y(0), label, bar.detail))
            continue
        bar_top = y(bar.mean)
        h = max(1.0, y(0) - bar_top)
        out.append(
            f'<rect class="bar" x="{bx + 1:.1f}" y="{y(0) - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" fill="{colors[name]}" data-value="{bar.mean:.6g}">'
            f"<title>{escape(bar.detail)}</title></rect>"
        )
        label_y = bar_top
        if bar.std:
            lo, hi = y(max(0.0, bar.mean - bar.std)), y(bar.mean + bar.std)
            cap = min(4.0, bar_w / 4)
            out.append(
                f'<path class="err" d="M{cx:.1f} {lo:.1f}V{hi:.1f}M{cx - cap:.1f} {hi:.1f}'
                f'H{cx + cap:.1f}M{cx - cap:.1f} {lo:.1f}H{cx + cap:.1f}"/>'
            )
            label_y = hi
        if bar_w >= 22:
            out.append(
                f'<text class="value" x="{cx:.1f}" y="{label_y - 4:.1f}" '
                f'text-anchor="middle">{compact(bar.mean)}</text>'
            )
    out.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{y(0):.1f}" y2="{y(0):.1f}"/>'
    )
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Spread:
    """One latency distribution: its percentiles (None: no value, ``status`` shown)."""

    p50: float | None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    status: str = "-"
    detail: str = ""  # tooltip text


def log_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 5 x 10^k) spanning [low, high] on a log axis, ends included."""
    if not (0 < low <= high) or not math.isfinite(high):
        return [1.0, 10.0]
    start, stop = math.floor(math.log10(low)), math.ceil(math.log10(high))
    ticks = [m * 10.0**k for k in range(start, stop + 1) for m in (1, 2, 5)]
    below = [t for t in ticks if t <= low]
    above = [t for t in ticks if t >= high]
    inside = [t for t in ticks if low < t < high]
    first, last = (below[-1] if below else ticks[0]), (above[0] if above else ticks[-1])
    if first == last:
        last = first * 2
    return [first, *inside, last]


def spread_chart(
    groups: list[str], series: list[str], spreads: dict[tuple[str, str], Spread], frame: Frame
) -> str:
    """The SVG element of one chart of latency percentiles: groups along x (batch sizes),
    one mark per series (framework) in each group, on a log y axis. A mark is a box from
    p50 to p99 with a line at p90 and a whisker up to p99.9."""
    top, plot_h, colors = frame.top, frame.plot_h, frame.colors
    values = [
        v
        for s in spreads.values()
        if s.p50 is not None
        for v in (s.p50, s.p90, s.p99, s.p999)
        if v is not None and v > 0
    ]
    ticks = log_ticks(min(values, default=1.0), max(values, default=10.0))
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])

    def y(v: float) -> float:
        return top + plot_h * (1 - (math.log10(v) - lo) / (hi - lo))

    out = frame.head("chart spread", ticks, y, f"{frame.unit} (log)", series)
    base = top + plot_h
    for group, name, bx, mark_w in frame.slots(out, groups, series, 30.0):
        mark = spreads.get((group, name), Spread(None))
        cx = bx + mark_w / 2
        if mark.p50 is None or mark.p50 <= 0:
            out.append(_status(cx, base, mark.status, mark.detail))
            continue
        p99 = mark.p99 if mark.p99 and mark.p99 >= mark.p50 else mark.p50
        low, high = y(mark.p50), y(p99)
        h = max(1.0, low - high)
        color = colors[name]
        out.append(
            f'<rect class="bar" x="{bx + 2:.1f}" y="{low - h:.1f}" width="{mark_w - 4:.1f}" '
            f'height="{h:.1f}" fill="{color}" fill-opacity="0.35" stroke="{color}" '
            f'data-p50="{mark.p50:.6g}" data-p99="{p99:.6g}">'
            f"<title>{escape(mark.detail)}</title></rect>"
            f'<path class="p50" d="M{bx + 2:.1f} {low:.1f}H{bx + mark_w - 2:.1f}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        if mark.p90 is not None and mark.p50 <= mark.p90 <= p99:
            out.append(
                f'<path class="p90" d="M{bx + 2:.1f} {y(mark.p90):.1f}H{bx + mark_w - 2:.1f}" '
                f'stroke="{color}"/>'
            )
        label_y = low - h
        if mark.p999 is not None and mark.p999 > p99:
            cap = min(4.0, mark_w / 4)
            top_y = y(mark.p999)
            out.append(
                f'<path class="err" d="M{cx:.1f} {high:.1f}V{top_y:.1f}'
                f'M{cx - cap:.1f} {top_y:.1f}H{cx + cap:.1f}"/>'
            )
            label_y = top_y
        if mark_w >= 22:
            out.append(
                f'<text class="value" x="{cx:.1f}" y="{label_y - 4:.1f}" '
                f'text-anchor="middle">{compact(mark.p50)}</text>'
            )
    out.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{base}" y2="{base}"/>'
    )
    out.append("</svg>")
    return "".join(out)
