"""The command line: argument parsing and the subcommands.

``main`` (cli/main.py) parses a run's options and starts it; ``results`` adds the
commands over stored results (sweep, report, export, compare); ``progress`` and
``summary`` draw a run on the terminal. Everything heavier is imported inside the
command that needs it, so ``python -m harness --help`` stays cheap.
"""

from harness.cli.main import main

__all__ = ["main"]
