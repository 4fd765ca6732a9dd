"""The CPU's measured GEMM peak, for MFU on CPU runs: ``harness peak`` (harness.cli.peak).

A dense matrix product of two n x n matrices costs 2 n^3 FLOPs. The command times NumPy's
``matmul`` (its BLAS) for a few large square sizes per precision (fp32; fp64 with
``--fp64``), each size repeated until it has run ``min_time`` seconds, with as many BLAS
threads as the cores available to the harness (CPU affinity and cgroup quota,
harness.cpu.available_cores), and keeps the best rate per precision. That is the peak a
framework's own GEMMs can be compared with on this machine (the operation-level
benchmarks may later replace it).

The result is cached in ``$HARNESS_CACHE_DIR/peak.json`` (default ``~/.cache/harness``),
one entry per machine, keyed by host name, CPU model, cores available and NumPy's BLAS;
runs look their machine up there (:func:`lookup`) and otherwise report no MFU with the
hint to run the command. NumPy is imported only when measuring or looking up.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from harness.cpu import available_cores
from harness.machine.environment import cpu_model

CACHE_FILE = "peak.json"
CACHE_VERSION = 1
DEFAULT_SIZES = (1024, 2048, 4096)
DTYPES = {"fp32": "float32", "fp64": "float64"}
NO_PEAK = (
    "no peak measured on this machine: run `python -m harness peak` once "
    "(NumPy GEMM, about 10 s); later runs show MFU"
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cache_path() -> Path:
    base = os.environ.get("HARNESS_CACHE_DIR") or str(Path.home() / ".cache" / "harness")
    return Path(base) / CACHE_FILE


def cores_available() -> int:
    return available_cores()


def blas_name() -> str:
    """NumPy's version and BLAS, e.g. ``numpy 2.1.0 scipy-openblas 0.3.27``."""
    import numpy  # late: measure() sets the BLAS threads before NumPy loads

    name = version = None
    try:
        config = numpy.show_config(mode="dicts")  # numpy >= 1.26
        blas = (config.get("Build Dependencies") or {}).get("blas") or {}
        name, version = blas.get("name"), blas.get("version")
    except (TypeError, AttributeError):
        info = getattr(numpy.__config__, "blas_opt_info", None) or {}
        libraries = info.get("libraries") if isinstance(info, dict) else None
        name = ",".join(libraries) if libraries else None
    parts = [f"numpy {numpy.__version__}", name or "unknown BLAS", version or ""]
    return " ".join(p for p in parts if p)


def machine() -> dict[str, Any]:
    """What identifies the measurement: host, CPU model, cores, BLAS."""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": cores_available(),
        "blas": blas_name(),
    }


def machine_key(info: dict[str, Any]) -> str:
    return f"{info['hostname']} | {info['cpu']} | {info['cores']} cores | {info['blas']}"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": CACHE_VERSION, "machines": {}}
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        return {"version": CACHE_VERSION, "machines": {}}
    return data


def _set_threads(cores: int) -> None:
    """BLAS threads = the cores available, unless NumPy is loaded or the user set them."""
    if "numpy" in sys.modules:
        return
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(cores))


def gemm_rate(n: int, dtype: str, min_time: float) -> float:
    """Best FLOP/s of ``n x n @ n x n`` in ``dtype`` over repeats lasting ``min_time`` s."""
    import numpy as np  # late: measure() sets the BLAS threads before NumPy loads

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm up: threads started, pages touched
    best = float("inf")
    spent, runs = 0.0, 0
    while spent < min_time or runs < 2:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return 2.0 * n**3 / best


def measure(
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    precisions: tuple[str, ...] = ("fp32",),
    min_time: float = 1.0,
    on_result: Any = None,
) -> dict[str, Any]:
    """Measures every (precision, size); the entry :func:`save` caches."""
    cores = cores_available()
    _set_threads(cores)
    info = machine()
    rates: dict[str, dict[str, float]] = {}
    for precision in precisions:
        rates[precision] = {}
        for n in sizes:
            rate = gemm_rate(n, DTYPES[precision], min_time)
            rates[precision][str(n)] = rate
            if on_result:
                on_result(precision, n, rate)
    threads = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    entry = {
        **info,
        "key": machine_key(info),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "sizes": list(sizes),
        "rates": rates,
        "peaks": {p: max(r.values()) for p, r in rates.items() if r},
    }
    entry["provenance"] = provenance(entry, min_time)
    return entry


def merge(
    old: dict[str, Any] | None, new: dict[str, Any], force: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The entry to cache from the cached one (``old``) and a new measurement: per
    precision the higher peak, with its rates and provenance (when, sizes, minimum time,
    library), unless ``force`` (the new one replaces all). A shorter or smaller
    measurement cannot poison the cache: it never lowers a peak by chance. Returns the
    entry and one note per precision whose cached peak was kept."""
    if old is None or force:
        return new, []
    entry = {**new, "rates": dict(new.get("rates") or {}), "peaks": dict(new["peaks"])}
    entry["provenance"] = dict(new.get("provenance") or {})
    notes = []
    for precision, before in (old.get("peaks") or {}).items():
        now = entry["peaks"].get(precision)
        if now is not None and now >= before:
            continue
        entry["peaks"][precision] = before
        entry["rates"][precision] = (old.get("rates") or {}).get(precision, {})
        entry["provenance"][precision] = (old.get("provenance") or {}).get(
            precision, {"measured_at": old.get("measured_at")}
        )
        if now is not None:
            notes.append(
                f"{precision}: kept the cached {before / 1e9:,.1f} GFLOP/s (measured "
                f"{entry['provenance'][precision].get('measured_at', '?')}), higher than the "
                f"{now / 1e9:,.1f} measured now; --force replaces it"
            )
    return entry, notes


def provenance(entry: dict[str, Any], min_time: float) -> dict[str, Any]:
    """How each precision of a new measurement was taken, kept with its peak."""
    how = {
        "measured_at": entry.get("measured_at"),
        "sizes": entry.get("sizes"),
        "min_time_s": min_time,
        "library": entry.get("blas") or entry.get("framework"),
    }
    return {precision: dict(how) for precision in entry.get("peaks") or {}}


def save(
    entry: dict[str, Any], path: Path | None = None, force: bool = False
) -> tuple[Path, list[str]]:
    """Caches ``entry`` (:func:`merge`d with the machine's cached one); returns the cache
    file and the notes on peaks kept."""
    path = path or cache_path()
    data = _read_cache(path)
    data["version"] = CACHE_VERSION
    kept, notes = merge(data["machines"].get(entry["key"]), entry, force)
    data["machines"][entry["key"]] = kept
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)
    return path, notes


def cached(path: Path | None = None) -> dict[str, Any] | None:
    """This machine's entry in the cache, or None."""
    return cached_entry(machine_key(machine()), path)


def cached_entry(key: str, path: Path | None = None) -> dict[str, Any] | None:
    """The cache's entry under ``key`` (as :func:`save` left it), or None."""
    return _read_cache(path or cache_path())["machines"].get(key)


def lookup(precision: str, path: Path | None = None) -> tuple[float | None, str]:
    """(this CPU's measured peak FLOP/s for ``precision``, its source or why there is none)."""
    entry = cached(path)
    if entry is None:
        return None, NO_PEAK
    value = (entry.get("peaks") or {}).get(precision)
    if not value:
        measured = ", ".join(sorted(entry.get("peaks") or {})) or "none"
        return None, f"no CPU peak for {precision} (measured: {measured})"
    return float(value), (
        f"GEMM peak measured by `python -m harness peak` on {entry.get('measured_at', '?')} "
        f"({entry.get('cores', '?')} cores, {entry.get('blas', '?')})"
    )


def framework_key(tool: str, info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    return f"{machine_key(info)} | framework {tool}"


def framework_cached(tool: str, path: Path | None = None) -> dict[str, Any] | None:
    """This machine's entry for ``tool`` in the cache, or None."""
    return cached_entry(framework_key(tool), path)


def framework_lookup(
    tool: str, precision: str, path: Path | None = None
) -> tuple[float | None, str]:
    """(this machine's peak measured through ``tool``, its source or why there is none)."""
    entry = framework_cached(tool, path)
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


def cpu_peak(
    tool: str | None, precision: str, path: Path | None = None
) -> tuple[float | None, str]:
    """(the CPU's peak FLOP/s for a run of ``tool``, its source or why there is none): the
    peak measured through the tool's own GEMM (``python -m harness peak --tool T``) if
    cached, else NumPy's (``python -m harness peak``)."""
    if tool is not None:
        found = framework_lookup(tool, precision, path)
        if found[0] is not None:
            return found
    return lookup(precision, path)


# SIMD register width in bits, widest first, by the /proc/cpuinfo flag that shows it
_VECTOR_BITS = (("avx512f", 512, "AVX-512"), ("avx", 256, "AVX"), ("sse2", 128, "SSE2"))
_PRECISION_BITS = {"fp32": 32, "fp64": 64}


def cpu_info(text: str | None = None) -> tuple[list[str], list[float]]:
    """(the first CPU's flags, every CPU's current clock in MHz) from /proc/cpuinfo."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return [], []
    lines = text.splitlines()
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    mhz = [float(ln.split(":", 1)[1]) for ln in lines if ln.startswith("cpu MHz")]
    return flags, mhz


def max_clock_hz() -> float | None:
    """The highest maximum (turbo) clock the kernel exposes over the CPUs (cpufreq)."""
    found = []
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            found.append(float(path.read_text()) * 1e3)  # kHz
        except (OSError, ValueError):
            continue
    return max(found) if found else None


def theoretical_peak(
    precision: str = "fp32",
    *,
    cores: int | None = None,
    flags: list[str] | None = None,
    mhz: list[float] | None = None,
    max_hz: float | None = None,
    fma_units: int | None = None,
) -> tuple[float | None, str]:
    """(this CPU's theoretical peak FLOP/s, how it was computed or why there is none):
    cores x clock x SIMD lanes x 2 (a fused multiply-add, or an add and a multiply) x the
    FMA units of a core.

    The lanes come from the widest vector the flags show (AVX-512, AVX, SSE2); the
    clock is the maximum (turbo) clock where the kernel exposes it, else the highest
    current one (stated: the peak is then an underestimate when the CPU boosts); the
    cores are the physical cores available (hyperthreads share their core's units).
    /proc/cpuinfo does not say how many FMA units a core has: 2 on most server and
    desktop cores since Haswell, 1 on some (e.g. AVX-512 on Xeon Bronze and Silver);
    ``$HARNESS_FMA_UNITS`` (or ``fma_units``) overrides the 2 assumed."""
    if precision not in _PRECISION_BITS:
        return None, f"no theoretical peak for {precision}"
    if flags is None:  # this machine's
        flags, mhz = cpu_info()
        max_hz = max_hz or max_clock_hz()
    width = next(((bits, name) for flag, bits, name in _VECTOR_BITS if flag in flags), None)
    if width is None:
        return None, "no SIMD flags in /proc/cpuinfo"
    if max_hz:
        clock, which = max_hz, "maximum clock"
    elif mhz:
        clock, which = max(mhz) * 1e6, "current clock; the maximum is not exposed"
    else:
        return None, "no clock in /proc/cpuinfo or cpufreq"
    if cores is None:
        physical = psutil.cpu_count(logical=False) or available_cores()
        cores = min(available_cores(), physical)
    given = fma_units or int(os.environ.get("HARNESS_FMA_UNITS") or 0)
    units = given or 2
    lanes = width[0] // _PRECISION_BITS[precision]
    per_cycle = lanes * 2 * units
    kind = "FMA" if "fma" in flags or "avx512f" in flags else "add and multiply"
    assumed = "" if given else ", 2 assumed: HARNESS_FMA_UNITS sets it"
    how = (
        f"{cores} cores x {clock / 1e9:.2f} GHz ({which}) x {per_cycle} {precision.upper()} "
        f"FLOPs a cycle ({width[1]}: {lanes} lanes x 2 x {units} {kind} units{assumed})"
    )
    return cores * clock * per_cycle, how


def above_theory_note(measured: float, theory: float | None) -> str | None:
    """The note a measured peak above the theoretical one needs (None when it is not)."""
    if theory is None or measured <= theory:
        return None
    return (
        f"the measured peak ({measured / 1e9:,.1f} GFLOP/s) is above the theoretical one "
        f"({theory / 1e9:,.1f} GFLOP/s): the estimate is low (a clock below the real turbo "
        "clock, as VMs show, or more FMA units than assumed)"
    )
