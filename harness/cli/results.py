"""Subcommands over sweeps and the results store: sweep, report, export, compare.

``harness.cli.main`` registers them with :func:`add_commands`; each handler takes the parsed
arguments and the (stderr) console and returns the exit code. Reports, exports and
comparisons go to stdout, or to ``-o FILE``.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import UsageError

DEFAULT_STORE = "logs/results.sqlite"
Command = Callable[[argparse.Namespace, Console], int]


def _names(values: list[str] | None) -> list[str] | None:
    """--tools a,b --tools c -> [a, b, c]."""
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _write(text: str, output: str | None, console: Console) -> None:
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        console.print(f"wrote {escape(output)}", highlight=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from harness.sweep.config import parse_value
    from harness.sweep.runner import SweepRequest, run_sweep

    if args.list:
        return _list_sweeps(args.output_dir or "logs", console)
    overrides = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value.strip())
    request = SweepRequest(
        source=args.file,
        resume=args.resume,
        new=args.new,
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        output_dir=args.output_dir,
        overrides=overrides,
        filters={
            "tools": _names(args.tools),
            "models": _names(args.models),
            "datasets": _names(args.datasets),
            "hardware": _names(args.hardware),
        },
    )
    return run_sweep(request, console)


def _list_sweeps(output_dir: str, console: Console) -> int:
    from harness.report.source import open_store
    from harness.sweep.state import SweepState

    store = open_store(output_dir)
    table = Table(title=f"sweeps in {store.path}", title_justify="left", header_style="bold")
    for name in ("sweep id", "source", "status", "cells", "created", "updated"):
        table.add_column(name)
    for sweep in SweepState.all_sweeps(store):
        cells = ", ".join(f"{n} {s}" for s, n in sorted(sweep["cells"].items()))
        table.add_row(
            sweep["sweep_id"],
            escape(sweep["source"] or ""),
            sweep["status"],
            cells,
            sweep["created_at"],
            sweep["updated_at"],
        )
    Console(width=console.width if console.is_terminal else 200).print(table)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from harness.report import render, report_data, terminal
    from harness.report.source import store_path

    data = report_data(args.store, args.sweep)
    if args.format == "terminal":
        width = None if args.output is None and sys.stdout.isatty() else 200
        out = Console(file=io.StringIO() if args.output else sys.stdout, width=width)
        terminal(data, out)
        if args.output:
            _write(out.file.getvalue(), args.output, console)  # type: ignore[attr-defined]
        return 0
    output = args.output
    if args.format == "html" and output is None:
        suffix = f"-{data.sweep}" if data.sweep else ""
        output = str(store_path(args.store).parent / f"report{suffix}.html")
    _write(render(data, args.format), output, console)
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from harness.report.data import latest_per_cell
    from harness.report.source import load_runs, open_store, resolve_sweep
    from harness.results.export import export

    store = open_store(args.store)
    results = load_runs(store, resolve_sweep(store, args.sweep))
    if args.latest:
        chosen = {r["run_id"] for r in latest_per_cell(results).values()}
        results = [r for r in results if r["run_id"] in chosen]
    _write(export(results, args.format, full=not args.brief), args.output, console)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from harness.results import compare

    a = compare.load_side(args.a, args.store)
    b = compare.load_side(args.b, args.store)
    rows = compare.compare(a, b, strict=args.strict)
    if args.format == "terminal":
        out = Console(width=None if sys.stdout.isatty() else 200)
        compare.terminal(rows, a, b, out)
        return 0
    text = compare.markdown(rows, a, b) if args.format == "markdown" else compare.to_csv(rows)
    _write(text, args.output, console)
    return 0


def add_commands(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    """Adds the subcommands to the main parser's ``sub`` and their handlers."""
    sw = sub.add_parser(
        "sweep",
        help="run a sweep file: every (tool, model, dataset, hardware), resumable",
        description="Run every configuration a sweep file lists; start it again to resume.",
    )
    sw.add_argument("file", nargs="?", help="a sweep file, or a built-in sweep: study, smoke")
    sw.add_argument("--resume", metavar="SWEEP_ID", help="resume this sweep (the file is optional)")
    sw.add_argument("--new", action="store_true", help="start afresh even if one is unfinished")
    sw.add_argument(
        "--retry-failed", action="store_true", help="run again the cells whose run was not ok"
    )
    sw.add_argument("--dry-run", action="store_true", help="list the plan and stop")
    sw.add_argument("--list", action="store_true", help="list the sweeps in the store")
    sw.add_argument(
        "--output-dir", help="run folders and results.sqlite (default: the file's, logs)"
    )
    for name, what in (
        ("tools", "tools"),
        ("models", "models"),
        ("datasets", "datasets"),
        ("hardware", "hardware labels, e.g. CPU,'1 GPU'"),
    ):
        sw.add_argument(f"--{name}", action="append", metavar="A,B", help=f"only these {what}")
    sw.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a parameter for every run"
    )
    handlers["sweep"] = cmd_sweep

    rep = sub.add_parser("report", help="the results table, speedups and charts")
    rep.add_argument("--sweep", help="one sweep's runs (an id, or 'latest'); default: all runs")
    rep.add_argument(
        "--store", default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})"
    )
    rep.add_argument("--format", choices=("terminal", "markdown", "html"), default="terminal")
    rep.add_argument(
        "-o", "--output", help="write here (html default: report[-SWEEP].html beside the store)"
    )
    handlers["report"] = cmd_report

    exp = sub.add_parser("export", help="stored runs as CSV or JSON")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--sweep", help="one sweep's runs (an id, or 'latest'); default: all runs")
    exp.add_argument(
        "--store", default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})"
    )
    exp.add_argument(
        "--latest",
        action="store_true",
        help="only the run a report shows per configuration (one per configuration key)",
    )
    exp.add_argument("--brief", action="store_true", help="JSON without the full results")
    exp.add_argument("-o", "--output", help="write here (default: stdout)")
    handlers["export"] = cmd_export

    cmp_ = sub.add_parser(
        "compare",
        help="images/sec of two result sets side by side, matched by configuration key",
        description="A and B: results.sqlite files (or their folders), or sweep ids or run ids "
        "in --store. Rows match on the configuration key; configurations left over are "
        "paired by (tool, model, dataset, hardware) and the row lists what differs.",
    )
    cmp_.add_argument("a", help="baseline: a results store, or a sweep id or run id in --store")
    cmp_.add_argument("b", help="compared: a results store, or a sweep id or run id in --store")
    cmp_.add_argument("--store", help="the store holding sweep or run ids A and B")
    cmp_.add_argument(
        "--strict",
        action="store_true",
        help="pair runs on the configuration key only (no pairs of differing configurations)",
    )
    cmp_.add_argument("--format", choices=("terminal", "markdown", "csv"), default="terminal")
    cmp_.add_argument("-o", "--output", help="write here (markdown, csv; default: stdout)")
    handlers["compare"] = cmd_compare
