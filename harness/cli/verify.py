"""``python -m harness verify``: does every installed backend compute the same network
as the NumPy reference, on this machine?

The reference cases (models.parity.reference_case: parity weights, inputs, logits, one
training step) are computed here, in NumPy, once; then each tool runs
``harness.run.parity`` in its own interpreter (found as a run finds it) and reports, per
(model, input), the largest relative difference of its logits (inference and training
mode) and of its loss and weights after the step. Each is judged against the stated
tolerances of models.parity.TOLERANCES: the CPU's, or the GPU's (their own, wider:
cuDNN algorithms; wider again when the framework allows TF32, which is reported).

Exit code 0 when everything passes, 1 otherwise; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console

from harness import models
from harness.cli.commands import SUMMARY
from harness.cli.options import names
from harness.errors import UsageError
from harness.models import parity as P
from harness.plugins import PluginManager
from harness.run.interpreters import find_interpreter

Command = Callable[[argparse.Namespace, Console], int]
SMALL_INPUT = {"lenet": (1, 28, 28)}  # the default input of each model; others 3x32x32
INPUTS = {"small": "28x28 and 32x32", "default": "one per model"}


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    parser = sub.add_parser(
        "verify",
        help=SUMMARY["verify"],
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--tools", action="append", help="comma-separated (default: installed)")
    parser.add_argument("--models", action="append", help="comma-separated (default: all)")
    parser.add_argument(
        "--inputs",
        choices=("default", "all"),
        default="default",
        help="default: LeNet at 1x28x28, the others at 3x32x32; all: every pair of the catalogue",
    )
    parser.add_argument("--gpu", action="store_true", help="run the backends on GPU 0")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds per tool before it is stopped"
    )
    handlers["verify"] = cmd_verify


def pairs(model_names: list[str], inputs: str) -> list[tuple[str, tuple[int, int, int], int]]:
    """The (model, input, classes) pairs to check."""
    out = []
    for name in model_names:
        if name == "lenet":
            shapes = [(1, 28, 28)]
        elif inputs == "all":
            shapes = [(1, 28, 28), (3, 32, 32), (3, 224, 224)]
        else:
            shapes = [(3, 32, 32)]
        for shape in shapes:
            classes = 1000 if shape[1] == 224 else 10
            if models.refusal(name, shape, classes) is None:
                out.append((name, shape, classes))
    return out


def _tools(requested: list[str] | None) -> list[tuple[str, str | None, str]]:
    """(tool, interpreter or None, why not) for each tool to check."""
    pm = PluginManager()
    probes = pm.backends_with("harness_parity_probe")  # the backends that take part
    names = requested or sorted(pm.backends)
    found = []
    for name in names:
        info = pm.backend(name)  # UsageError for an unknown tool
        if name not in probes:
            why = f"{name} has no parity probe (plugin hook harness_parity_probe)"
            if requested:
                raise UsageError(f"{why}; tools with one: {', '.join(probes) or 'none'}")
            found.append((name, None, why))
            continue
        try:
            found.append((name, find_interpreter(info).python, ""))
        except UsageError as exc:
            if requested:
                raise
            found.append((name, None, f"not installed: {exc}"))
    return found


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    if args.timeout < 0:  # 0: no limit
        raise UsageError(f"--timeout must be zero (no limit) or more, got {args.timeout:g}")
    model_names = names(args.models, "--models") or models.names()
    unknown = [m for m in model_names if m not in models.MODELS]
    if unknown:
        raise UsageError(
            f"unknown model {unknown[0]!r}; choose one of: {', '.join(models.names())}"
        )
    tools = _tools(names(args.tools, "--tools"))
    if not any(python for _, python, _ in tools):
        raise UsageError("no backend can be checked: " + tools[0][2])

    cases = pairs(model_names, args.inputs)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as folder:
        started = time.monotonic()
        for index, (name, shape, classes) in enumerate(cases):
            console.print(f"reference: {name} {'x'.join(map(str, shape))}", highlight=False)
            case = P.reference_case(models.build(name, shape, classes))
            stem = Path(folder) / f"{index:02d}-{name}"
            with open(stem.with_suffix(".npz"), "wb") as handle:
                np.savez(handle, **case)
            stem.with_suffix(".json").write_text(json.dumps({"pair": [name, *shape, classes]}))
        console.print(f"reference cases: {time.monotonic() - started:.0f} s", highlight=False)
        ok = True
        header = (
            f"{'tool':<11} {'model':<10} {'input':<10} {'forward':>8} {'train-fwd':>9} "
            f"{'loss':>8} {'weights':>8}  result"
        )
        print(header, file=out, flush=True)
        for tool, python, why in tools:
            if python is None:
                print(f"{tool:<11} {why}", file=out, flush=True)
                continue
            ok &= _run_tool(tool, python, folder, args, len(cases), out)
    print("all pass" if ok else "FAILED", file=out, flush=True)
    return 0 if ok else 1


def _run_tool(tool: str, python: str, folder: str, args, count: int, out) -> bool:
    command = [python, "-m", "harness.run.parity", "--tool", tool, "--cases", folder]
    if args.gpu:
        command.append("--gpu")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout or None, env=env
        )
    except subprocess.TimeoutExpired:
        print(f"{tool:<11} timed out after {args.timeout:.0f} s", file=out, flush=True)
        return False
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    header = next((r["header"] for r in rows if "header" in r), None)
    results = [r for r in rows if "header" not in r]
    if header is None or len(results) != count:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"{tool:<11} worker failed (exit {done.returncode}): {tail}", file=out, flush=True)
        return False
    kind = "cpu"
    if header["device"] == "gpu":
        kind = "gpu-tf32" if header.get("tf32") else "gpu"
    tol = P.TOLERANCES[kind]
    note = f"  [{kind}: forward <= {tol['forward']:.0e}, training step <= {tol['train']:.0e}"
    if header["device"] == "gpu":
        note += f"; TF32 {'on' if header.get('tf32') else 'off'}"
    print(note + "]", file=out, flush=True)
    ok = True
    for r in results:
        if "error" in r:
            line = f"{tool:<11} {r['model']:<10} {r['input']:<10} error: {r['error']}"
            print(line, file=out, flush=True)
            ok = False
            continue
        trained = [r[k] for k in ("loss", "state") if r[k] is not None]  # None: inference only
        passed = max(r["forward"], r["forward_training"]) <= tol["forward"] and all(
            v <= tol["train"] for v in trained
        )
        ok &= passed
        print(
            f"{tool:<11} {r['model']:<10} {r['input']:<10} {_fmt(r['forward']):>8} "
            f"{_fmt(r['forward_training']):>9} {_fmt(r['loss']):>8} {_fmt(r['state']):>8}  "
            + ("pass" if passed else f"FAIL ({r['worst']})"),
            file=out,
            flush=True,
        )
    return ok
