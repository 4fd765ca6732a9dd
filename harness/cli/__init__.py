"""The command line: argument parsing and the subcommands, one module each.

``main`` (cli/main.py) builds the parser from the table of command modules
(``COMMANDS``) and dispatches; ``run`` builds a run's options from RunSpec's fields;
``progress`` and ``summary`` draw a run on the terminal. Everything heavier is imported
inside the command that needs it, so ``python -m harness --help`` stays cheap. The work
itself is done by the packages below (run, ops, machine, results, sweep, report), which
never import this one.
"""

from harness.cli.main import main

__all__ = ["main"]
