"""Reports: the study's results table, speedup tables and bar charts, from the store.

from harness.report import report_data, render
data = report_data("logs/results.sqlite", sweep="latest")
page = render(data, "html")      # or "markdown"; terminal() prints rich tables
write_figures(data, "png", "figures/")   # or "svg", "pdf": one file per chart (matplotlib)
"""

from __future__ import annotations

from harness.report.data import METRICS, ReportData, build
from harness.report.figures import FORMATS as FIGURE_FORMATS
from harness.report.figures import write_figures
from harness.report.html import html
from harness.report.source import report_data
from harness.report.text import markdown, terminal

FORMATS = ("terminal", "markdown", "html")


def render(data: ReportData, fmt: str) -> str:
    """The report as Markdown or HTML text."""
    if fmt == "markdown":
        return markdown(data)
    if fmt == "html":
        return html(data)
    raise ValueError(f"render() makes markdown or html, not {fmt!r}")


__all__ = ["FIGURE_FORMATS", "FORMATS", "METRICS", "ReportData", "build", "html", "markdown",
           "render", "report_data", "terminal", "write_figures"]  # fmt: skip
