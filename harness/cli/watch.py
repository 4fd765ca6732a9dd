"""``python -m harness watch [SWEEP_ID]``: a live view of a sweep, from its store."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

from harness.errors import UsageError
from harness.report.source import store_path
from harness.sweep.watch import watch

Command = Callable[[argparse.Namespace, Console], int]


def cmd_watch(args: argparse.Namespace, console: Console) -> int:
    if not args.interval > 0:
        raise UsageError(f"--interval must be a positive number of seconds, got {args.interval}")
    out = Console(highlight=False)  # stdout: the view is the answer
    try:
        return watch(store_path(args.store), args.sweep, args.interval, args.once, out)
    except KeyboardInterrupt:  # Ctrl-C ends the view; the sweep goes on
        return 0


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    w = sub.add_parser(
        "watch",
        help="a live view of a sweep from its store (here, in another process or on SLURM)",
        description="Shows a sweep's runs done, failed, skipped, running (elapsed time, repeat "
        "and phase) and left, and the time left, refreshed until the sweep ends. It only reads "
        "the store: run it anywhere the store is visible; Ctrl-C leaves the sweep running.",
    )
    w.add_argument("sweep", nargs="?", help="a sweep id (default: the latest in the store)")
    w.add_argument(
        "--store",
        default="logs",
        help="the results store, or the sweep's --output-dir (default ./logs)",
    )
    w.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    w.add_argument("--once", action="store_true", help="print one snapshot and stop")
    handlers["watch"] = cmd_watch
