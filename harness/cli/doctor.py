"""``python -m harness doctor``: is this machine fit to benchmark? One table of checks.

Each check is ``ok``, ``warn`` or ``fail``, with what was found and what to do. The
command exits 0 unless a check fails (no tool can run at all, or the NVIDIA driver is
there but NVML cannot be used). It works without a GPU and without any framework, in
seconds: frameworks are looked up (never imported) in every interpreter the harness
would try, each in a subprocess with a timeout; the machine's settings are read through
harness.machine.hygiene, the same readers that record them with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.cli.commands import SUMMARY
from harness.machine import hygiene
from harness.monitor import contention
from harness.plugins import get_plugin_manager
from harness.run import interpreters

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    """One line of the table."""

    name: str
    status: str  # ok, warn or fail
    found: str
    advice: str = ""


# -- frameworks per interpreter ---------------------------------------------------------

_PROBE = r"""
import importlib.util, json, sys
found, dists = {}, None
for m in json.loads(sys.argv[1]):
    try:
        spec = importlib.util.find_spec(m)
    except Exception:
        spec = None
    if spec is None:
        continue
    version = None
    try:
        import importlib.metadata as md
        if dists is None:
            dists = md.packages_distributions()
        version = md.version((dists.get(m) or [m])[0])
    except Exception:
        pass
    found[m] = version
print(json.dumps({"python": sys.version.split()[0], "found": found}))
"""


def probe(python: str, modules: list[str], timeout: float) -> dict[str, Any]:
    """{"python": version, "found": {module: version or None}} or {"error": why}."""
    try:
        out = subprocess.run(
            [python, "-c", _PROBE, json.dumps(modules)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"did not answer within {timeout:g} s"}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"does not run ({type(exc).__name__})"}


def _short(python: str) -> str:
    try:
        return str(Path(python).relative_to(Path.cwd()))
    except ValueError:
        return python


@dataclass(frozen=True)
class ToolStatus:
    """Where a tool would run: its interpreter and the versions of its modules, or, when
    no interpreter has them, what is wrong with the near misses."""

    python: str | None
    source: str | None
    versions: dict[str, str | None]
    near_misses: tuple[str, ...] = ()


def tool_statuses(
    tools: dict[str, Any],
    timeout: float = 20.0,
    prober: Callable[[str, list[str], float], dict[str, Any]] = probe,
) -> dict[str, ToolStatus]:
    """Every tool's :class:`ToolStatus`, each candidate interpreter probed once, in parallel."""
    modules = sorted({m for b in tools.values() for m in b.requires} | {"harness"})
    found_in = {tool: interpreters.candidates(tool, None) for tool in tools}
    pythons = list(dict.fromkeys(py for pairs in found_in.values() for py, _ in pairs))
    probes: dict[str, dict[str, Any]] = {}
    if pythons:
        with ThreadPoolExecutor(max_workers=min(8, len(pythons))) as pool:
            answers = pool.map(lambda py: prober(py, modules, timeout), pythons)
            probes = dict(zip(pythons, answers, strict=True))
    out = {}
    for tool, info in tools.items():
        out[tool] = ToolStatus(None, None, {})
        partial: list[str] = []  # what is wrong with the near misses
        for python, source in found_in[tool]:
            answer = probes.get(python, {})
            have = answer.get("found", {})
            lacks = [m for m in (*info.requires, "harness") if m not in have]
            if not lacks:
                out[tool] = ToolStatus(python, source, {m: have[m] for m in info.requires})
                break
            if source == interpreters.env_var(tool):  # named on purpose: a run stops here
                problem = answer.get("error") or f"lacks {', '.join(lacks)}"
                partial.append(f"{source}={python} {problem}")
                break
            if "harness" in lacks and len(lacks) == 1:
                partial.append(f"{_short(python)} lacks the harness")
        if out[tool].python is None:
            out[tool] = ToolStatus(None, None, {}, tuple(partial))
    return out


def interpreter_checks(
    timeout: float = 20.0,
    prober: Callable[[str, list[str], float], dict[str, Any]] = probe,
) -> list[Check]:
    """One line per tool: the interpreter the harness would run it in, and its version."""

    pm = get_plugin_manager()
    checks: list[Check] = []
    tools = dict(sorted(pm.backends.items()))
    usable = 0
    for tool, status in tool_statuses(tools, timeout, prober).items():
        info = tools[tool]
        if status.python is None:
            hint = interpreters.install_command(info.install_hint)
            advice = f"`{hint}`, or point {interpreters.env_var(tool)} at a python"
            advice += " that has it"
            found = f"no interpreter has {info.framework} and the harness"
            if status.near_misses:
                found += f" ({'; '.join(status.near_misses)})"
            checks.append(Check(f"tool {tool}", WARN, found, advice))
            continue
        usable += 1
        python, source, have = status.python, status.source, status.versions
        versions = ", ".join(f"{m} {have[m] or '?'}" for m in info.requires)
        checks.append(Check(f"tool {tool}", OK, f"{versions} in {_short(python)} ({source})"))
    for name, error in sorted(pm.load_errors.items()):
        checks.append(Check(f"plugin {name}", WARN, f"failed to load: {error}", "reinstall it"))
    if not usable:
        checks.append(
            Check(
                "frameworks",
                FAIL,
                "no tool can run: no interpreter has any framework",
                "install one (python -m harness list shows each tool's install command), "
                "or run scripts/setup_envs.sh",
            )
        )
    return checks


# -- GPUs --------------------------------------------------------------------------------


def _per_gpu(gpus: list[dict[str, Any]], text: Callable[[dict[str, Any]], str]) -> str:
    """``all 2 GPUs: X`` when every GPU reads the same, else ``GPU 0: X; GPU 1: Y``."""
    parts = [text(g) for g in gpus]
    if len(gpus) > 1 and len(set(parts)) == 1:
        return f"all {len(gpus)} GPUs: {parts[0]}"
    return "; ".join(f"GPU {g['index']}: {p}" for g, p in zip(gpus, parts, strict=True))


def _gpu_check(
    name: str,
    gpus: list[dict[str, Any]],
    bad: list[dict[str, Any]],
    text: Callable[[dict[str, Any]], str],
    advice: str,
    ok_text: Callable[[dict[str, Any]], str] | None = None,
) -> Check:
    """WARN naming the ``bad`` GPUs (``text``) with the advice; with none bad, OK naming
    them all (``ok_text``, or ``text``)."""
    if bad:
        return Check(name, WARN, _per_gpu(bad, text), advice)
    return Check(name, OK, _per_gpu(gpus, ok_text or text))


def gpu_checks(module: ModuleType | None = None) -> list[Check]:
    """NVML, power, energy counter, clocks, power limit, persistence, other processes."""
    report = hygiene.gpus_report(None, module, processes=True)
    if report["reason"]:
        if hygiene.nvidia_device_present():
            return [
                Check(
                    "NVML",
                    FAIL,
                    f"an NVIDIA driver is loaded but {report['reason']}",
                    "check `nvidia-smi`; `pip install nvidia-ml-py` in the harness's environment",
                )
            ]
        return [
            Check(
                "NVML",
                WARN,
                f"no NVIDIA GPU ({report['reason']})",
                "CPU runs only (--num-gpus -1); GPU runs need the NVIDIA driver",
            )
        ]
    broken = [g for g in report["gpus"] if "error" in g]
    gpus = [g for g in report["gpus"] if "error" not in g]
    names = ", ".join(f"{g['index']} {g['name']}" for g in gpus)
    checks = [Check("NVML", OK, f"driver {report['driver']}, {len(gpus)} GPU(s): {names}")]
    for g in broken:
        checks.append(Check(f"GPU {g['index']}", FAIL, g["error"], "check `nvidia-smi -i N`"))
    if not gpus:
        return checks

    no_power = [g for g in gpus if g["power_w"] is None]
    checks.append(
        _gpu_check(
            "GPU power reading",
            gpus,
            no_power,
            lambda g: str(g["power_error"]),
            "power, energy and J/image will be missing for these GPUs",
            lambda g: f"{g['power_w']:g} W now",
        )
    )
    no_counter = [g for g in gpus if not g["energy_counter"]]
    checks.append(
        _gpu_check(
            "GPU energy counter",
            gpus,
            no_counter,
            lambda g: f"not readable ({g['energy_error']})",
            "energy is integrated from the power samples instead (pre-Volta GPUs): "
            "less exact for short phases",
            lambda g: "readable",
        )
    )

    loose = [g for g in gpus if not g["clocks_held"]]

    def clocks(g: dict[str, Any]) -> str:
        app = g["application_clocks_mhz"]
        if g["clocks_held"]:
            held = f"application clocks {app['graphics']} MHz" if app else "held"
            return f"{held} (reasons now: {', '.join(g['clocks_event_reasons'] or []) or 'none'})"
        top = g["max_sm_clock_mhz"]
        return f"not locked: boost decides, up to {top} MHz" if top else "not locked"

    checks.append(
        _gpu_check(
            "GPU clocks",
            gpus,
            loose,
            clocks,
            "lock them for stable figures: `sudo nvidia-smi -lgc F,F` (F: e.g. the base "
            "clock; `-rgc` undoes it). NVML cannot see a lock at the top clock: if you "
            "set one, ignore this",
        )
    )

    def limit(g: dict[str, Any]) -> str:
        if g["power_limit_w"] is None:
            return "not readable"
        default = g["default_power_limit_w"]
        if default is None or default == g["power_limit_w"]:
            return f"{g['power_limit_w']:g} W" + (" (the default)" if default else "")
        return f"{g['power_limit_w']:g} W, default {default:g} W"

    capped = [
        g
        for g in gpus
        if g["power_limit_w"] is None
        or (g["default_power_limit_w"] and g["power_limit_w"] < g["default_power_limit_w"])
    ]
    checks.append(
        _gpu_check(
            "GPU power limit",
            gpus,
            capped,
            limit,
            "a limit below the default caps speed and power (it is recorded with every "
            "run); `sudo nvidia-smi -pl W` sets it",
        )
    )

    def persistence(g: dict[str, Any]) -> str:
        mode = g["persistence_mode"]
        return "not readable" if mode is None else ("on" if mode else "off")

    off = [g for g in gpus if not g["persistence_mode"]]
    checks.append(
        _gpu_check(
            "GPU persistence mode",
            gpus,
            off,
            persistence,
            "`sudo nvidia-smi -pm 1`: otherwise the driver may unload between runs and "
            "each run's start pays for loading it",
        )
    )

    me = os.getpid()
    busy = []
    for g in gpus:
        for p in g.get("processes", []):
            if p["pid"] != me:
                memory = f", {p['memory_mib']:g} MiB" if p.get("memory_mib") is not None else ""
                busy.append(f"GPU {g['index']}: pid {p['pid']} ({p.get('name') or '?'}{memory})")
    checks.append(
        Check("GPU processes", WARN, "; ".join(busy),
              "they share the GPU with a benchmark (runs record them as `contended`): stop "
              "them, or choose other GPUs with --gpu")
        if busy
        else Check("GPU processes", OK, "no other process on the GPUs")
    )  # fmt: skip
    return checks


# -- the CPU -------------------------------------------------------------------------------


def cpu_checks(cpu_root: Path | None = None, powercap_root: Path | None = None) -> list[Check]:
    """CPU frequency governor, turbo/boost, RAPL."""
    cpu_root = cpu_root or hygiene.CPU_ROOT
    settings = hygiene.cpu_settings(cpu_root)
    checks = []
    governors = settings["governors"]
    text = ", ".join(f"{name} on {n} core(s)" for name, n in governors.items())
    if not governors:
        checks.append(
            Check(
                "CPU governor",
                WARN,
                f"not exposed ({cpu_root}/cpu*/cpufreq missing: a VM, or no cpufreq driver)",
                "the host decides the CPU's clock: CPU figures may move with its load",
            )
        )
    elif set(governors) == {"performance"}:
        checks.append(Check("CPU governor", OK, text))
    else:
        checks.append(
            Check(
                "CPU governor",
                WARN,
                text,
                "`sudo cpupower frequency-set -g performance` for stable CPU figures",
            )
        )
    if settings["turbo"] is None:
        checks.append(
            Check(
                "CPU turbo/boost",
                WARN,
                "not exposed (no intel_pstate/no_turbo nor cpufreq/boost)",
                "cannot tell whether the clock varies with temperature and busy cores",
            )
        )
    elif settings["turbo"]:
        source = settings["turbo_source"]
        off = "1" if source.endswith("no_turbo") else "0"
        checks.append(
            Check(
                "CPU turbo/boost",
                WARN,
                f"on ({source})",
                "the clock varies with temperature and busy cores; for the steadiest figures "
                f"`echo {off} | sudo tee {source}`",
            )
        )
    else:
        checks.append(Check("CPU turbo/boost", OK, f"off ({settings['turbo_source']})"))
    rapl = hygiene.rapl_status(powercap_root or hygiene.POWERCAP_ROOT)
    if rapl["readable"]:
        checks.append(Check("RAPL (CPU energy)", OK, "package energy counters readable"))
    elif "permission" in (rapl["reason"] or ""):
        checks.append(
            Check(
                "RAPL (CPU energy)",
                WARN,
                str(rapl["reason"]),
                "run as root, or `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` "
                "(until reboot): otherwise CPU runs record no energy",
            )
        )
    else:
        checks.append(
            Check(
                "RAPL (CPU energy)",
                WARN,
                str(rapl["reason"]),
                "CPU energy is not measured here (a VM, or a CPU without RAPL)",
            )
        )
    return checks


def host_checks(load: contention.Load | None) -> list[Check]:
    """Other processes' CPU time and VM steal over a short window, before measuring."""
    if load is None:
        return [
            Check("CPU load", WARN, "CPU times not readable, or not moving (/proc/stat, psutil)")
        ]
    if load.contended:
        return [
            Check("CPU load", WARN, f"busy: {contention.describe(load.to_dict())}",
                  "a run now would be marked contended (†): stop them, wait, or use "
                  "`run --require-quiet`")
        ]  # fmt: skip
    return [
        Check(
            "CPU load",
            OK,
            f"quiet: others {load.others_cores:g} core(s) of {load.cores}, steal "
            f"{load.steal_pct:g}% over {contention.CHECK_S:g} s",
        )
    ]


# -- the command -----------------------------------------------------------------------------


def run_checks(
    *,
    timeout: float = 20.0,
    nvml_module: ModuleType | None = None,
    cpu_root: Path | None = None,
    powercap_root: Path | None = None,
    prober: Callable[[str, list[str], float], dict[str, Any]] = probe,
    host_load: Callable[[], contention.Load | None] = contention.check,
) -> list[Check]:
    """Every check, in table order. The CPU load is sampled while the others run (the
    probes are this process's children: not "other processes")."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(host_load)
        checks = [
            *interpreter_checks(timeout, prober),
            *gpu_checks(nvml_module),
            *cpu_checks(cpu_root, powercap_root),
        ]
        return [*checks, *host_checks(load.result())]


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def print_table(checks: list[Check], console: Any) -> None:
    style = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    table = Table(title="harness doctor", title_justify="left", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("found")
    table.add_column("what to do")
    for c in checks:
        table.add_row(
            escape(c.name),
            f"[{style[c.status]}]{c.status}[/]",
            escape(c.found),
            escape(c.advice),
        )
    console.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    console.print(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")


def cmd_doctor(args: argparse.Namespace, console: Any) -> int:
    checks = run_checks(timeout=args.timeout)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        out = Console() if sys.stdout.isatty() else Console(width=160)
        print_table(checks, out)
    return exit_code(checks)


def add_command(sub: Any, handlers: dict[str, Any]) -> None:
    p = sub.add_parser(
        "doctor",
        help=SUMMARY["doctor"],
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds each interpreter may take to answer (default 20)",
    )
    handlers["doctor"] = cmd_doctor
