"""The report as one static, self-contained HTML page.

Everything is inline: CSS, SVG charts drawn in Python, and a few lines of script that
only check the page (after load, every chart's bars must have a positive size; the
result lands in ``<body data-rendered="yes|no">`` for tests in a headless browser).
A Content-Security-Policy forbids every network request, so the page works offline
and cannot leak anything.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from harness import __version__
from harness.report.data import (
    INFERENCE_METRIC,
    InferenceData,
    Metric,
    ReportData,
    Value,
    dataset_title,
    model_title,
)
from harness.report.svg import PALETTE, Bar, Frame, Spread, bar_chart, spread_chart
from harness.report.text import inference_headers, inference_rows, ratio_text, value_text

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2330; background: #fff; margin: 0 auto; padding: 1.5rem 2rem; max-width: 1280px; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #dde2ea; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
ul.info { color: #4a5466; padding-left: 1.2rem; margin: 0; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #dde2ea; padding: .25rem .55rem; }
th { background: #f3f5f9; text-align: left; }
td.num { text-align: right; white-space: nowrap; }
td.status { color: #b3261e; text-align: center; }
td.none { color: #9aa3b2; text-align: center; }
tr.first td { border-top: 2px solid #b9c2d0; }
.charts { display: grid; align-items: start; gap: .6rem;
          grid-template-columns: repeat(auto-fill, minmax(570px, 1fr)); }
figure { margin: 0; padding: .4rem; border: 1px solid #e6e9ef; border-radius: 6px; }
figcaption { font-weight: 600; margin: 0 0 .2rem .3rem; }
p.empty { color: #9aa3b2; margin: .3rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg .grid { stroke: #e8ebf0; } svg .axis { stroke: #4a5466; }
svg text { font: 11px system-ui, sans-serif; fill: #4a5466; }
svg .legend { fill: #1d2330; } svg .value { font-size: 9.5px; }
svg .status { font-size: 10px; fill: #b3261e; }
svg .err { stroke: #1d2330; stroke-width: 1.2; fill: none; }
.caption { color: #4a5466; margin: 0 0 .3rem; }
footer { color: #7a8496; margin-top: 2rem; font-size: 12px; }
.wide { overflow-x: auto; max-width: 100%; }
"""

# Records load errors and blocked requests before anything else runs.
GUARD = """
window.addEventListener("error", function (e) {
  document.documentElement.dataset.errors = (e.message || "error");
});
document.addEventListener("securitypolicyviolation", function (e) {
  document.documentElement.dataset.blocked = e.blockedURI || "blocked";
});
"""

# Checks that every chart drew its bars with a positive size.
_CHECK = """
(function () {
  var charts = document.querySelectorAll("svg.chart"), bars = 0, bad = 0;
  charts.forEach(function (svg) {
    svg.querySelectorAll("rect.bar").forEach(function (r) {
      var box = r.getBBox();
      bars += 1;
      if (!(box.width > 0 && box.height > 0)) { bad += 1; }
    });
  });
  document.body.dataset.charts = String(charts.length);
  document.body.dataset.bars = String(bars);
  document.body.dataset.rendered = (charts.length > 0 && bars > 0 && bad === 0) ? "yes" : "no";
})();
"""


def _cell(value: Value, metric: Metric) -> str:
    text = escape(value_text(value, metric))
    title = f' title="run {escape(value.run_id)}"' if value.run_id else ""
    if value.shown:
        return f'<td class="num"{title}>{text}</td>'
    css = "status" if value.status not in ("-", "ok", "partial") else "none"
    return f'<td class="{css}"{title}>{text}</td>'


def _results_table(data: ReportData) -> str:
    head = "".join(f"<th>{escape(c.label)}</th>" for c in data.columns)
    rows = []
    for metric in data.metrics:
        for i, row in enumerate(data.rows):
            cells = "".join(_cell(data.value(metric.key, row, c), metric) for c in data.columns)
            first = ' class="first"' if i == 0 else ""
            rows.append(
                f"<tr{first}><td>{escape(metric.title)}</td><td>{escape(dataset_title(row.dataset))}</td>"
                f"<td>{escape(model_title(row.model))}</td><td>{escape(row.label)}</td>{cells}</tr>"
            )
    return (
        "<table><thead><tr><th>metric</th><th>dataset</th><th>network</th><th>framework</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _speedup_tables(data: ReportData) -> str:
    out = []
    for speed in data.speedups():
        efficiency = any(n != 1.0 for _, _, n in speed.pairs)
        head = "".join(
            f"<th>{escape(h)}</th>" + ("<th>efficiency</th>" if efficiency else "")
            for h in speed.headers
        )
        rows = []
        for row, ratios, effs in speed.rows:
            cells = ""
            for r, e in zip(ratios, effs, strict=True):
                css = "num" if r.value is not None else ("none" if r.status == "-" else "status")
                cells += f'<td class="{css}">{escape(ratio_text(r))}</td>'
                if efficiency:
                    cells += f'<td class="{css}">{escape(ratio_text(e, percent=True))}</td>'
            rows.append(
                f"<tr><td>{escape(dataset_title(row.dataset))}</td><td>{escape(model_title(row.model))}"
                f"</td><td>{escape(row.label)}</td>{cells}</tr>"
            )
        out.append(
            f'<h2>{escape(speed.title)}</h2><p class="caption">{escape(speed.description)}.</p>'
            "<table><thead><tr><th>dataset</th><th>network</th><th>framework</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(out)


def _charts(data: ReportData) -> str:
    tools = list(dict.fromkeys(r.label for r in data.rows))
    colors = {tool: PALETTE[i % len(PALETTE)] for i, tool in enumerate(tools)}
    out = ["<h2>Charts</h2>"]
    for dataset, model in data.pairs():
        series = data.tools(dataset, model)
        out.append(f"<h3>{escape(dataset_title(dataset))} · {escape(model_title(model))}</h3>")
        out.append('<div class="charts">')
        rows = [r for r in data.rows if (r.dataset, r.model) == (dataset, model)]
        for metric in data.metrics:
            caption = f"{dataset_title(dataset)} · {model_title(model)} · {metric.title}"
            bars = {}
            for row in rows:
                for column in data.columns:
                    v = data.value(metric.key, row, column)
                    detail = f"{row.label} · {column.label}: {value_text(v, metric)}"
                    if v.shown and metric.unit:
                        detail += f" {metric.unit}"
                    bars[(column.label, row.label)] = Bar(
                        v.mean if v.shown else None,
                        v.std if v.n > 1 else None,
                        value_text(v, metric),
                        detail,
                    )
            if not any(b.mean is not None for b in bars.values()):
                out.append(
                    f"<figure><figcaption>{escape(caption)}</figcaption>"
                    f'<p class="empty">no data (not measured on these runs)</p></figure>'
                )
                continue
            svg = bar_chart(
                [c.label for c in data.columns],
                series,
                bars,
                Frame(unit=metric.unit, colors=colors, title=caption),
            )
            out.append(f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>")
        out.append("</div>")
    return "".join(out)


def _inference_table(data: InferenceData) -> str:
    headers = inference_headers(data)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = []
    previous = None
    for labels, values in inference_rows(data):
        cells = "".join(_cell(v, m) for v, m in zip(values, data.metrics, strict=True))
        first = ' class="first"' if previous is not None and labels[:2] != previous else ""
        previous = labels[:2]
        rows.append(f"<tr{first}>{''.join(f'<td>{escape(t)}</td>' for t in labels)}{cells}</tr>")
    return (
        f'<div class="wide"><table class="inference"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _batch_label(batch: int | None) -> str:
    return "batch ?" if batch is None else f"batch {batch}"


def _inference_charts(data: InferenceData, before: list[str]) -> str:
    """Per (dataset, network, hardware): throughput and latency percentiles against the
    batch size, one series per framework. ``before``: the training charts' series, so a
    framework keeps its colour across the page."""
    tools = list(dict.fromkeys([*before, *(r.label for r in data.rows)]))
    colors = {tool: PALETTE[i % len(PALETTE)] for i, tool in enumerate(tools)}
    speed = INFERENCE_METRIC["images_per_sec"]
    p50 = INFERENCE_METRIC["latency_p50_s"]
    out = ["<h3>Inference charts</h3>"]
    for dataset, model, hardware in data.groups():
        series = data.series(dataset, model, hardware)
        batches = data.batch_sizes(dataset, model, hardware)
        groups = [_batch_label(b) for b in batches]
        where = f"{dataset_title(dataset)} · {model_title(model)} · {hardware}"
        bars: dict[tuple[str, str], Bar] = {}
        spreads: dict[tuple[str, str], Spread] = {}
        for label in series:
            for batch, group in zip(batches, groups, strict=True):
                row = data.row(dataset, model, hardware, label, batch)
                if row is None:
                    continue
                v = data.value("images_per_sec", row)
                text = value_text(v, speed)
                bars[(group, label)] = Bar(
                    v.mean if v.shown else None,
                    v.std if v.n > 1 else None,
                    text,
                    f"{label} · {group}: {text}" + (f" {speed.unit}" if v.shown else ""),
                )
                ms = [data.value(k, row) for k in ("latency_p50_s", "latency_p90_s",
                                                   "latency_p99_s", "latency_p999_s")]  # fmt: skip
                shown = [m.mean if m.shown else None for m in ms]
                detail = ", ".join(
                    f"{name} {value_text(m, p50)}"
                    for name, m in zip(("p50", "p90", "p99", "p99.9"), ms, strict=True)
                )
                spreads[(group, label)] = Spread(
                    *shown, status=value_text(ms[0], p50), detail=f"{label} · {group}: {detail} ms"
                )
        empty = '<p class="empty">no data (no run finished ok)</p>'
        throughput = bar_chart(groups, series, bars, Frame(speed.unit, colors, title=where))
        latency = spread_chart(groups, series, spreads, Frame("ms", colors, title=where))
        key = (
            '<p class="caption">box: p50 (thick line) to p99; thin line: p90; whisker: '
            "p99.9; log scale</p>"
        )
        out += [
            '<div class="charts">',
            f"<figure><figcaption>{escape(where)} · inference throughput vs batch size"
            f"</figcaption>{throughput if any(b.mean for b in bars.values()) else empty}"
            "</figure>",
            f"<figure><figcaption>{escape(where)} · latency percentiles per batch vs batch "
            f"size</figcaption>{latency if any(m.p50 for m in spreads.values()) else empty}"
            f"{key}</figure>",
        ]
        out.append("</div>")
    return "".join(out)


def _inference(data: InferenceData, before: list[str]) -> str:
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    return (
        '<h2 id="inference">Inference</h2>'
        f"{_inference_table(data)}{_inference_charts(data, before)}"
        f'<ul class="notes">{notes}</ul>'
    )


def html(data: ReportData) -> str:
    """The whole page."""
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = "".join(f"<li>{escape(line)}</li>" for line in data.info)
    body = [f"<h1>{escape(data.title)}</h1>", f'<ul class="info">{info}</ul>']
    if data.rows:
        body += ["<h2>Results</h2>", _results_table(data), _speedup_tables(data), _charts(data)]
    if data.bottlenecks:
        rows = "".join(
            f"<tr><td>{escape(run)}</td><td>{escape(verdict)}</td></tr>"
            for run, verdict in data.bottlenecks
        )
        body.append(
            "<h2>Bottleneck</h2><table><thead><tr><th>run</th><th>verdict (figures of the "
            f"timed phase)</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if data.inference is not None:
        body.append(_inference(data.inference, [r.label for r in data.rows]))
    if data.empty:
        body.append("<p>No runs to report.</p>")
    if data.not_run:
        items = "".join(
            f"<li>{escape(why)}: {escape(', '.join(what))}</li>"
            for why, what in data.not_run_by_reason().items()
        )
        body.append(f"<h2>Not run ({len(data.not_run)})</h2><ul>{items}</ul>")
    if data.memory_limits:
        items = "".join(f"<li>{escape(line)}</li>" for line in data.memory_limits)
        body.append(f"<h2>Out of memory</h2><ul>{items}</ul>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    body.append(f"<h2>Notes</h2><ul>{notes}</ul>")
    body.append(f"<footer>harness {escape(__version__)} · generated {escape(generated)}</footer>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(data.title)}</title><style>{_CSS}</style>"
        f"<script>{GUARD}</script></head>\n"
        f"<body>{''.join(body)}<script>{_CHECK}</script></body></html>\n"
    )
