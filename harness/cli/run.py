"""``python -m harness [run] --tool T --model M --dataset D ...``: one benchmark.

The options are RunSpec's fields (their metadata, harness.spec.cli: flags, help
section, help text), so the parser and :func:`spec_from_args` are loops over the
fields; ``_FROM_CLI`` turns the few whose text is not the field's value (a batch-size
list, KEY=VALUE pairs, C,H,W). ``--json`` and ``--dry-run`` say what to do with the
run, not what to run.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness.cli.commands import EXIT_FAILED_RUN, SUMMARY, Command
from harness.cli.progress import RunProgress
from harness.cli.summary import print_summary
from harness.errors import UsageError
from harness.monitor.resources import monitor_factory
from harness.run import repeats as repeat_budget
from harness.run.autobatch import describe as describe_search
from harness.run.lifeline import end_stale_workers
from harness.run.orchestrator import execute, plan_run
from harness.run.paths import check_writable_dir
from harness.run.recover import adopt
from harness.run.task import INFERENCE, TASKS, task_for
from harness.spec import ONNX_FILE_MODEL, RunSpec, batch_sizes, parse_batch_search
from harness.store.store import ResultStore


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def run_options() -> list[dataclasses.Field]:
    """RunSpec's fields that are ``run`` options, in ``--help`` order."""
    return [f for f in dataclasses.fields(RunSpec) if f.metadata.get("cli")]


def _option_type(f: dataclasses.Field) -> type | None:
    """The option's type from the field's annotation: int, float, else None (text)."""
    return next((t for t in (int, float) if t.__name__ in str(f.type)), None)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, Any] = {}
    for f in run_options():
        settings = dict(f.metadata["cli"])
        flags, title = settings.pop("flags"), settings.pop("group")
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        group = groups[title]
        if "negative" in settings:  # a bool: --validate / --no-validate
            negative, negative_help = settings.pop("negative"), settings.pop("negative_help", None)
            pair = group.add_mutually_exclusive_group()
            pair.add_argument(*flags, dest=f.name, action="store_true", default=None, **settings)
            pair.add_argument(negative, dest=f.name, action="store_false", help=negative_help)
            continue
        if f.default is not dataclasses.MISSING:
            settings["default"] = f.default
        if f.name == "task":  # the registry of tasks lives above the spec, in harness.run
            settings["choices"] = tuple(TASKS)
        if "action" not in settings:  # -o/--tag append text
            settings.setdefault("type", _option_type(f))
        group.add_argument(*flags, dest=f.name, **settings)
        if f.name == "output_dir":  # what to do with the run, not part of it
            group.add_argument(
                "--json", action="store_true", help="print the result as JSON on stdout"
            )
            group.add_argument(
                "--dry-run", action="store_true", help="show the worker command and stop"
            )


def _input_shape(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--input-shape takes C,H,W (three positive whole numbers), got {text!r}")
    return [int(p) for p in parts]


def specs_from_args(args: argparse.Namespace) -> list:  # -> list[RunSpec]
    """One RunSpec per ``--batch-size`` entry (one when it is a single number or absent)."""
    spec = spec_from_args(args)
    if args.batch_size is None:
        return [spec]
    if _is_search(args.batch_size):  # --batch-size auto: harness.run.autobatch
        parse_batch_search(args.batch_size)
        return [dataclasses.replace(spec, batch_size=None, batch_search=args.batch_size)]
    return [dataclasses.replace(spec, batch_size=b) for b in batch_sizes(args.batch_size)]


def spec_from_args(args: argparse.Namespace):  # -> RunSpec
    if args.onnx_file:
        if args.model is not None or args.dataset is not None:
            raise UsageError("--onnx-file replaces --model and --dataset: give neither")
    else:
        missing = [f for f, v in (("--model", args.model), ("--dataset", args.dataset)) if not v]
        if missing:
            raise UsageError(f"the run needs {' and '.join(missing)} (or --onnx-file FILE)")
    values = {}
    for f in run_options():
        value = getattr(args, f.name)
        values[f.name] = _FROM_CLI[f.name](value) if f.name in _FROM_CLI else value
    if args.onnx_file:
        values["task"] = INFERENCE.name  # --onnx-file benchmarks inference
    values["model"] = args.model or ONNX_FILE_MODEL
    values["dataset"] = args.dataset or "synthetic"
    return RunSpec(**values)


def _first_batch_size(text: str | int | None) -> int | None:
    """The first of ``--batch-size 1,8,64``: specs_from_args makes one spec per entry."""
    if _is_search(text):
        return None
    return batch_sizes(text)[0] if isinstance(text, str) else text


def _is_search(text: str | int | None) -> bool:
    return isinstance(text, str) and text.strip().startswith("auto")


# RunSpec fields whose command-line text is not the field's value
_FROM_CLI: dict[str, Callable[[Any], Any]] = {
    "batch_size": _first_batch_size,
    "timeout_s": lambda seconds: seconds or None,  # --timeout 0: no limit
    "options": lambda items: _key_values(items, "--option"),
    "tags": lambda items: _key_values(items, "--tag"),
    "input_shape": _input_shape,
}


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    # --batch-size 1,8,64: one run per size, every one planned (checked) before any starts
    plans = [plan_run(spec, check_gpus=not args.dry_run) for spec in specs_from_args(args)]
    if args.dry_run:
        for plan in plans:
            if len(plans) > 1:
                console.print(f"batch size {plan.spec.batch_size}:")
            for warning in plan.warnings:
                console.print(f"[yellow]warning:[/yellow] {warning}")
            console.print(f"interpreter: {plan.interpreter.python} ({plan.interpreter.source})")
            nodes = (
                f" on each of {plan.nodes} nodes (each node: {plan.node_launcher})"
                if plan.nodes > 1
                else ""
            )
            console.print(
                f"launcher: {plan.launcher}, {plan.processes} process(es), "
                f"{plan.local_devices} device(s) each{nodes}"
            )
            for key, value in sorted(plan.env.items()):
                console.print(f"env: {key}={value}")
            console.print("command: " + " ".join(plan.command("<run-dir>/repeat-N/job.json")))
        return 0
    worst = 0
    results = []
    for plan in plans:
        code, result = _run_plan(plan, console)
        results.append(result)
        worst = max(worst, code)
    if args.json:
        for result in results:
            print(result.to_json(indent=None))
    return worst


def _run_plan(plan, console: Console):  # -> (exit code, RunResult)
    """Runs one planned benchmark with its progress display and prints its summary."""
    check_writable_dir(plan.spec.output_dir, "--output-dir")  # before any work starts
    for note in end_stale_workers(plan.spec.output_dir):  # left by a harness killed with -9
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)

    store = ResultStore(Path(plan.spec.output_dir) / "results.sqlite")
    for note in adopt(store, plan.spec.output_dir):  # runs a full disk or kill -9 left out
        console.print(f"[yellow]taken into the store:[/yellow] {escape(note)}", highlight=False)
    label = f"{plan.spec.tool}/{plan.spec.model}/{plan.spec.dataset}"
    if not task_for(plan.spec.task).trains:  # inference: the task and its batch size
        label += f" {plan.spec.task}, batch {plan.spec.batch_search or plan.spec.batch_size}"
    records: list = []  # the finished repeats, as execute sees them
    at_most = repeat_budget.bounds(plan.spec)[1]
    with RunProgress(console, plan.spec.repeats, label, at_most=at_most) as progress:

        def on_event(event: dict) -> None:
            progress.event(event)

        def on_repeat(repeat: int, record: dict) -> None:
            progress.end_repeat(record)
            records.append(record)
            if repeat_budget.next_repeat(plan.spec, records).more:
                progress.start_repeat(repeat + 1)

        progress.start_repeat(1)

        outcome = execute(
            plan, on_event=on_event, on_repeat=on_repeat, monitor_factory=monitor_factory
        )
    print_summary(console, outcome.result, str(outcome.run_dir))
    search = outcome.result.environment.get("batch_search")
    if search:
        console.print(escape(describe_search(search)), highlight=False, soft_wrap=True)
    return (0 if outcome.result.status == "ok" else EXIT_FAILED_RUN), outcome.result


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    run = sub.add_parser("run", help=SUMMARY["run"])
    add_run_arguments(run)
    handlers["run"] = cmd_run
