"""Subcommands over sweeps and the results store: sweep, report, export, compare.

``harness.cli.main`` registers them with :func:`add_command`; each handler takes the parsed
arguments and the (stderr) console and returns the exit code. Reports, exports and
comparisons go to stdout, or to ``-o FILE``.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.cli.commands import SUMMARY
from harness.cli.options import from_args, names
from harness.errors import UsageError
from harness.report import ops as ops_section
from harness.report import render, report_data, terminal
from harness.report.data import latest_per_cell
from harness.report.figures import require_matplotlib, write_figures
from harness.report.source import load_runs, open_store, resolve_sweep, store_path
from harness.results import compare, compare_ops
from harness.results.export import DATAFRAME_EXTRA, export, to_parquet
from harness.sweep.config import parse_value
from harness.sweep.runner import SweepRequest, run_sweep
from harness.sweep.state import SweepState

if TYPE_CHECKING:
    from harness.report.data import ReportData
    from harness.store.schema import RunResult

DEFAULT_STORE = "logs/results.sqlite"
FIGURE_FORMATS = ("png", "svg", "pdf")  # report --format: files through matplotlib
Command = Callable[[argparse.Namespace, Console], int]
FORCE_HELP = "replace an existing -o file (never a results store)"


def _write(text: str, output: str | None, console: Console) -> None:
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        console.print(f"wrote {escape(output)}", highlight=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    if args.list:
        return _list_sweeps(args.output_dir or "logs", console)
    overrides = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value.strip())
    request = from_args(
        SweepRequest,
        args,
        source=args.file,
        overrides=overrides,
        filters={
            name: names(getattr(args, name), f"--{name}")
            for name in ("tools", "models", "datasets", "hardware")
        },
    )
    return run_sweep(request, console)


def _list_sweeps(output_dir: str, console: Console) -> int:
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
    if args.format in FIGURE_FORMATS:
        require_matplotlib()  # before reading the store: one line and exit 2 without it
    if args.format == "dashboard":
        return _dashboard(args, console)
    data = report_data(args.store, args.sweep)
    if args.format in FIGURE_FORMATS:
        return _figures(data, args, console)
    if args.format == "terminal":
        width = None if args.output is None and sys.stdout.isatty() else 200
        out = Console(file=io.StringIO() if args.output else sys.stdout, width=width)
        terminal(data, out)
        ops_section.terminal(args.store, out)  # operation benchmarks, when the store has some
        if args.output:
            _write(out.file.getvalue(), args.output, console)  # type: ignore[attr-defined]
        return 0
    output = args.output
    if args.format == "html" and output is None:
        suffix = f"-{data.sweep}" if data.sweep else ""
        output = str(store_path(args.store).parent / f"report{suffix}.html")
    _write(ops_section.add_to(render(data, args.format), args.format, args.store), output, console)
    return 0


def _dashboard(args: argparse.Namespace, console: Console) -> int:
    """``report --format dashboard``: the page to explore the store with filters."""
    from harness.report.dashboard import page  # only this format needs it

    store = open_store(args.store)
    sweep = resolve_sweep(store, args.sweep)
    output = args.output
    if output is None:
        suffix = f"-{sweep}" if sweep else ""
        output = str(store_path(args.store).parent / f"dashboard{suffix}.html")
    title = f"Benchmark dashboard: sweep {sweep}" if sweep else "Benchmark dashboard"
    _write(page(load_runs(store, sweep), title), output, console)
    return 0


def _figures(data: ReportData, args: argparse.Namespace, console: Console) -> int:
    """``report --format png|svg|pdf``: one file per (dataset, network, metric)."""
    folder = args.output
    if folder is None:
        suffix = f"-{data.sweep}" if data.sweep else ""
        folder = str(store_path(args.store).parent / f"figures{suffix}")
    if data.empty:
        console.print("no runs to report: no figures written", highlight=False)
        return 0
    written = write_figures(data, args.format, folder)
    console.print(
        f"wrote {len(written)} {args.format.upper()} figure(s) to {escape(folder)}",
        highlight=False,
    )
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    if args.format == "parquet":
        _parquet_ready(args.output)  # one line and exit 2 before the store is read
    store = open_store(args.store)
    results = load_runs(store, resolve_sweep(store, args.sweep))
    if args.latest:
        chosen = {r.run_id for r in latest_per_cell(results).values()}
        results = [r for r in results if r.run_id in chosen]
    if args.format == "parquet":
        return _parquet(results, args.output, console)
    _write(export(results, args.format, full=not args.brief), args.output, console)
    return 0


def _parquet_ready(output: str | None) -> None:
    """UsageError without -o FILE, or without pandas or pyarrow (with the install command)."""
    if not output or output == "-":
        raise UsageError("--format parquet writes a binary file: give -o FILE")
    for module in ("pandas", "pyarrow"):
        try:
            __import__(module)
        except ImportError:
            raise UsageError(
                f"--format parquet needs {module}, which is not installed: {DATAFRAME_EXTRA}"
            ) from None


def _parquet(results: list[RunResult], output: str | None, console: Console) -> int:
    """``export --format parquet -o FILE``: the DataFrame of runs (pandas and pyarrow)."""
    assert output is not None
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    to_parquet(results, output)
    console.print(f"wrote {escape(output)} ({len(results)} runs)", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    if args.ops:
        return _compare_ops(args, console)

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


def _compare_ops(args: argparse.Namespace, console: Console) -> int:
    a_label, a = compare_ops.load_side(args.a, args.store)
    b_label, b = compare_ops.load_side(args.b, args.store)
    rows = compare_ops.compare(a, b)
    if args.format == "terminal":
        out = Console(width=None if sys.stdout.isatty() else 200)
        compare_ops.terminal(rows, a_label, b_label, out)
        return 0
    if args.format == "markdown":
        text = compare_ops.markdown(rows, a_label, b_label)
    else:
        text = compare_ops.to_csv(rows)
    _write(text, args.output, console)
    return 0


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    """Adds the subcommands to the main parser's ``sub`` and their handlers."""
    sw = sub.add_parser(
        "sweep",
        help=SUMMARY["sweep"],
        description="Run every configuration a sweep file lists; start it again to resume.",
    )
    sw.add_argument("file", nargs="?", help="a sweep file, or a built-in sweep: study, smoke")
    sw.add_argument("--resume", metavar="SWEEP_ID", help="resume this sweep (the file is optional)")
    sw.add_argument("--new", action="store_true", help="start afresh even if one is unfinished")
    sw.add_argument(
        "--retry-failed", action="store_true", help="run again the cells whose run was not ok"
    )
    sw.add_argument(
        "--no-skip-oom",
        dest="skip_oom",
        action="store_false",
        help="run also the larger batches of a run that ran out of memory (default: they "
        "are skipped)",
    )
    sw.add_argument("--dry-run", action="store_true", help="list the plan and stop")
    sw.add_argument(
        "--yes",
        action="store_true",
        help="run a sweep of more than 10,000 runs without asking (see docs/user-guide/sweeps.md)",
    )
    sw.add_argument("--list", action="store_true", help="list the sweeps in the store")
    sw.add_argument(
        "--executor",
        default="local",
        metavar="NAME",
        help="where the runs execute: local (default, one after another here), slurm (one "
        "SLURM job per run; resources from the file's [slurm] table), or a plugin's",
    )
    sw.add_argument(
        "--status",
        action="store_true",
        help="print each run's state (and SLURM job) and stop; submits nothing",
    )
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

    rep = sub.add_parser("report", help=SUMMARY["report"])
    rep.add_argument("--sweep", help="one sweep's runs (an id, or 'latest'); default: all runs")
    rep.add_argument(
        "--store", default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})"
    )
    rep.add_argument(
        "--format",
        choices=("terminal", "markdown", "html", "dashboard", *FIGURE_FORMATS),
        default="terminal",
        help="dashboard: one offline HTML page with filters (framework, network, dataset, "
        "hardware, task) over the table and charts; png, svg, pdf: one figure per "
        "(dataset, network, metric), through matplotlib (the 'figures' extra)",
    )
    rep.add_argument(
        "-o",
        "--output",
        help="write here (html default: report[-SWEEP].html beside the store, dashboard: "
        "dashboard[-SWEEP].html; png, svg, "
        "pdf: a folder, default figures[-SWEEP]/ beside the store)",
    )
    rep.add_argument("--force", action="store_true", help=FORCE_HELP)
    handlers["report"] = cmd_report

    exp = sub.add_parser("export", help=SUMMARY["export"])
    exp.add_argument(
        "--format",
        choices=("csv", "json", "parquet"),
        default="csv",
        help="parquet: the CSV's columns, typed (pandas and pyarrow: the 'dataframe' extra)",
    )
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
    exp.add_argument("--force", action="store_true", help=FORCE_HELP)
    handlers["export"] = cmd_export

    cmp_ = sub.add_parser(
        "compare",
        help=SUMMARY["compare"],
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
    cmp_.add_argument(
        "--ops",
        action="store_true",
        help="compare operation benchmarks (python -m harness ops): A and B are stores or "
        "ops run ids in --store; kernels match on (tool, precision, kind, kernel, shape)",
    )
    cmp_.add_argument("--format", choices=("terminal", "markdown", "csv"), default="terminal")
    cmp_.add_argument("-o", "--output", help="write here (markdown, csv; default: stdout)")
    cmp_.add_argument("--force", action="store_true", help=FORCE_HELP)
    handlers["compare"] = cmd_compare
