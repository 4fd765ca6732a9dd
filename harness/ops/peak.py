"""The CPU's dense GEMM peak through a framework: ``harness peak --tool T`` (harness.cli.peak).

The same sweep as the NumPy measurement (harness.machine.peak: large square sizes, the
best FLOP/s per precision), but each size is a GEMM kernel timed by the ops worker in
the framework's interpreter (harness.ops.worker, the ops timing rules). The entry is
cached in the same file, keyed by the machine and the framework; operation benchmarks
on the CPU use it for their % of peak when it exists (else NumPy's peak).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.machine import peak as numpy_peak

# reading the cache is the machine's (harness.store.flops's callers look peaks up there)
from harness.machine.peak import framework_cached as cached  # noqa: F401
from harness.machine.peak import framework_key
from harness.machine.peak import framework_lookup as lookup  # noqa: F401
from harness.ops.runner import OpsSpec, _environment, _run_set, ops_module
from harness.ops.suite import Kernel
from harness.plugins import get_plugin_manager
from harness.run.interpreters import find_interpreter


def measure(
    tool: str,
    sizes: tuple[int, ...],
    precisions: tuple[str, ...],
    min_time: float,
    on_result: Any = None,
) -> dict[str, Any]:
    """Times an n x n x n GEMM per size and precision in ``tool``'s worker."""
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
