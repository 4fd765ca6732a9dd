"""Print the wall time of every tox environment of a run and check the CI budget.

    python scripts/ci_times.py RESULT_JSON --started EPOCH_SECONDS [--enforce]

RESULT_JSON is tox's ``--result-json`` file. The budget (a total and each environment's
share, in seconds) lives in .ci/budget.toml; the README's testing table states the same
figures (a core test keeps the two equal). With ``--enforce`` (the full matrix, as CI
runs it) the exit status is 1 when the whole run took longer than the total budget.
Standard library only: it runs in the interpreter that runs tox.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tox itself depends on tomli there
    import tomli as tomllib

BUDGET_FILE = Path(__file__).resolve().parent.parent / ".ci" / "budget.toml"


def load_budget(path: Path = BUDGET_FILE) -> tuple[int, dict[str, int]]:
    """(total seconds, {environment: share in seconds}) from the budget file."""
    data = tomllib.loads(path.read_text())
    return int(data["total_s"]), {k: int(v) for k, v in data["share_s"].items()}


def env_times(result: dict) -> list[tuple[str, float, float, float, bool]]:
    """(env, wall s, setup s, tests s, ok) per environment, in the order tox ran them."""
    rows = []
    for name, env in result.get("testenvs", {}).items():
        outcome = env.get("result")
        if name.startswith(".") or not outcome:  # the packaging env; envs not run
            continue
        setup = sum(step.get("elapsed", 0.0) for step in env.get("setup", []))
        tests = sum(step.get("elapsed", 0.0) for step in env.get("test", []))
        wall = float(outcome.get("duration", setup + tests))
        rows.append((name, wall, setup, tests, bool(outcome.get("success", False))))
    return rows


def marker_times(result: dict) -> list[tuple[str, str, float]]:
    """(env, marker, s) of every ``pytest ... -m MARKER`` command of an environment that
    runs several (the shared frameworks environment; a marker run in the background
    shows the time its start took, its own log says how long it ran)."""
    rows = []
    for name, env in result.get("testenvs", {}).items():
        steps = env.get("test", [])
        runs = [step for step in steps if "pytest" in step.get("command", [])]
        # scripts/alongside.sh: the background run's wall time is in its wait's output
        waited = [
            float(found.group(1))
            for step in steps
            if (found := re.search(r"alongside: finished after (\d+) s", step.get("output", "")))
        ]
        if len(runs) > 1:
            for step in runs:
                command = step["command"]
                marker = command[len(command) - 1 - command[::-1].index("-m") + 1]
                if any("alongside" in part for part in command):
                    seconds = waited.pop(0) if waited else 0.0
                    rows.append((name, f"{marker} (in the background)", seconds))
                else:
                    rows.append((name, marker, step.get("elapsed", 0.0)))
    return rows


def report(rows, total: float, budget: int, shares: dict[str, int]) -> list[str]:
    """The table's lines and, last, the verdict; environments over their share marked."""
    lines = [f"{'env':<14}{'wall s':>8}{'setup s':>9}{'tests s':>9}{'share s':>9}  result"]
    for name, wall, setup, tests, ok in rows:
        share = shares.get(name)
        over = share is not None and wall > share
        mark = ("ok" if ok else "FAILED") + ("  over its share" if over else "")
        shown = "-" if share is None else str(share)
        lines.append(f"{name:<14}{wall:>8.0f}{setup:>9.0f}{tests:>9.0f}{shown:>9}  {mark}")
    lines.append(f"{'total':<14}{total:>8.0f}{'':>9}{'':>9}{budget:>9}  (whole script, wall)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result_json", type=Path)
    parser.add_argument("--started", type=float, required=True, help="epoch seconds")
    parser.add_argument("--enforce", action="store_true", help="fail over the total budget")
    args = parser.parse_args(argv)
    total = time.time() - args.started
    budget, shares = load_budget()
    try:
        result = json.loads(args.result_json.read_text())
    except (OSError, ValueError) as exc:
        print(f"ci_times: no tox result to read ({exc})", file=sys.stderr)
        result = {}
    rows = env_times(result)
    print("\n".join(report(rows, total, budget, shares)))
    for env, marker, seconds in marker_times(result):
        print(f"  {env} -m {marker}: {seconds:.0f} s")
    if args.enforce and total > budget:
        over = [name for name, wall, *_ in rows if wall > shares.get(name, float("inf"))]
        print(
            f"CI budget exceeded: {total:.0f} s > {budget} s (.ci/budget.toml, README);"
            f" over their share: {', '.join(over) or 'none (the shares need a review)'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
