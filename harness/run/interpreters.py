"""Find the Python interpreter that has a backend's framework.

Frameworks cannot always share one environment (one may need an old numpy), so each
tool may run in its own interpreter. Candidates, first match wins:

1. ``--python PATH`` (RunSpec.python);
2. the environment variable ``HARNESS_PYTHON_<TOOL>`` (e.g. HARNESS_PYTHON_MYTOOL);
3. the interpreter running the harness;
4. ``.venvs/<tool>/bin/python`` under the current directory, then under the repository
   (scripts/setup_envs.sh creates these), then ``.tox/<tool>/bin/python``.

A candidate qualifies when it can find the framework's modules and the harness
itself; the check looks the modules up without importing them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.backend import BackendInfo
from harness.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = (
    "import importlib.util, json, sys\n"
    "mods = json.loads(sys.argv[1])\n"
    "missing = [m for m in mods if importlib.util.find_spec(m) is None]\n"
    "print(json.dumps({'missing': missing, 'version': sys.version.split()[0]}))\n"
)
# The published distribution's install hints, e.g. "pip install 'dlbench-harness[EXTRA]'"
_PUBLISHED_HINT = re.compile(r"pip install '?dlbench-harness\[([\w,-]+)\]'?")


@dataclass(frozen=True)
class Interpreter:
    python: str
    source: str  # how it was found, recorded with the result


def env_var(tool: str) -> str:
    return "HARNESS_PYTHON_" + "".join(c if c.isalnum() else "_" for c in tool.upper())


def _missing_here(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@cache
def _missing_in(python: str, modules: tuple[str, ...]) -> tuple[str, ...] | None:
    """Modules ``python`` cannot find; None if it does not run at all."""
    try:
        out = subprocess.run(
            [python, "-c", _PROBE, json.dumps(list(modules))],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return tuple(json.loads(out.stdout.strip().splitlines()[-1])["missing"])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None


def candidates(tool: str, explicit: str | None) -> list[tuple[str, str]]:
    """(python, how-found) pairs in the order they are tried."""
    found: list[tuple[str, str]] = []
    if explicit:
        found.append((explicit, "--python"))
    if os.environ.get(env_var(tool)):
        found.append((os.environ[env_var(tool)], env_var(tool)))
    found.append((sys.executable, "current interpreter"))
    for base in dict.fromkeys((Path.cwd(), REPO_ROOT)):
        for folder in (".venvs", ".tox"):
            path = base / folder / tool / "bin" / "python"
            if path.exists():
                found.append((str(path), f"{folder}/{tool}"))
    return found


def find_interpreter(backend: BackendInfo, explicit: str | None = None) -> Interpreter:
    """The first candidate that has ``backend.requires`` and the harness, or UsageError."""
    needed = (*backend.requires, "harness")
    for python, source in candidates(backend.name, explicit):
        if python == sys.executable:
            missing: tuple[str, ...] | None = tuple(_missing_here(needed))
        else:
            missing = _missing_in(python, needed)
        if missing == ():
            return Interpreter(python, source)
        if source in ("--python", env_var(backend.name)):
            problem = "does not run" if missing is None else f"lacks {', '.join(missing)}"
            raise UsageError(f"the interpreter {python} ({source}) {problem}")
    raise UsageError(
        f"tool {backend.name!r} needs {backend.framework}, which no interpreter has: "
        f"run `{install_command(backend.install_hint)}`, or point {env_var(backend.name)} at a "
        "python that has it"
    )


def in_checkout() -> bool:
    """Whether the harness runs from a source checkout (an editable install), where
    ``pip install -e`` is what installs an extra, rather than from an installed wheel."""
    return (REPO_ROOT / "setup.cfg").is_file() and (REPO_ROOT / "harness").is_dir()


def install_command(hint: str) -> str:
    """A backend's install hint as a command that works where the user is: from a
    checkout, ``pip install 'dlbench-harness[EXTRA]'`` becomes ``pip install -e '.[EXTRA]'``
    (the checkout's path when it is not the current folder)."""
    if not in_checkout():
        return hint
    here = "." if Path.cwd().resolve() == REPO_ROOT else str(REPO_ROOT)
    return _PUBLISHED_HINT.sub(lambda m: f"pip install -e '{here}[{m.group(1)}]'", hint)
