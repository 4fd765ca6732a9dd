"""The results dashboard: one static, self-contained HTML page to explore a store.

``report --format dashboard`` writes it. The page embeds the runs the report shows (one
per configuration key, training and inference) as JSON, and a few lines of plain
JavaScript filter them by framework, network, dataset, hardware and task, pick the
metric, and redraw the table and the charts (horizontal bars, one chart per dataset,
network and task). The filters live in the URL's hash (``#tool=a&task=inference``), so a
view can be bookmarked or shared. Like the report, the page loads nothing (its
Content-Security-Policy forbids every request) and works offline.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from html import escape
from typing import Any

from harness import __version__
from harness.report.data import (
    INFERENCE_METRICS,
    METRICS,
    dataset_title,
    metric_value,
    model_title,
    placements,
    run_status,
)
from harness.report.html import CSP, GUARD
from harness.report.svg import PALETTE
from harness.run.task import task_for
from harness.store.schema import RunResult

FILTERS = ("tool", "model", "dataset", "hardware", "task")  # what the page filters by


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def records(results: list[RunResult]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The page's data: one record per configuration (its shown run), and the metrics
    some record has a value of (key, title with its unit), in report order."""
    keys = list(dict.fromkeys(m.key for m in (*METRICS, *INFERENCE_METRICS)))
    every = {m.key: m for m in (*INFERENCE_METRICS, *METRICS)}
    out = []
    tasks = list(dict.fromkeys(r.spec.task for r in results))
    placed = [
        (cell, group.shown)
        for task in tasks  # as the report: each task's configurations apart, batch a column
        for cell, group in placements(
            [r for r in results if r.spec.task == task], row_exclude=("batch_size",)
        )[0]
    ]
    for (tool, model, dataset, variant, hardware), run in placed:
        values = {}
        for key in keys:
            v = metric_value(run, key)
            if v.shown:
                values[key] = [_number(v.mean), _number(v.std) if v.n > 1 else None]
        out.append({
            "run": run.run_id,
            "task": run.spec.task,
            "trains": task_for(run.spec.task).trains,  # inference: the batch is in its label
            "tool": tool,
            "model": model,
            "model_title": model_title(model),
            "dataset": dataset,
            "dataset_title": dataset_title(dataset),
            "hardware": hardware,
            "config": f"{tool} · {variant}" if variant else tool,
            "batch": run.spec.batch_size,
            "status": run_status(run),
            "started": run.started_at or "",
            "values": values,
        })  # fmt: skip
    used = {k for r in out for k in r["values"]}
    shown = [{"key": k, "title": _titled(every[k].title, every[k].unit)} for k in keys if k in used]
    return out, shown


def _titled(title: str, unit: str) -> str:
    """ "images/sec (images/s)", but "GPU power (W)" as it is."""
    return title if unit in title else f"{title} ({unit})"


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0 auto; padding: 1.2rem 2rem; max-width: 1280px; }
h1 { font-size: 1.4rem; margin: 0 0 .6rem; } h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
form { display: flex; flex-wrap: wrap; gap: .5rem 1rem; padding: .6rem .8rem;
       background: #f3f5f9; border-radius: 6px; }
label { display: flex; flex-direction: column; font-size: 12px; color: #4a5466; }
select { font: inherit; min-width: 9rem; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #dde2ea; padding: .2rem .5rem; }
th { background: #f3f5f9; text-align: left; } td.num { text-align: right; white-space: nowrap; }
td.status { color: #b3261e; }
.wide { overflow-x: auto; max-width: 100%; }
.charts { display: grid; gap: .6rem; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); }
figure { margin: 0; padding: .4rem; border: 1px solid #e6e9ef; border-radius: 6px; }
figcaption { font-weight: 600; margin: 0 0 .3rem; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
#count { color: #4a5466; } footer { color: #7a8496; margin-top: 2rem; font-size: 12px; }
"""

# Reads the embedded runs, fills the filters, and redraws the table and the charts on
# every change; the filters are kept in the URL's hash.
_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("runs").textContent);
  var runs = data.runs, metrics = data.metrics, palette = data.palette, dims = data.filters;
  var form = document.getElementById("filters");
  var NS = "http://www.w3.org/2000/svg";
  function el(tag, attrs, text) {
    var e = tag === "svg" || tag === "rect" || tag === "text" || tag === "title"
      ? document.createElementNS(NS, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function unique(key) {
    var seen = [];
    runs.forEach(function (r) { if (seen.indexOf(r[key]) < 0) { seen.push(r[key]); } });
    return seen;
  }
  function select(name, options, labels) {
    var s = el("select", {name: name, id: "f-" + name});
    options.forEach(function (o, i) { s.appendChild(el("option", {value: o}, labels[i])); });
    var l = el("label", {}, name); l.appendChild(s); form.appendChild(l);
    s.addEventListener("change", function () { location.hash = state(); });
    return s;
  }
  dims.forEach(function (d) {
    var values = unique(d);
    select(d, [""].concat(values), ["all"].concat(values));
  });
  select("metric", metrics.map(function (m) { return m.key; }),
         metrics.map(function (m) { return m.title; }));
  function state() {
    var parts = [];
    dims.concat(["metric"]).forEach(function (d) {
      var v = document.getElementById("f-" + d).value;
      if (v) { parts.push(d + "=" + encodeURIComponent(v)); }
    });
    return parts.join("&");
  }
  function load() {
    var wanted = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (p) {
      var kv = p.split("=");
      if (kv.length === 2) { wanted[kv[0]] = decodeURIComponent(kv[1]); }
    });
    dims.concat(["metric"]).forEach(function (d) {
      var s = document.getElementById("f-" + d);
      var ok = Array.prototype.some.call(s.options, function (o) { return o.value === wanted[d]; });
      s.value = ok ? wanted[d] : s.options[0].value;
    });
  }
  function decimals(v) {  // 3 significant digits, none after the point from 100 up
    var a = Math.abs(v);
    return a >= 100 ? 0 : a >= 1 ? 2 : a > 0 ? Math.min(12, 2 - Math.floor(Math.log10(a))) : 2;
  }
  function fmt(v, like) {  // like: the mean a spread is shown beside (its decimals)
    if (v === null || v === undefined) { return ""; }
    return v.toFixed(decimals(like === undefined ? v : like));
  }
  function draw() {
    load();
    var shown = runs.filter(function (r) {
      return dims.every(function (d) {
        var v = document.getElementById("f-" + d).value;
        return !v || String(r[d]) === v;
      });
    });
    var key = document.getElementById("f-metric").value;
    var metric = metrics.filter(function (m) { return m.key === key; })[0];
    var cols = metrics.filter(function (m) {
      return shown.some(function (r) { return r.values[m.key]; });
    });
    var table = el("table", {id: "table"}), head = el("tr");
    ["task", "dataset", "network", "configuration", "hardware", "batch", "status"]
      .concat(cols.map(function (m) { return m.title; }))
      .forEach(function (h) { head.appendChild(el("th", {}, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    shown.forEach(function (r) {
      var tr = el("tr", {"data-run": r.run});
      [r.task, r.dataset_title, r.model_title, r.config, r.hardware, r.batch, r.status]
        .forEach(function (t, i) {
          tr.appendChild(el("td", i === 6 && r.status !== "ok" ? {"class": "status"} : {},
                            t === null ? "n/a" : String(t)));
        });
      cols.forEach(function (m) {
        var v = r.values[m.key];
        tr.appendChild(el("td", {"class": "num"},
          v ? fmt(v[0]) + (v[1] !== null ? " \\u00b1 " + fmt(v[1], v[0]) : "")
            : (r.status === "ok" || r.status === "partial") ? "n/a" : "-"));
      });
      body.appendChild(tr);
    });
    var wide = document.getElementById("table-box");
    wide.replaceChildren(table);
    document.getElementById("count").textContent = shown.length + " of " + runs.length +
      " configurations";
    var charts = document.getElementById("charts"), bars = 0, count = 0;
    charts.replaceChildren();
    var groups = {};
    shown.forEach(function (r) {
      if (!metric || !r.values[metric.key]) { return; }
      var g = r.dataset_title + " \\u00b7 " + r.model_title + " \\u00b7 " + r.task;
      (groups[g] = groups[g] || []).push(r);
    });
    var configs = unique("config");
    Object.keys(groups).forEach(function (g) {
      var rows = groups[g], top = Math.max.apply(null, rows.map(function (r) {
        return r.values[metric.key][0]; }));
      var left = 250, width = 560, bar = 18, h = rows.length * (bar + 4) + 8;
      var svg = el("svg", {viewBox: "0 0 " + width + " " + h, role: "img",
                           "class": "dash-chart"});
      rows.forEach(function (r, i) {
        var v = r.values[metric.key][0], y = 4 + i * (bar + 4);
        var w = Math.max(1, (width - left - 70) * v / (top || 1));
        var name = r.config + " \\u00b7 " + r.hardware + (!r.trains ?
          " \\u00b7 batch " + r.batch : "");
        var label = name.length > 40 ? name.slice(0, 39) + "\\u2026" : name;
        var t = el("text", {x: left - 6, y: y + 13, "text-anchor": "end"}, label);
        t.appendChild(el("title", {}, name)); svg.appendChild(t);
        var colour = palette[configs.indexOf(r.config) % palette.length];
        var rect = el("rect", {"class": "bar", x: left, y: y, width: w.toFixed(1), height: bar,
                               fill: colour, "data-run": r.run});
        rect.appendChild(el("title", {}, name + ": " + fmt(v)));
        svg.appendChild(rect);
        svg.appendChild(el("text", {x: (left + w + 4).toFixed(1), y: y + 13}, fmt(v)));
        bars += 1;
      });
      var fig = el("figure");
      fig.appendChild(el("figcaption", {}, g + " \\u00b7 " + metric.title));
      fig.appendChild(svg); charts.appendChild(fig); count += 1;
    });
    if (!count) { charts.appendChild(el("p", {}, "no values of this metric in the selection")); }
    document.body.dataset.rows = String(shown.length);
    document.body.dataset.charts = String(count);
    document.body.dataset.bars = String(bars);
    document.body.dataset.rendered = "yes";
  }
  window.addEventListener("hashchange", draw);
  draw();
})();
"""


def page(results: list[RunResult], title: str = "Benchmark dashboard") -> str:
    """The dashboard of ``results`` (oldest first)."""
    runs, shown = records(results)
    payload = {"runs": runs, "metrics": shown, "filters": FILTERS, "palette": PALETTE}
    embedded = json.dumps(payload, allow_nan=False).replace("</", "<\\/")
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>"
        f"<script>{GUARD}</script></head>\n<body>"
        f'<h1>{escape(title)}</h1><form id="filters"></form>'
        '<h2>Charts</h2><div class="charts" id="charts"></div>'
        '<h2>Runs <span id="count"></span></h2><div class="wide" id="table-box"></div>'
        f"<footer>harness {escape(__version__)} · generated {escape(generated)} · "
        "one run per configuration (the one the report shows)</footer>"
        f'<script type="application/json" id="runs">{embedded}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
