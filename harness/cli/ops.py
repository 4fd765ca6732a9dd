"""``python -m harness ops``: operation benchmarks (DeepBench's kernels; the work: harness.ops)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.cli.commands import SUMMARY
from harness.cli.options import from_args
from harness.errors import UsageError
from harness.ops.runner import OpsSpec, execute
from harness.run.paths import check_writable_dir


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def shape_text(shape: dict[str, Any]) -> str:
    parts = []
    for key, value in shape.items():
        if isinstance(value, bool):
            if value:
                parts.append(key.replace("transpose_", "T"))
        else:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def set_table(op_set: Any, title: str) -> Any:
    """A rich table of one set's kernels, with the set's totals as caption."""
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("kernel", "left"),
        ("shape", "left"),
        ("dir", "left"),
        ("µs/call", "right"),
        ("±ci95", "right"),
        ("TFLOP/s", "right"),
        ("GB/s", "right"),
        ("% peak", "right"),
        ("max err", "right"),
        ("status", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for op in op_set.ops:
        status = op.status if op.status == "ok" else (op.reason or op.status)
        table.add_row(
            op.name,
            shape_text(op.shape),
            {"forward": "fwd", "backward": "bwd"}.get(op.direction, op.direction),
            _fmt(op.time_us.mean, ",.1f"),
            _fmt(op.time_us.ci95, ",.1f"),
            _fmt(op.tflops, ".3g"),
            _fmt(op.gb_per_s, ".3g"),
            _fmt(op.percent_of_peak, ".1f"),
            _fmt(op.max_error, ".1e"),
            status,
        )
    ok = [o for o in op_set.ops if o.status == "ok"]
    table.caption = (
        f"{len(ok)}/{len(op_set.ops)} ok; total {_fmt(op_set.total_us, ',.1f')} µs per pass "
        f"over the set; worker {_fmt(op_set.wall_s, '.1f')} s"
        + (f"; failed: {op_set.cause}" if op_set.cause else "")
    )
    table.caption_justify = "left"
    return table


def check_args(args: argparse.Namespace) -> None:
    """The options' values, before any work (UsageError, one line)."""
    for flag, value in (
        ("--scale", args.scale),
        ("--min-time", args.min_time),
        ("--max-time", args.max_time),
        ("--timeout", args.timeout),
        ("--threads", args.threads),
        ("--cpu-devices", args.cpu_devices),
    ):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive number, got {value:g}")
    if args.num_gpus == 0 or args.num_gpus < -1:
        raise UsageError(
            f"--num-gpus must be -1 (the CPU) or a positive count, got {args.num_gpus}"
        )
    check_writable_dir(args.output_dir, "--output-dir")


def cmd_ops(args: argparse.Namespace, console: Any) -> int:
    check_args(args)
    spec = from_args(
        OpsSpec,
        args,
        scale=0.1 if args.quick and args.scale is None else (args.scale or 1.0),
        min_time_s=args.min_time or (0.1 if args.quick else 1.0),
        max_time_s=args.max_time or (0.5 if args.quick else 5.0),
        timeout_s=args.timeout,
        check=not args.no_check,
        extra_env={},
    )

    def on_set(op_set: Any) -> None:
        console.print(set_table(op_set, f"{spec.tool} · {op_set.kind} · {spec.precision}"))

    result = execute(spec, on_set=on_set)
    peaks = {o.peak_source for s in result.sets for o in s.ops if o.peak_source}
    for source in sorted(peaks):
        console.print(f"% of peak: {escape(source)}", highlight=False)
    console.print(
        f"stored as {result.ops_id} in {escape(spec.output_dir)}/results.sqlite", highlight=False
    )
    if args.json:
        print(result.to_json(indent=None))
    return 0 if result.status == "ok" else 1


def add_command(sub: Any, handlers: dict[str, Any]) -> None:
    """Registers ``ops`` with the main parser."""
    parser = sub.add_parser(
        "ops",
        help=SUMMARY["ops"],
        description="Times each kernel of a suite in a framework, one fresh worker per kernel "
        "kind: time per call, TFLOP/s (GB/s for all-reduce), % of the device's peak.",
    )
    parser.add_argument(
        "--tool", required=True, help="framework backend with kernels (python -m harness list)"
    )
    parser.add_argument(
        "--suite", default="deepbench", help="built-in suite (deepbench, smoke) or a TOML file"
    )
    parser.add_argument(
        "--ops",
        help="only these kernels: kinds (gemm, sparse_gemm, conv, rnn, "
        "allreduce), cells (lstm, gru) or names, comma-separated",
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--num-gpus", type=int, default=-1, help="-1: the CPU (default); N: N GPUs")
    parser.add_argument(
        "--cpu-devices", type=int, default=1, help="CPU devices for all-reduce (default 1)"
    )
    parser.add_argument("--scale", type=float, help="multiply every size by this (e.g. 0.1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="--scale 0.1, --min-time 0.1, --max-time 0.5 (unless given): for CI",
    )
    parser.add_argument(
        "--min-time", type=float, help="seconds timed per kernel at least (default 1)"
    )
    parser.add_argument(
        "--max-time", type=float, help="seconds timed per kernel at most (default 5)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per set (worker)")
    parser.add_argument(
        "--threads", type=int, help="intra-op threads (default: the cores available)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the NumPy correctness check")
    parser.add_argument(
        "--python", help="interpreter for the worker (default: found automatically)"
    )
    parser.add_argument("--output-dir", default="logs", help="results.sqlite and the workers' logs")
    parser.add_argument(
        "--json", action="store_true", help="print the result JSON as the last line"
    )
    handlers["ops"] = cmd_ops
