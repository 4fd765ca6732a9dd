"""``python -m harness peak``: this CPU's dense GEMM peak, measured and cached.

Through NumPy (harness.machine.peak) or, with ``--tool T``, through a framework's GEMM
in its ops worker (harness.ops.peak); both cache in the same file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.cli.commands import SUMMARY
from harness.errors import UsageError
from harness.machine import peak as numpy_peak
from harness.ops import peak as framework_peak
from harness.ops.runner import ops_module
from harness.plugins import get_plugin_manager


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--sizes takes integers like 1024,2048, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--sizes takes positive integers, got {text!r}")
    memory = _memory_bytes()
    need = _BYTES_PER_ELEMENT * max(sizes) ** 2
    if memory and need > memory // 2:
        raise UsageError(
            f"--sizes {max(sizes)}: its matrices need about {need / 1e9:,.0f} GB, more than "
            f"half of this machine's {memory / 1e9:,.0f} GB; give smaller sizes"
        )
    return sizes


# a GEMM of size n holds about four n x n float64 arrays (inputs drawn in float64)
_BYTES_PER_ELEMENT = 32


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_args(args: Any) -> None:
    """Options that do not apply, and values no measurement can take (UsageError)."""
    if args.min_time <= 0:
        raise UsageError(f"--min-time must be a positive number, got {args.min_time:g}")
    if args.tool and args.fp64:
        raise UsageError("--fp64 applies to the NumPy measurement; --tool takes --all-precisions")
    if args.all_precisions and not args.tool:
        raise UsageError("--all-precisions applies with --tool only; NumPy measures --fp64")
    if args.tool:  # an unknown tool, or one without operation kernels: before any work
        pm = get_plugin_manager()
        ops_module(pm.backend(args.tool), pm)


def cmd_peak(args: Any, console: Any) -> int:
    _check_args(args)
    if args.tool:  # through a framework's GEMM (harness.ops.peak)
        return _framework_peak(args, console)
    if args.show:
        entry = numpy_peak.cached()
        if entry is None:
            console.print(
                f"{numpy_peak.NO_PEAK} (cache: {escape(str(numpy_peak.cache_path()))})",
                highlight=False,
            )
            return 1
        _print_entry(entry, console)
        return 0
    precisions = ("fp32", "fp64") if args.fp64 else ("fp32",)
    path, entry, notes = _measure(args, console, "NumPy matmul", precisions, numpy_peak.measure)
    _print_entry(entry, console)
    _print_notes(notes, console)
    console.print(f"cached in {escape(str(path))}; runs on this machine use it for MFU")
    return 0


def _measure(
    args: Any, console: Any, how: str, precisions: tuple[str, ...], measure: Any
) -> tuple[Path, dict[str, Any], list[str]]:
    """Says what is measured, measures it (``measure(sizes, precisions, min_time,
    on_result=...)``) printing each size's rate, and caches it: (cache file, the entry
    cached, notes)."""
    sizes = _sizes(args.sizes)
    console.print(
        f"measuring dense GEMM ({how}) on {numpy_peak.cores_available()} cores: sizes "
        f"{', '.join(map(str, sizes))}, {', '.join(precisions)}, at least {args.min_time:g} s each",
        highlight=False,
    )

    def progress(precision: str, n: int, rate: float) -> None:
        console.print(f"  {precision} n={n}: {rate / 1e9:,.1f} GFLOP/s", highlight=False)

    entry = measure(sizes, precisions, args.min_time, on_result=progress)
    path, notes = numpy_peak.save(entry, force=args.force)
    kept = numpy_peak.cached_entry(entry["key"], path)  # merged with the cached one
    assert kept is not None  # save has just written it
    return path, kept, notes


def _print_notes(notes: list[str], console: Any) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)


def _print_entry(entry: dict[str, Any], console: Any) -> None:
    """The cached peaks, each with the CPU's theoretical peak (and a note when the
    measured one is above it: the estimate is then low)."""
    console.print(f"machine: {escape(entry['key'])}", highlight=False)
    for precision, value in sorted((entry.get("peaks") or {}).items()):
        print(f"peak {precision}: {value / 1e9:,.1f} GFLOP/s (measured {entry['measured_at']})")
        theory, how = numpy_peak.theoretical_peak(precision)
        if theory is not None:
            share = f"; measured {value / theory:.0%} of it"
            print(f"  theoretical {precision}: {theory / 1e9:,.1f} GFLOP/s ({how}){share}")
        note = numpy_peak.above_theory_note(value, theory)
        if note:
            _print_notes([note], console)


def add_command(sub: Any, handlers: dict[str, Any]) -> None:
    parser = sub.add_parser(
        "peak",
        help=SUMMARY["peak"],
        description="Times NumPy matmul on large square matrices with the cores available and "
        "caches the best FLOP/s per precision for this machine.",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, numpy_peak.DEFAULT_SIZES)),
        help=f"matrix sizes n (default {','.join(map(str, numpy_peak.DEFAULT_SIZES))})",
    )
    parser.add_argument("--fp64", action="store_true", help="measure fp64 too")
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="seconds per size at least (default 1)"
    )
    parser.add_argument(
        "--show", action="store_true", help="print the cached peak, measure nothing"
    )
    parser.add_argument(
        "--tool", help="measure through this framework's GEMM (its ops worker) instead of NumPy"
    )
    parser.add_argument(
        "--all-precisions", action="store_true", help="with --tool: fp32, fp16 and bf16"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the cached peak even where this measurement is lower (by default the "
        "higher one is kept)",
    )
    handlers["peak"] = cmd_peak


def _framework_peak(args: Any, console: Any) -> int:
    """The ``peak`` command with ``--tool``."""
    tool = args.tool
    if args.show:
        entry = framework_peak.cached(tool)
        if entry is None:
            console.print(f"no {tool} GEMM peak cached: run `python -m harness peak --tool {tool}`")
            return 1
        for precision, value in sorted(entry["peaks"].items()):
            when = entry["measured_at"]
            print(f"{tool} peak {precision}: {value / 1e9:,.1f} GFLOP/s (measured {when})")
        return 0
    precisions = ("fp32", "fp16", "bf16") if args.all_precisions else ("fp32",)
    measure = functools.partial(framework_peak.measure, tool)
    path, entry, notes = _measure(args, console, f"through {tool}", precisions, measure)
    console.print(f"machine: {escape(entry['key'])}", highlight=False)
    for precision, value in sorted(entry["peaks"].items()):
        print(f"{tool} peak {precision}: {value / 1e9:,.1f} GFLOP/s")
    _print_notes(notes, console)
    console.print(
        f"cached in {escape(str(path))}; `ops --tool {tool}` on the CPU uses it for % of peak"
    )
    return 0
