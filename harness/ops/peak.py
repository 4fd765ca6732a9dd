"""The CPU's dense GEMM peak through a framework: ``harness peak --tool T`` (harness.cli.peak).

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
    entry = {
        **info,
        "tool": tool,
        "framework": framework,
        "key": framework_key(tool, info),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": list(sizes),
        "rates": rates,
        "peaks": {p: max(r.values()) for p, r in rates.items() if r},
    }
    entry["provenance"] = numpy_peak.provenance(entry, min_time)
    return entry


def cached(tool: str, path: Path | None = None) -> dict[str, Any] | None:
    """This machine's entry for ``tool`` in the cache, or None."""
    data = numpy_peak._read_cache(path or numpy_peak.cache_path())
    return data["machines"].get(framework_key(tool))


def lookup(tool: str, precision: str, path: Path | None = None) -> tuple[float | None, str]:
    """(this machine's peak measured through ``tool``, its source or why there is none)."""
    entry = cached(tool, path)
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
