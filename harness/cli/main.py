"""Command line: ``python -m harness [COMMAND] ...``: the parser and the dispatch.

Every subcommand is a module of this package (``COMMANDS``, cli/commands.py), with
``add_command(sub, handlers)``: it adds its parser to ``sub`` and its handler, ``(args,
console) -> exit code``, to ``handlers``. Only the module of the command being run is
imported, so each imports its machinery at the top and ``--help`` stays cheap. ``run``
is the default when the first argument is an option. A user's mistake prints one line
and exits with code 2; a benchmark whose repeats did not all succeed exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sqlite3
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.cli.commands import COMMANDS, Command
from harness.errors import UsageError
from harness.run import signals
from harness.run.paths import (
    check_not_clobbering,
    check_writable_dir,
    check_writable_file,
    is_out_of_space,
    no_space_message,
)

__all__ = ["COMMANDS", "build_parser", "main"]


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser and the handlers of every subcommand, or, given ``command``, of that
    one only: the others are their line in ``--help``, and their modules stay unloaded."""
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark deep-learning training across frameworks and hardware.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Command] = {}
    for module, names in COMMANDS.items():
        if command is None or command in names:
            # the one place a command's module (and what it imports) is loaded, by name
            importlib.import_module(f"harness.cli.{module}").add_command(sub, handlers)
        else:
            for name, line in names.items():
                sub.add_parser(name, help=line)
    return parser, handlers


def _check_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every float option of every subcommand: NaN and infinity are mistakes (exit 2)."""
    names: dict[str, str] = {}
    for action in parser._actions:  # the subcommand's own parser, then its options
        if isinstance(action, argparse._SubParsersAction) and args.command in action.choices:
            for option in action.choices[args.command]._actions:
                if option.option_strings:
                    names[option.dest] = max(option.option_strings, key=len)
    for dest, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{names.get(dest, dest)} must be a finite number, got {value}")


def _check_output_file(args: argparse.Namespace) -> None:
    """``report -o``, ``export -o``, ``compare -o``, ``onnx -o``: a writable file that
    destroys nothing (never a store; an existing file only with ``--force``);
    ``sweep --output-dir``: a writable folder; checked before any work starts."""
    output = getattr(args, "output", None)
    figures = args.command == "report" and args.format in ("png", "svg", "pdf")
    if figures and output:  # report --format png|svg|pdf -o DIR: a folder of figures
        check_writable_dir(output, "-o")
    elif args.command in ("report", "export", "compare", "onnx") and output and output != "-":
        stores = [getattr(args, "store", None)]
        if args.command == "compare":  # A and B may be stores (else run or sweep ids)
            stores += [side for side in (args.a, args.b) if os.path.exists(side)]
        check_not_clobbering(output, "-o", force=args.force, stores=tuple(s for s in stores if s))
        check_writable_file(output, "-o")
    writes = not (getattr(args, "dry_run", False) or getattr(args, "list", False))
    if args.command == "sweep" and getattr(args, "output_dir", None) and writes:
        check_writable_dir(args.output_dir, "--output-dir")


# Where a command writes, for a full disk's message when the OS names no file
_WRITES_TO = ("output", "output_dir", "store")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if (
        args_list
        and args_list[0].startswith("-")
        and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    command = next((a for a in args_list if not a.startswith("-")), "")  # "": none, --help
    parser, handlers = build_parser(command)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console(stderr=True)
    if not console.is_terminal:  # logs and CI: wide enough for the summary table
        console = Console(stderr=True, width=160)
    try:
        # SIGINT, SIGTERM and SIGHUP: handled here, whatever dispositions were inherited
        with signals.installed():
            _check_finite(parser, args)
            _check_output_file(args)
            return handlers[args.command](args, console)
    except UsageError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return UsageError.exit_code
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_out_of_space(exc):
            raise
        where = next((getattr(args, n) for n in _WRITES_TO if getattr(args, n, None)), None)
        console.print(
            f"[red]error:[/red] {escape(no_space_message(exc, where))}",
            highlight=False,
            soft_wrap=True,
        )
        return UsageError.exit_code
    except KeyboardInterrupt as exc:
        what = signals.cause(exc)
        console.print(f"[yellow]{what}[/yellow]: finished repeats are stored")
        return signals.exit_code(exc)
