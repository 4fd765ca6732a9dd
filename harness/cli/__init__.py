"""The command line: argument parsing and the subcommands, one module each.

``main`` (cli/main.py) builds the parser from the table of command modules
(``COMMANDS``) and dispatches; ``run`` builds a run's options from RunSpec's fields;
``progress`` and ``summary`` draw a run on the terminal. ``main`` imports a command's
module only to run it (``commands``: the table), so ``python -m harness --help`` stays
cheap while each module imports its machinery at the top. The work
itself is done by the packages below (run, ops, machine, results, sweep, report), which
never import this one.
"""

from harness.cli.main import main

__all__ = ["main"]
