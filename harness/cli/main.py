"""Command line: ``python -m harness [run] --tool T --model M --dataset D ...``.

Subcommands: ``run`` (the default when the first argument is an option), ``list``,
``download``; ``sweep``, ``report``, ``export``, ``compare`` live in harness.cli.results.
A user's mistake prints one line and exits with code 2; a benchmark whose repeats did
not all succeed exits with 1.
"""

from __future__ import annotations

import argparse
import errno
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.errors import UsageError

EXIT_FAILED_RUN = 1
EXIT_INTERRUPTED = 130


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to run")
    what.add_argument("--tool", required=True, help="framework backend (python -m harness list)")
    what.add_argument("--model", help="lenet, alexnet, resnet50, googlenet, vgg16")
    what.add_argument("--dataset", help="mnist, fashion-mnist, kmnist, cifar10, imagenet")
    hw = parser.add_argument_group("hardware")
    hw.add_argument(
        "--num-gpus", type=int, default=-1, help="-1: the CPU (default); N: N GPUs, data parallel"
    )
    hw.add_argument("--gpu", help="which GPUs: NVML indices '0,2' or a name match 'A100'")
    hw.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        help="CPU runs: split the CPU into N data-parallel devices",
    )
    hw.add_argument(
        "--threads",
        type=int,
        help="intra-op CPU threads of the whole run, split over its devices "
        "(default: the cores available)",
    )
    hw.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="data parallel over N nodes, each with --num-gpus GPUs or --cpu-devices devices",
    )
    hw.add_argument(
        "--launcher",
        help="how --nodes N starts its nodes: srun (default inside a SLURM allocation) or "
        "local-nodes (all on this host)",
    )
    train = parser.add_argument_group("training and inference")
    train.add_argument(
        "--task",
        choices=("train", "inference"),
        default="train",
        help="train (default) or inference: model load, session, first inference, latency "
        "percentiles, throughput and, on real data, total inference time over the test split",
    )
    train.add_argument(
        "--batch-size",
        help="per device (default: the study's value); a list such as 1,8,64 runs once per size",
    )
    train.add_argument(
        "--lr", type=float, dest="learning_rate", help="learning rate (default: the study's)"
    )
    train.add_argument(
        "--warmup-steps",
        type=int,
        help="untimed steps first (default: until the step time is steady)",
    )
    train.add_argument(
        "--steps",
        type=int,
        help="timed steps (default: measure until the 95%% CI is within ±2%%, see --min-time)",
    )
    train.add_argument("--epochs", type=int, help="train whole epochs instead of --steps")
    train.add_argument(
        "--precision", default="fp32", help="fp32 (default), fp16 or bf16 mixed precision"
    )
    train.add_argument("--seed", type=int, default=0)
    val = train.add_mutually_exclusive_group()
    val.add_argument(
        "--validate",
        dest="validate",
        action="store_true",
        default=None,
        help="validate on the test split after training",
    )
    val.add_argument("--no-validate", dest="validate", action="store_false")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", help="where datasets live (default: $HARNESS_DATA_DIR or ./data)"
    )
    data.add_argument(
        "--data-workers",
        type=int,
        help="threads decoding ImageNet JPEGs (default: one per core available)",
    )
    data.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="upscale MNIST-family and CIFAR-10 images to 3xSxS in the input pipeline, "
        "grey-scale repeated to RGB (224: the ImageNet-shaped networks, as the study did)",
    )
    src = data.add_mutually_exclusive_group()
    src.add_argument(
        "--synthetic",
        dest="synthetic",
        action="store_true",
        default=None,
        help="use synthetic data even if the files exist",
    )
    src.add_argument(
        "--real",
        dest="synthetic",
        action="store_false",
        help="require the real files (no synthetic fallback)",
    )
    meas = parser.add_argument_group("measurement")
    meas.add_argument("--repeats", type=int, default=3, help="fresh processes per run (default 3)")
    meas.add_argument(
        "--sync-every",
        type=int,
        help="synchronise the device every N steps; 1: time every step "
        "(default: windows of steps lasting ~0.3 s)",
    )
    meas.add_argument(
        "--min-time",
        type=float,
        dest="min_time_s",
        default=10.0,
        help="adaptive length: seconds measured at least (default 10)",
    )
    meas.add_argument(
        "--max-time",
        type=float,
        dest="max_time_s",
        default=30.0,
        help="adaptive length: seconds measured at most (default 30)",
    )
    meas.add_argument(
        "--timeout",
        type=float,
        dest="timeout_s",
        default=3600.0,
        help="seconds per repeat before the worker is killed (default 3600; 0: none)",
    )
    meas.add_argument(
        "--monitor-interval",
        type=float,
        dest="monitor_interval_s",
        default=0.1,
        help="seconds between resource samples (default 0.1)",
    )
    meas.add_argument(
        "--idle-baseline",
        type=float,
        dest="idle_baseline_s",
        default=2.0,
        help="seconds of idle sampling before the first repeat (default 2; 0: none)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output-dir", default="logs", help="run folders and results.sqlite (default ./logs)"
    )
    out.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    out.add_argument("--dry-run", action="store_true", help="show the worker command and stop")
    adv = parser.add_argument_group("advanced")
    adv.add_argument("--python", help="interpreter that has the framework (default: found)")
    adv.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="backend option")
    adv.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="label stored with the result"
    )
    adv.add_argument(
        "--dump-weights", metavar="DIR", help="save every replica's final weights here (.npz)"
    )
    inf = parser.add_argument_group("inference")
    inf.add_argument(
        "--weights",
        metavar="FILE.npz",
        help="inference: these weights (as --dump-weights saves them) instead of the initial ones",
    )
    inf.add_argument(
        "--onnx-file",
        metavar="FILE",
        help="inference on a backend that runs ONNX files: benchmark this ONNX model on "
        "synthetic inputs (--model and --dataset do not apply)",
    )
    inf.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="with --onnx-file: the per-image input shape, where the file leaves it open",
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
    import dataclasses

    from harness.run.spec import batch_sizes

    spec = spec_from_args(args)
    if args.batch_size is None:
        return [spec]
    return [dataclasses.replace(spec, batch_size=b) for b in batch_sizes(args.batch_size)]


def spec_from_args(args: argparse.Namespace):  # -> RunSpec
    from harness.run.spec import ONNX_FILE_MODEL, RunSpec, batch_sizes

    onnx_file = getattr(args, "onnx_file", None)
    task = getattr(args, "task", "train")
    if onnx_file:
        task = "inference"  # --onnx-file benchmarks inference
        if args.model is not None or args.dataset is not None:
            raise UsageError("--onnx-file replaces --model and --dataset: give neither")
    else:
        missing = [f for f, v in (("--model", args.model), ("--dataset", args.dataset)) if not v]
        if missing:
            raise UsageError(f"the run needs {' and '.join(missing)} (or --onnx-file FILE)")
    batch = args.batch_size
    if isinstance(batch, str):
        batch = batch_sizes(batch)[0]  # the first; specs_from_args makes one per entry
    return RunSpec(
        tool=args.tool,
        model=args.model or ONNX_FILE_MODEL,
        dataset=args.dataset or "synthetic",
        task=task,
        weights=getattr(args, "weights", None),
        onnx_file=onnx_file,
        input_shape=_input_shape(getattr(args, "input_shape", None)),
        num_gpus=args.num_gpus,
        gpu=args.gpu,
        cpu_devices=args.cpu_devices,
        batch_size=batch,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        epochs=args.epochs,
        repeats=args.repeats,
        precision=args.precision,
        data_dir=args.data_dir,
        data_workers=args.data_workers,
        image_size=args.image_size,
        synthetic=args.synthetic,
        validate=args.validate,
        seed=args.seed,
        sync_every=args.sync_every,
        min_time_s=args.min_time_s,
        max_time_s=args.max_time_s,
        threads=args.threads,
        timeout_s=args.timeout_s or None,
        monitor_interval_s=args.monitor_interval_s,
        idle_baseline_s=args.idle_baseline_s,
        output_dir=args.output_dir,
        python=args.python,
        options=_key_values(args.option, "--option"),
        tags=_key_values(args.tag, "--tag"),
        dump_weights=args.dump_weights,
        nodes=args.nodes,
        launcher=args.launcher,
    )


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from harness.run.orchestrator import plan_run

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
    from harness.cli.progress import RunProgress
    from harness.cli.summary import print_summary
    from harness.run.lifeline import end_stale_workers
    from harness.run.orchestrator import execute
    from harness.run.paths import check_writable_dir

    check_writable_dir(plan.spec.output_dir, "--output-dir")  # before any work starts
    for note in end_stale_workers(plan.spec.output_dir):  # left by a harness killed with -9
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
    from harness.results.recover import adopt
    from harness.results.store import ResultStore

    store = ResultStore(Path(plan.spec.output_dir) / "results.sqlite")
    for note in adopt(store, plan.spec.output_dir):  # runs a full disk or kill -9 left out
        console.print(f"[yellow]taken into the store:[/yellow] {escape(note)}", highlight=False)
    label = f"{plan.spec.tool}/{plan.spec.model}/{plan.spec.dataset}"
    if plan.spec.task != "train":
        label += f" {plan.spec.task}, batch {plan.spec.batch_size}"
    with RunProgress(console, plan.spec.repeats, label) as progress:

        def on_event(event: dict) -> None:
            progress.event(event)

        def on_repeat(repeat: int, record: dict) -> None:
            progress.end_repeat(record)
            if repeat < plan.spec.repeats:
                progress.start_repeat(repeat + 1)

        progress.start_repeat(1)
        from harness.monitor.resources import monitor_factory

        outcome = execute(
            plan, on_event=on_event, on_repeat=on_repeat, monitor_factory=monitor_factory
        )
    print_summary(console, outcome.result, str(outcome.run_dir))
    return (0 if outcome.result.status == "ok" else EXIT_FAILED_RUN), outcome.result


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from harness import datasets, models
    from harness.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if getattr(args, "options", False):
        _print_options(pm, console)
        return 0
    console.print("[bold]tools[/bold]")
    for name, info in sorted(pm.backends.items()):
        console.print(f"  {name:12} {info.framework} ({escape(info.install_hint)})")
    for name, error in sorted(pm.load_errors.items()):
        console.print(f"  {name:12} [red]failed to load: {escape(error)}[/red]")
    console.print("[bold]models[/bold]")
    for name, info in models.MODELS.items():
        console.print(f"  {name:12} {info.title}")
    console.print("[bold]datasets[/bold]")
    for name, info in datasets.DATASETS.items():
        c, h, w = info.image_shape
        console.print(f"  {name:14} {info.title}: {c}x{h}x{w}, {info.num_classes} classes")
    return 0


def _print_options(pm, console: Console) -> None:  # pm: a PluginManager
    """Every backend's declared ``-o`` options: name, type, default, help."""
    console.print("[bold]backend options[/bold] (-o KEY=VALUE; sweep files: options = {...})")
    for name, info in sorted(pm.backends.items()):
        if info.options is None:
            console.print(f"  {name}: not declared (not checked)")
            continue
        if not info.options:
            console.print(f"  {name}: none")
        for option in info.options:
            kind = option.type
            if option.choices:
                kind += " (" + "|".join(option.choices) + ("|..." if option.any_value else "") + ")"
            console.print(
                f"  {name} {option.name}={escape(kind)}  default {escape(str(option.default))}: "
                f"{escape(option.help)}",
                highlight=False,
                soft_wrap=True,
            )


def cmd_download(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from harness import datasets
    from harness.datasets.download import download

    if args.dataset not in datasets.DATASETS:
        names = ", ".join(datasets.DATASETS)
        raise UsageError(f"unknown dataset {args.dataset!r}; choose from: {names}")
    from harness.run.paths import check_writable_dir

    check_writable_dir(datasets.dataset_dir(args.dataset, args.data_dir), "--data-dir")
    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            path = download(args.dataset, args.data_dir, progress=progress)
        except datasets.DatasetError as exc:
            raise UsageError(str(exc)) from None
    console.print(f"{args.dataset}: ready in {path}")
    return 0


Command = Callable[[argparse.Namespace, Console], int]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark deep-learning training across frameworks and hardware.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Command] = {}

    run = sub.add_parser("run", help="benchmark one (tool, model, dataset, hardware) (default)")
    add_run_arguments(run)
    handlers["run"] = cmd_run
    listing = sub.add_parser("list", help="installed tools, models and datasets")
    listing.add_argument(
        "--options", action="store_true", help="every backend's -o options (type, default, help)"
    )
    handlers["list"] = cmd_list
    dl = sub.add_parser("download", help="download a dataset and verify its checksums")
    dl.add_argument("dataset")
    dl.add_argument("--data-dir", help="target folder (default: $HARNESS_DATA_DIR or ./data)")
    handlers["download"] = cmd_download
    from harness.machine.peak import add_command as add_peak  # peak: the CPU's GEMM peak

    add_peak(sub, handlers)
    from harness.cli.doctor import add_command as add_doctor  # doctor: is the machine fit?

    add_doctor(sub, handlers)
    from harness.cli.verify import add_command as add_verify  # verify: parity with NumPy

    add_verify(sub, handlers)
    from harness.ops.cli import add_command as add_ops  # ops: DeepBench-style kernels

    add_ops(sub, handlers)
    from harness.cli.onnx_export import add_command as add_onnx  # onnx: export a network

    add_onnx(sub, handlers)
    from harness.cli.results import add_commands  # sweep, report, export, compare

    add_commands(sub, handlers)
    return parser, handlers


def _check_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every float option of every subcommand: NaN and infinity are mistakes (exit 2)."""
    import math

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
    """``report -o``, ``export -o``, ``compare -o``: a writable file; ``sweep --output-dir``:
    a writable folder; checked before any work starts."""
    from harness.run.paths import check_writable_dir, check_writable_file

    output = getattr(args, "output", None)
    figures = args.command == "report" and args.format in ("png", "svg", "pdf")
    if figures and output:  # report --format png|svg|pdf -o DIR: a folder of figures
        check_writable_dir(output, "-o")
    elif args.command in ("report", "export", "compare") and output and output != "-":
        check_writable_file(output, "-o")
    writes = not (getattr(args, "dry_run", False) or getattr(args, "list", False))
    if args.command == "sweep" and getattr(args, "output_dir", None) and writes:
        check_writable_dir(args.output_dir, "--output-dir")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, handlers = build_parser()
    if (
        args_list
        and args_list[0].startswith("-")
        and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console(stderr=True)
    if not console.is_terminal:  # logs and CI: wide enough for the summary table
        console = Console(stderr=True, width=160)
    from harness.run import signals

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
        if not _disk_full(exc):
            raise
        console.print(
            f"[red]error:[/red] the disk is full ({escape(str(exc))}); what was measured is "
            "on disk: free some space and start again, the next start takes it into the store",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_FAILED_RUN
    except KeyboardInterrupt as exc:
        what = signals.cause(exc)
        console.print(f"[yellow]{what}[/yellow]: finished repeats are stored")
        return signals.exit_code(exc)


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT from the OS, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc) or "database or disk is full" in str(exc)
