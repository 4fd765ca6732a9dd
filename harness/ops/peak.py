"""``python -m harness peak --tool T``: the CPU's dense GEMM peak through a framework.

The same sweep as the NumPy measurement (harness.machine.peak: large square sizes, the
best FLOP/s per precision), but each size is a GEMM kernel timed by the ops worker in
the framework's interpreter (harness.ops.worker, the ops timing rules). The entry is
cached in the same file, keyed by the machine and the framework; operation benchmarks
on the CPU use it for their % of peak when it exists (else NumPy's peak).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness.machine import peak as numpy_peak
from harness.ops.suite import Kernel


def framework_key(tool: str, info: dict[str, Any] | None = None) -> str:
    info = info or numpy_peak.machine()
    return f"{numpy_peak.machine_key(info)} | framework {tool}"


def measure(
    tool: str,
    sizes: tuple[int, ...],
    precisions: tuple[str, ...],
    min_time: float,
    on_result: Any = None,
) -> dict[str, Any]:
    """Times an n x n x n GEMM per size and precision in ``tool``'s worker."""
    from datetime import datetime, timezone

    from harness.ops.runner import OpsSpec, _environment, _run_set, ops_module
    from harness.plugins import get_plugin_manager
    from harness.run.interpreters import find_interpreter

    pm = get_plugin_manager()
    backend = pm.backend(tool)
    module = ops_module(backend, pm)
    interpreter = find_interpreter(backend, None)
    kernels = [
        Kernel(
            "gemm",
            f"peak-{n}",
            {"m": n, "n": n, "k": n, "transpose_a": False, "transpose_b": False},
        )
        for n in sizes
    ]
    rates: dict[str, dict[str, float]] = {}
    framework = None
    with tempfile.TemporaryDirectory(prefix="harness-peak-") as folder:
        for precision in precisions:
            spec = OpsSpec(
                tool,
                precision=precision,
                min_time_s=min_time,
                max_time_s=3 * min_time,
                check=False,
                output_dir=folder,
            )
            env = _environment(spec, backend, 1, {})
            lines, cause, _, _ = _run_set(
                "gemm",
                kernels,
                spec,
                interpreter.python,
                env,
                Path(folder) / precision,
                1,
                lambda _: None,
                module=module,
            )
            if cause:
                raise RuntimeError(f"{tool} {precision} GEMM: {cause}")
            rates[precision] = {}
            for line in lines:
                if line.get("event") == "framework":
                    framework = line.get("framework")
                if line.get("event") != "op" or line.get("status") != "ok":
                    continue
                n = line["kernel"]["shape"]["m"]
                rate = 2.0 * n**3 * line["calls"] / line["seconds"]
                rates[precision][str(n)] = rate
                if on_result:
                    on_result(precision, n, rate)
    info = numpy_peak.machine()
    return {
        **info,
        "tool": tool,
        "framework": framework,
        "key": framework_key(tool, info),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": list(sizes),
        "rates": rates,
        "peaks": {p: max(r.values()) for p, r in rates.items() if r},
    }


def lookup(tool: str, precision: str, path: Path | None = None) -> tuple[float | None, str]:
    """(this machine's peak measured through ``tool``, its source or why there is none)."""
    data = numpy_peak._read_cache(path or numpy_peak.cache_path())
    entry = data["machines"].get(framework_key(tool))
    value = ((entry or {}).get("peaks") or {}).get(precision)
    if not value:
        return (
            None,
            f"no {tool} GEMM peak for {precision}: run `python -m harness peak --tool {tool}`",
        )
    return float(value), (
        f"{tool} GEMM peak measured by `python -m harness peak --tool {tool}` on "
        f"{entry.get('measured_at', '?')} ({entry.get('cores', '?')} cores)"
    )


def cmd_peak(args: Any, console: Any) -> int:
    """The ``peak`` command with ``--tool``."""
    from rich.markup import escape

    tool = args.tool
    if args.show:
        data = numpy_peak._read_cache(numpy_peak.cache_path())
        entry = data["machines"].get(framework_key(tool))
        if entry is None:
            console.print(f"no {tool} GEMM peak cached: run `python -m harness peak --tool {tool}`")
            return 1
        for precision, value in sorted(entry["peaks"].items()):
            when = entry["measured_at"]
            print(f"{tool} peak {precision}: {value / 1e9:,.1f} GFLOP/s (measured {when})")
        return 0
    precisions = ("fp32", "fp16", "bf16") if args.all_precisions else ("fp32",)
    sizes = numpy_peak._sizes(args.sizes)
    console.print(
        f"measuring dense GEMM through {tool} on {numpy_peak.cores_available()} cores: sizes "
        f"{', '.join(map(str, sizes))}, {', '.join(precisions)}, at least {args.min_time:g} s each",
        highlight=False,
    )

    def progress(precision: str, n: int, rate: float) -> None:
        console.print(f"  {precision} n={n}: {rate / 1e9:,.1f} GFLOP/s", highlight=False)

    entry = measure(tool, sizes, precisions, args.min_time, on_result=progress)
    path = numpy_peak.save(entry)
    console.print(f"machine: {escape(entry['key'])}", highlight=False)
    for precision, value in sorted(entry["peaks"].items()):
        print(f"{tool} peak {precision}: {value / 1e9:,.1f} GFLOP/s")
    console.print(
        f"cached in {escape(str(path))}; `ops --tool {tool}` on the CPU uses it for % of peak"
    )
    return 0
