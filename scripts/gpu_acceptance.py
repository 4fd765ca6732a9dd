#!/usr/bin/env python3
"""GPU acceptance: run the harness once, for real, on a machine with NVIDIA GPUs.

    python3 scripts/gpu_acceptance.py                  # install, then check everything
    python3 scripts/gpu_acceptance.py --dry-run        # print the plan, run nothing
    python3 scripts/gpu_acceptance.py --skip-install   # environments already set up
    python3 scripts/gpu_acceptance.py --python-for mxnet=/opt/mx/bin/python

Needs only Python 3.10+ and the NVIDIA driver. Unless told ``--skip-install``, it
creates one virtual environment per framework under ``.venvs/<tool>`` with the GPU
builds (through scripts/setup_envs.sh with ``HARNESS_GPU=1``; MXNet needs numpy<1.24,
so every framework gets its own) and this checkout installed in each. Then:

1. each framework sees the GPU (a small matrix product on GPU 0 in its interpreter);
2. ``python -m harness doctor`` exits 0;
3. every backend trains LeNet/MNIST and ResNet-50/CIFAR-10 (synthetic data) on 1 GPU,
   then on 2 if present, in fp32, fp16 and bf16, short and bounded in time, all into
   one ``--output-dir``/results.sqlite; a precision the backend or the GPU cannot do
   is ``refused`` with the reason, not a failure;
4. every stored run is checked: status ok, images/sec, NVML power, energy (from the
   GPU's counter where it has one, checked against the integral of sampled power),
   idle power and the energy above it, energy per GPU, and memory present and plausible;
5. GPU memory is compared across frameworks (one table per model, batch and precision);
6. ``python -m harness verify --gpu`` passes (when this harness has ``verify``);
7. ``python -m harness report`` reads the store.

It prints one pass/fail table and the report command, and exits 0 only when nothing
failed. The plan (steps, commands, expectations) is data made by pure functions
(:func:`build_plan`), and the checks of a stored run are pure functions over
``harness.store.schema.RunResult`` (:func:`check_run`): tests/test_gpu_acceptance.py
runs them without a GPU. This file imports only the standard library at module level;
the part that reads results runs in an interpreter that has the harness (the script
starts itself again in one of the new environments when the one running it has none).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the harness is imported only where it is installed
    from harness.store.schema import RunResult

REPO = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = "scripts/setup_envs.sh"

# The frameworks in the order they run; others found in backends/ follow, sorted.
TOOL_ORDER = ("pytorch", "tensorflow", "jax", "mxnet", "onnxruntime")
# GPU packages for backends scripts/setup_envs.sh does not know; onnxruntime-gpu's extras
# bring CUDA and cuDNN as NVIDIA's pip wheels (it bundles neither).
EXTRA_PACKAGES = {"onnxruntime": ("onnx", "onnxruntime-gpu[cuda,cudnn]")}
# Tools whose GPU build may not exist for this Python or GPU: failing to install one or
# to see the GPU with it skips it, with the reason, instead of failing the acceptance.
OPTIONAL_TOOLS = {"mxnet": "MXNet's CUDA builds (mxnet-cu112) stopped at 1.9.1 and need numpy<1.24"}
WORKLOADS = (("lenet", "mnist"), ("resnet50", "cifar10"))
PRECISIONS = ("fp32", "fp16", "bf16")
TASK_NAMES = {"training": "train", "inference": "inference"}  # --task -> BackendInfo.tasks
# The oldest GPU architecture that does each mixed precision.
MIN_COMPUTE_CAPABILITY = {"fp16": (5, 3), "bf16": (8, 0)}
TAG = "acceptance"

# Plausible figures of a stored GPU run.
MAX_POWER_W_PER_GPU = 1500.0  # the largest board power of any NVIDIA GPU, with margin
ENERGY_VS_POWER = (0.5, 2.0)  # timed energy / (mean power x timed seconds), per repeat
MIN_TIMED_SAMPLES = 2  # monitor samples inside the timed phase, per repeat

PASS, FAIL, REFUSED, SKIPPED = "pass", "FAIL", "refused", "skipped"


# -- facts and settings ------------------------------------------------------------------


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_mib: int | None = None
    compute_capability: tuple[int, int] | None = None

    def describe(self) -> str:
        bits = []
        if self.compute_capability:
            bits.append("cc {}.{}".format(*self.compute_capability))
        if self.memory_mib:
            bits.append(f"{self.memory_mib} MiB")
        return f"{self.index} {self.name}" + (f" ({', '.join(bits)})" if bits else "")


@dataclass(frozen=True)
class Features:
    """What this checkout of the harness offers."""

    backends: tuple[str, ...]  # tools with a folder in backends/
    parity_tools: tuple[str, ...]  # those with a network translation `verify` checks
    setup_tools: tuple[str, ...]  # tools scripts/setup_envs.sh installs
    verify: bool  # `python -m harness verify` exists
    inference: bool  # `python -m harness run --task inference` exists
    source: str = "help"  # how it was found out: the CLI's --help, or the source files
    tasks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (tool, its tasks) where not train

    def tasks_of(self, tool: str) -> tuple[str, ...]:
        """BackendInfo.tasks: "train" and/or "inference" ("train" unless told)."""
        return dict(self.tasks).get(tool, ("train",))


@dataclass(frozen=True)
class Machine:
    """What was found on this machine, the plan's other input."""

    gpus: tuple[GpuInfo, ...]
    gpu_reason: str | None = None  # why no GPU is listed, when none is
    python: str = sys.executable  # the interpreter running this script
    python_version: tuple[int, int] = sys.version_info[:2]
    venv_ok: bool = True  # `python -m venv` can create an environment with pip
    venv_reason: str | None = None
    existing_envs: frozenset[str] = frozenset()  # tools with .venvs/<tool>/bin/python
    interpreters: tuple[tuple[str, str], ...] = ()  # (tool, python) known before running
    missing: tuple[tuple[str, str], ...] = ()  # (tool, why no interpreter has it)
    harness_python: str | None = None  # the interpreter that runs `python -m harness`


@dataclass(frozen=True)
class Settings:
    tools: tuple[str, ...]
    output_dir: Path
    workloads: tuple[tuple[str, str], ...] = WORKLOADS
    precisions: tuple[str, ...] = PRECISIONS
    max_gpus: int = 2
    warmup_steps: int = 10
    steps: int | None = None  # fixed timed steps; None: bounded by min_time/max_time
    min_time: float = 3.0
    max_time: float = 5.0
    repeats: int | None = None  # None: 2 in fp32 (statistics over repeats), 1 otherwise
    timeout: float = 300.0  # per repeat
    idle_baseline: float = 1.0
    skip_install: bool = False
    reinstall: bool = False
    python_for: tuple[tuple[str, str], ...] = ()
    session: str = "acceptance"


@dataclass(frozen=True)
class RunExpectation:
    """What one run must be; what :func:`check_run` checks a stored result against."""

    tool: str
    model: str
    dataset: str
    gpus: tuple[int, ...]
    precision: str
    task: str = "training"

    @property
    def num_gpus(self) -> int:
        return len(self.gpus)


@dataclass(frozen=True)
class Step:
    """One line of the plan and of the table."""

    key: str
    kind: str  # preflight, install, probe, doctor, run, verify, memory, report
    title: str
    commands: tuple[tuple[str, ...], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # added to the environment of every command
    expect: str = ""
    tool: str | None = None
    optional: bool = False  # a failure skips it (and its tool) with the reason
    skip: str | None = None  # decided by the plan: not run, for this reason
    refuse: str | None = None  # decided by the plan: refused, for this reason
    fail: str | None = None  # decided by the plan: failed, for this reason
    refusable: bool = False  # a refusal by the harness (exit 2) is `refused`, not FAIL
    run: RunExpectation | None = None
    timeout: float = 600.0


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    notes: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # for every harness command
    output_dir: Path
    harness_python: str

    @property
    def store(self) -> Path:
        return self.output_dir / "results.sqlite"


@dataclass
class Outcome:
    key: str
    title: str
    status: str  # pass, FAIL, refused, skipped
    detail: str = ""
    seconds: float = 0.0
    run_id: str | None = None
    log: str | None = None


@dataclass(frozen=True)
class Verdict:
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


# -- the plan: pure functions ------------------------------------------------------------


def env_var(tool: str) -> str:
    """HARNESS_PYTHON_<TOOL>, as harness.run.interpreters spells it."""
    return "HARNESS_PYTHON_" + "".join(c if c.isalnum() else "_" for c in tool.upper())


def venv_python(tool: str, repo: Path = REPO) -> str:
    return str(repo / ".venvs" / tool / "bin" / "python")


def default_tools(features: Features) -> tuple[str, ...]:
    """The backends of this checkout that have a GPU install recipe, in TOOL_ORDER."""
    known = set(features.setup_tools) | set(EXTRA_PACKAGES)
    found = [t for t in features.backends if t in known]
    return tuple(sorted(found, key=lambda t: (TOOL_ORDER.index(t) if t in TOOL_ORDER else 99, t)))


def repeats_for(settings: Settings, precision: str) -> int:
    if settings.repeats is not None:
        return settings.repeats
    return 2 if precision == "fp32" else 1


def install_commands(
    tool: str, features: Features, python: str, repo: Path = REPO
) -> tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, str], ...]] | None:
    """The commands (and environment) that set up .venvs/<tool> with the GPU build."""
    if tool in features.setup_tools:
        return ((("bash", SETUP_SCRIPT, tool),), (("HARNESS_GPU", "1"), ("PYTHON", python)))
    if tool in EXTRA_PACKAGES:
        pip = str(repo / ".venvs" / tool / "bin" / "pip")
        return (
            (
                (python, "-m", "venv", f".venvs/{tool}"),
                (pip, "install", "-q", *EXTRA_PACKAGES[tool], "pillow"),
                (pip, "install", "-q", "-e", "."),
            ),
            (),
        )
    return None


def refusal_for_gpu(precision: str, gpus: Sequence[GpuInfo]) -> str | None:
    """Why these GPUs cannot do ``precision`` (None: they can, or nobody knows)."""
    need = MIN_COMPUTE_CAPABILITY.get(precision)
    if need is None:
        return None
    for gpu in gpus:
        cc = gpu.compute_capability
        if cc is not None and tuple(cc) < need:
            return (
                f"{precision} needs compute capability {need[0]}.{need[1]} or newer; "
                f"GPU {gpu.index} ({gpu.name}) is {cc[0]}.{cc[1]}"
            )
    return None


def run_command(harness_python: str, settings: Settings, expect: RunExpectation) -> tuple[str, ...]:
    """``python -m harness run ...`` for one run of the acceptance."""
    length = (
        ("--steps", str(settings.steps))
        if settings.steps is not None
        else ("--min-time", f"{settings.min_time:g}", "--max-time", f"{settings.max_time:g}")
    )
    task = ("--task", expect.task) if expect.task != "training" else ()
    return (
        harness_python, "-m", "harness", "run",
        "--tool", expect.tool, "--model", expect.model, "--dataset", expect.dataset,
        *task,
        "--num-gpus", str(expect.num_gpus), "--gpu", ",".join(map(str, expect.gpus)),
        "--precision", expect.precision, "--synthetic",
        "--warmup-steps", str(settings.warmup_steps), *length,
        "--repeats", str(repeats_for(settings, expect.precision)),
        "--timeout", f"{settings.timeout:g}",
        "--idle-baseline", f"{settings.idle_baseline:g}",
        "--output-dir", str(settings.output_dir),
        "--tag", f"{TAG}={settings.session}", "--json",
    )  # fmt: skip


def verify_command(harness_python: str, tools: Iterable[str], models: Iterable[str]):
    return (
        harness_python, "-m", "harness", "verify", "--gpu",
        "--tools", ",".join(tools), "--models", ",".join(dict.fromkeys(models)),
    )  # fmt: skip


def report_command(harness_python: str, store: Path, *more: str) -> tuple[str, ...]:
    return (harness_python, "-m", "harness", "report", "--store", str(store), *more)


def _gpus_text(gpus: Sequence[GpuInfo]) -> str:
    return f"{len(gpus)} GPU(s): " + "; ".join(g.describe() for g in gpus) if gpus else "no GPU"


def build_plan(settings: Settings, features: Features, machine: Machine) -> Plan:
    """Every step of the acceptance, its commands and what it must give: pure data."""
    harness_python = machine.harness_python or machine.python
    python_for = dict(settings.python_for)
    interpreters = dict(machine.interpreters)
    missing = dict(machine.missing)
    notes: list[str] = []
    steps: list[Step] = []

    # preflight: the facts everything else needs
    problems = []
    if machine.python_version < (3, 10):
        problems.append(
            f"Python {machine.python_version[0]}.{machine.python_version[1]} "
            "is too old: the harness needs 3.10+"
        )
    if not machine.gpus:
        problems.append(f"no GPU ({machine.gpu_reason or 'none found'})")
    installs = [t for t in settings.tools if t not in python_for and not settings.skip_install]
    if installs and not machine.venv_ok:
        problems.append(f"cannot create virtual environments: {machine.venv_reason}")
    found = (
        f"Python {machine.python_version[0]}.{machine.python_version[1]}, "
        f"{_gpus_text(machine.gpus)}"
    )
    steps.append(
        Step(
            "preflight",
            "preflight",
            "preflight: Python, GPUs",
            expect=found,
            fail="; ".join(problems) or None,
        )
    )

    # install
    if settings.skip_install:
        notes.append(
            "install: skipped (--skip-install): the interpreters are found as runs find them"
        )
    for tool in settings.tools:
        if settings.skip_install:
            break
        optional = tool in OPTIONAL_TOOLS
        if tool in python_for:
            steps.append(
                Step(
                    f"install/{tool}",
                    "install",
                    f"install {tool}",
                    tool=tool,
                    skip=f"--python-for {tool}={python_for[tool]}",
                )
            )
            continue
        if tool in machine.existing_envs and not settings.reinstall:
            steps.append(
                Step(
                    f"install/{tool}",
                    "install",
                    f"install {tool}",
                    tool=tool,
                    skip=f"already set up: .venvs/{tool} (--reinstall redoes it)",
                )
            )
            continue
        recipe = install_commands(tool, features, machine.python)
        if recipe is None:
            steps.append(
                Step(
                    f"install/{tool}",
                    "install",
                    f"install {tool}",
                    tool=tool,
                    fail=f"no GPU install recipe for {tool}: give --python-for {tool}=PATH",
                )
            )
            continue
        commands, env = recipe
        steps.append(
            Step(
                f"install/{tool}",
                "install",
                f"install {tool}",
                commands=commands,
                env=env,
                tool=tool,
                optional=optional,
                expect=f".venvs/{tool} with the GPU build and this checkout"
                + (f" (optional: {OPTIONAL_TOOLS[tool]})" if optional else ""),
                timeout=3600,
            )
        )

    # each framework sees a GPU
    for tool in settings.tools:
        python = interpreters.get(tool)
        if tool not in PROBES:
            continue
        base = Step(
            f"probe/{tool}",
            "probe",
            f"{tool} sees the GPU",
            tool=tool,
            optional=tool in OPTIONAL_TOOLS,
            timeout=300,
        )
        if python is None:
            reason = missing.get(tool, "no interpreter has it")
            steps.append(
                replace(base, skip=reason) if base.optional else replace(base, fail=reason)
            )
            continue
        steps.append(
            replace(
                base,
                commands=((python, "-c", PROBE_PRELUDE + PROBES[tool]),),
                env=(("XLA_PYTHON_CLIENT_PREALLOCATE", "false"), ("TF_CPP_MIN_LOG_LEVEL", "2")),
                expect="the framework lists a GPU and computes on GPU 0",
            )
        )

    steps.append(
        Step(
            "doctor",
            "doctor",
            "harness doctor",
            commands=((harness_python, "-m", "harness", "doctor", "--json"),),
            expect="exit 0 (no check fails)",
            timeout=300,
        )
    )

    # the runs
    tasks = ["training"] + (["inference"] if features.inference else [])
    if not features.inference:
        steps.append(
            Step(
                "runs/inference",
                "run",
                "inference runs",
                skip="this harness has no `--task inference` (`python -m harness run --help`)",
            )
        )
    for tool in settings.tools:
        if not any(TASK_NAMES[t] in features.tasks_of(tool) for t in tasks):
            only = ", ".join(features.tasks_of(tool))
            steps.append(
                Step(
                    f"runs/{tool}",
                    "run",
                    f"runs of {tool}",
                    tool=tool,
                    skip=f"{tool} does {only} only, which this harness cannot run yet "
                    "(no `--task inference` in `python -m harness run --help`)",
                )
            )
    counts = [n for n in (1, 2) if n <= settings.max_gpus]
    for count in counts:
        if len(machine.gpus) < count:
            if machine.gpus:  # with none, the preflight fails already
                steps.append(
                    Step(
                        f"runs/{count}gpu",
                        "run",
                        f"runs on {count} GPUs",
                        skip=f"this machine has {len(machine.gpus)} GPU(s)",
                    )
                )
            continue
        chosen = machine.gpus[:count]
        for task in tasks:
            if task == "inference" and count > 1:  # inference runs on one device
                continue
            for tool in settings.tools:
                if TASK_NAMES[task] not in features.tasks_of(tool):
                    continue
                for model, dataset in settings.workloads:
                    for precision in settings.precisions:
                        expect = RunExpectation(
                            tool, model, dataset, tuple(g.index for g in chosen), precision, task
                        )
                        verb = "train" if task == "training" else "infer"
                        gpus = f"{count} GPU" + ("s" if count > 1 else "")
                        step = Step(
                            f"run/{task}/{count}gpu/{tool}/{model}-{dataset}/{precision}",
                            "run",
                            f"{verb} {tool} {model}/{dataset} {gpus} {precision}",
                            commands=(run_command(harness_python, settings, expect),),
                            tool=tool,
                            run=expect,
                            refusable=precision != "fp32",
                            expect="status ok; images/sec, NVML power, energy and memory "
                            "stored and plausible"
                            + ("; or refused by the harness" if precision != "fp32" else ""),
                            timeout=(settings.timeout + 60) * repeats_for(settings, precision)
                            + 120,
                        )
                        reason = refusal_for_gpu(precision, chosen)
                        steps.append(replace(step, commands=(), refuse=reason) if reason else step)

    steps.append(
        Step("memory", "memory", "GPU memory across frameworks",
             expect="every ok run has NVML memory; one table per model, batch and precision")
    )  # fmt: skip

    checked = [t for t in settings.tools if t in features.parity_tools]
    if not features.verify:
        steps.append(
            Step(
                "verify",
                "verify",
                "harness verify --gpu",
                skip="this harness has no `verify` command",
            )
        )
    elif not checked:
        steps.append(
            Step(
                "verify",
                "verify",
                "harness verify --gpu",
                skip="no tool with a network translation to verify among: "
                + ", ".join(settings.tools),
            )
        )
    else:
        models = [m for m, _ in settings.workloads]
        steps.append(
            Step(
                "verify",
                "verify",
                "harness verify --gpu",
                commands=(verify_command(harness_python, checked, models),),
                expect="exit 0: every tool's forward pass and training step match the reference",
                timeout=1800,
            )
        )

    report_md = settings.output_dir / "report.md"
    steps.append(
        Step(
            "report",
            "report",
            "harness report reads the store",
            commands=(
                report_command(
                    harness_python,
                    settings.output_dir / "results.sqlite",
                    "--format",
                    "markdown",
                    "-o",
                    str(report_md),
                ),
            ),
            expect=f"exit 0 and {report_md.name} written",
            timeout=300,
        )
    )

    env = {env_var(t): p for t, p in interpreters.items()}
    return Plan(
        tuple(steps), tuple(notes), tuple(sorted(env.items())), settings.output_dir, harness_python
    )


def format_command(command: Sequence[str], env: Iterable[tuple[str, str]] = ()) -> str:
    shown = list(command)
    if len(shown) == 3 and shown[1] == "-c" and "\n" in shown[2]:  # a probe's program
        shown[2] = f"<{shown[2].count(chr(10)) + 1}-line probe: PROBES in {Path(__file__).name}>"
    text = shlex.join(shown)
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env)
    return f"{prefix} {text}" if prefix else text


def describe_plan(plan: Plan, features: Features, machine: Machine) -> str:
    """The plan as text: the facts, every step with its commands and expectation."""
    lines = [
        f"GPU acceptance plan ({len(plan.steps)} steps)",
        f"  machine: {_gpus_text(machine.gpus)}",
        f"  python: {machine.python} ({machine.python_version[0]}.{machine.python_version[1]})",
        f"  harness runs in: {plan.harness_python}",
        f"  harness offers: verify {'yes' if features.verify else 'no'}, inference "
        f"{'yes' if features.inference else 'no'} (from {features.source})",
        f"  results: {plan.store}",
    ]
    for key, value in plan.env:
        lines.append(f"  env: {key}={value}")
    runs = [s for s in plan.steps if s.kind == "run" and s.run]
    lines.append(
        f"  runs: {sum(1 for s in runs if not (s.refuse or s.skip))} to run, "
        f"{sum(1 for s in runs if s.refuse)} refused by the plan"
    )
    for number, step in enumerate(plan.steps, 1):
        verdict = (
            f"  -> skipped: {step.skip}" if step.skip
            else f"  -> refused: {step.refuse}" if step.refuse
            else f"  -> FAIL: {step.fail}" if step.fail
            else ""
        )  # fmt: skip
        lines.append(f"{number:3d}. {step.title}{verdict}")
        for command in step.commands:
            lines.append(f"       $ {format_command(command, step.env)}")
        if step.expect and not (step.skip or step.refuse or step.fail):
            lines.append(
                f"       {'found' if step.kind == 'preflight' else 'expect'}: {step.expect}"
            )
    for note in plan.notes:
        lines.append(f"  note: {note}")
    lines.append(f"  then: {shlex.join(report_command(plan.harness_python, plan.store))}")
    return "\n".join(lines)


# -- checks of a stored run: pure functions over RunResult ---------------------------------


def _mean(stat: Any) -> float | None:
    return None if stat is None else stat.mean


def _fmt(value: float | None, unit: str, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f} {unit}".strip()


def _gpu_memory_total(result: RunResult) -> float | None:
    sizes = [g.get("memory_mib") for g in result.environment.get("gpus") or []]
    return float(sum(sizes)) if sizes and all(isinstance(s, (int, float)) for s in sizes) else None


def _energy_counters(result: RunResult) -> list[bool | None]:
    hygiene = result.environment.get("hygiene") or {}
    return [g.get("energy_counter") for g in hygiene.get("gpus") or []]


def check_run(result: RunResult, expect: RunExpectation) -> Verdict:
    """Is ``result`` (a stored RunResult) what the acceptance needs of this run?

    Failures: another run than expected, not ok, no images/sec, NVML power, energy or
    memory empty or implausible, energy integrated from power where the GPUs have an
    energy counter, energy that disagrees with power x time, a counter without the power
    integral to check it, an implausible idle power or no dynamic energy above it, GPUs'
    energies that do not add up to the total. Notes: contention, throttling, a counter and
    power integral further apart than the monitor's threshold."""
    failures: list[str] = []
    notes: list[str] = []
    spec = result.spec
    want = (expect.tool, expect.model, expect.dataset, expect.num_gpus, expect.precision)
    got = (spec.tool, spec.model, spec.dataset, spec.num_gpus, spec.precision)
    if got != want:
        failures.append(f"stored run is {got}, expected {want}")
    used = tuple(g.get("index") for g in result.environment.get("gpus") or [])
    if used and used != expect.gpus:
        failures.append(f"ran on GPU(s) {used}, expected {expect.gpus}")
    summary = result.summary
    if summary.status != "ok":
        cause = (summary.causes or ["no cause recorded"])[0]
        failures.append(
            f"status {summary.status} ({summary.repeats_ok}/{summary.repeats} ok): {cause}"
        )
        return Verdict(tuple(failures), tuple(notes))
    ips = summary.images_per_sec.mean
    if not ips or ips <= 0:
        failures.append("no images/sec")
    gpus = max(1, expect.num_gpus)
    gpu_notes = [n for n in summary.resource_notes if n.startswith("GPU figures")]
    why = f" ({gpu_notes[0]})" if gpu_notes else ""

    power = _mean(summary.gpu_power_w)
    if power is None:
        failures.append("no GPU power: summary.gpu_power_w is empty" + why)
    elif not 0 < power <= MAX_POWER_W_PER_GPU * gpus:
        failures.append(f"implausible GPU power {power:.1f} W for {gpus} GPU(s)")

    energy = _mean(summary.energy_j)
    if energy is None:
        failures.append("no energy: summary.energy_j is empty" + why)
    elif energy <= 0:
        failures.append(f"implausible energy {energy:.3f} J")

    idle = _mean(summary.idle_power_w)
    if idle is not None and not 0 < idle <= MAX_POWER_W_PER_GPU * gpus:
        failures.append(f"implausible idle power {idle:.1f} W for {gpus} GPU(s)")
    if idle is not None and energy is not None and _mean(summary.energy_dynamic_j) is None:
        failures.append("no dynamic energy, though an idle power was measured")

    memory = _mean(summary.gpu_memory_mib)
    total = _gpu_memory_total(result)
    if memory is None:
        failures.append("no GPU memory: summary.gpu_memory_mib is empty" + why)
    elif memory <= 0:
        failures.append(f"implausible GPU memory {memory:.0f} MiB")
    elif total is not None and memory > total:
        failures.append(f"GPU memory {memory:.0f} MiB exceeds the GPUs' {total:.0f} MiB")

    counters = _energy_counters(result)
    want_counter = bool(counters) and all(c is True for c in counters)
    for record in result.repeats:
        if record.status != "ok" or record.resources is None:
            continue
        timed = ((record.resources.gpu or {}).get("phases") or {}).get("timed") or {}
        label = f"repeat {record.repeat}"
        source = timed.get("energy_source")
        if want_counter and source != "nvml_counter":
            failures.append(
                f"{label}: energy from {source or 'nothing'}, though the GPUs "
                "have NVML's energy counter"
            )
        samples = timed.get("samples")
        if isinstance(samples, int) and samples < MIN_TIMED_SAMPLES:
            failures.append(f"{label}: {samples} monitor sample(s) in the timed phase")
        merged = record.resources.timed
        seconds = timed.get("duration_s")
        if merged is not None and merged.energy_j and merged.gpu_power_w and seconds:
            ratio = merged.energy_j / (merged.gpu_power_w * seconds)
            if not ENERGY_VS_POWER[0] <= ratio <= ENERGY_VS_POWER[1]:
                failures.append(
                    f"{label}: energy {merged.energy_j:.1f} J is {ratio:.2f}x mean power "
                    f"{merged.gpu_power_w:.1f} W x {seconds:.2f} s"
                )
        if merged is not None and merged.throttled:
            notes.append(f"{label}: GPU clocks throttled (power/thermal)")
        if merged is not None:
            failures += _energy_checks(label, source, merged, expect.num_gpus)
            if merged.energy_disagreement_flagged and merged.energy_disagreement is not None:
                notes.append(
                    f"{label}: GPU energy counter and power integral differ by "
                    f"{merged.energy_disagreement:.1%}"
                )
    for other in result.contended:
        notes.append(
            f"GPU {other.get('gpu')} also used by pid {other.get('pid')} "
            f"({other.get('name') or '?'})"
        )
    return Verdict(tuple(failures), tuple(dict.fromkeys(notes)))


def _energy_checks(label: str, source: Any, merged: Any, num_gpus: int) -> list[str]:
    """A repeat's energy: the counter checked against the power integral, and with several
    GPUs each one's energy, adding up to the total."""
    failures = []
    if source == "nvml_counter" and merged.energy_disagreement is None:
        failures.append(f"{label}: no power integral to check NVML's energy counter against")
    if num_gpus > 1 and merged.energy_j is not None:
        per_device = merged.energy_per_device_j or {}
        if len(per_device) != num_gpus:
            failures.append(f"{label}: energy of {len(per_device)} GPU(s), expected {num_gpus}")
        # each figure is stored to 6 significant digits: sums agree to about 1e-5
        elif abs(sum(per_device.values()) - merged.energy_j) > 1e-4 * max(1.0, merged.energy_j):
            failures.append(
                f"{label}: the GPUs' energies add up to {sum(per_device.values()):.1f} J, "
                f"not {merged.energy_j:.1f} J"
            )
    return failures


def _with_ci(stat: Any, unit: str, digits: int) -> str:
    """``0.0123 J ± 0.0004`` (the 95% CI over the repeats where there is one)."""
    text = _fmt(_mean(stat), unit, digits)
    ci = None if stat is None else stat.ci95
    return text if ci is None or stat.mean is None else f"{text} ± {ci:,.{digits}f}"


def run_figures(result: RunResult) -> str:
    """images/sec, W, J and MiB of a stored run, for the table; then, where measured, J per
    image total and above idle with their 95% CI, the idle power and the counter's gap."""
    s = result.summary
    figures = [
        _fmt(s.images_per_sec.mean, "img/s"),
        _fmt(_mean(s.gpu_power_w), "W"),
        _fmt(_mean(s.energy_j), "J"),
        _fmt(_mean(s.gpu_memory_mib), "MiB"),
    ]
    if _mean(s.energy_dynamic_j) is not None:
        figures += [
            f"{_with_ci(s.joules_per_image, 'J/image', 4)} "
            f"(above idle {_with_ci(s.joules_per_image_dynamic, 'J/image', 4)})",
            f"idle {_fmt(_mean(s.idle_power_w), 'W')}",
        ]
    gap = _mean(s.energy_disagreement)
    if gap is not None:
        figures.append(f"counter vs power integral {gap:.1%}")
    return ", ".join(figures)


def memory_table(results: Iterable[RunResult]) -> tuple[list[str], list[list[str]]]:
    """GPU memory per tool for the same (model, dataset, GPUs, precision, batch): NVML's
    device-wide figure over the timed phase, the framework allocator's peak in brackets.
    Only ok runs, in the order given; the last run of a configuration and tool counts."""
    cells: dict[tuple, dict[str, str]] = {}
    tools: list[str] = []
    for r in results:
        if r.summary.status != "ok":
            continue
        s = r.spec
        key = (s.model, s.dataset, r.hardware, s.precision, r.global_batch)
        nvml = _mean(r.summary.gpu_memory_mib)
        framework = _mean(r.summary.framework_memory_mib)
        text = _fmt(nvml, "")
        if framework is not None:
            text += f" ({framework:,.0f})"
        cells.setdefault(key, {})[s.tool] = text
        if s.tool not in tools:
            tools.append(s.tool)
    tools.sort(key=lambda t: (TOOL_ORDER.index(t) if t in TOOL_ORDER else 99, t))
    header = ["model/dataset", "GPUs", "precision", "batch", *tools]
    rows = [
        [f"{k[0]}/{k[1]}", k[2], k[3], str(k[4]), *(by.get(t, "-") for t in tools)]
        for k, by in cells.items()  # in the order the runs were made
    ]
    return header, rows


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def outcome_table(outcomes: Sequence[Outcome]) -> str:
    rows = [
        [str(i), o.title, o.status, f"{o.seconds:.0f} s", o.detail.replace("\n", " ")]
        for i, o in enumerate(outcomes, 1)
    ]
    return format_rows(["#", "step", "result", "time", "detail"], rows)


def passed(outcomes: Sequence[Outcome]) -> bool:
    """Nothing failed, and at least one run passed."""
    return not any(o.status == FAIL for o in outcomes) and any(
        o.status == PASS and o.key.startswith("run/") for o in outcomes
    )


def summary_line(outcomes: Sequence[Outcome], seconds: float) -> str:
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in (PASS, REFUSED, SKIPPED, FAIL)}
    minutes, rest = divmod(int(seconds), 60)
    verdict = "ACCEPTED" if passed(outcomes) else "NOT ACCEPTED"
    return (
        f"{verdict}: {counts[PASS]} pass, {counts[REFUSED]} refused, {counts[SKIPPED]} skipped, "
        f"{counts[FAIL]} FAIL in {minutes} min {rest} s"
    )


# -- probes: does each framework see the GPU? ----------------------------------------------

PROBE_PRELUDE = "import json, sys\nok, found = False, ''\ntry:\n"
PROBE_END = (
    "\nexcept Exception as exc:\n"
    "    ok, found = False, f'{type(exc).__name__}: {exc}'.splitlines()[0][:300]\n"
    "print(json.dumps({'ok': bool(ok), 'found': found}))\n"
)


def _probe(body: str) -> str:
    return "\n".join("    " + line for line in body.strip().splitlines()) + PROBE_END


PROBES = {
    "pytorch": _probe("""
import torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
found = f"torch {torch.__version__} (CUDA {torch.version.cuda}): {n} GPU(s)"
if n:
    x = torch.ones(256, 256, device="cuda")
    ok = float((x @ x).sum()) == 256.0**3
    found += " " + torch.cuda.get_device_name(0)
"""),
    "tensorflow": _probe("""
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
for g in gpus:
    tf.config.experimental.set_memory_growth(g, True)
found = f"tensorflow {tf.__version__}: {len(gpus)} GPU(s)"
if gpus:
    with tf.device("/GPU:0"):
        x = tf.ones((256, 256))
        ok = float(tf.reduce_sum(tf.matmul(x, x))) == 256.0**3
"""),
    "jax": _probe("""
import jax, jax.numpy as jnp
try:
    gpus = jax.devices("gpu")
except RuntimeError:
    gpus = []
found = f"jax {jax.__version__}: {len(gpus)} GPU(s)"
if gpus:
    x = jax.device_put(jnp.ones((256, 256)), gpus[0])
    ok = float((x @ x).sum()) == 256.0**3
    found += " " + str(gpus[0].device_kind)
"""),
    "mxnet": _probe("""
import mxnet as mx
n = mx.context.num_gpus()
found = f"mxnet {mx.__version__}: {n} GPU(s)"
if n:
    x = mx.nd.ones((256, 256), ctx=mx.gpu(0))
    ok = float(mx.nd.dot(x, x).sum().asscalar()) == 256.0**3
"""),
    # A session on the CUDA provider, as the harness makes one (no preload_dlls): a
    # provider whose CUDA/cuDNN libraries do not load falls back to the CPU, silently.
    "onnxruntime": _probe("""
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 256])
graph = helper.make_graph([helper.make_node("MatMul", ["x", "x"], ["y"])], "probe", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
providers = ort.get_available_providers()
found = f"onnxruntime {ort.__version__}: {', '.join(providers)}"
if "CUDAExecutionProvider" in providers:
    session = ort.InferenceSession(
        model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    used = session.get_providers()[0]
    found += f"; a session runs on {used}"
    if used == "CUDAExecutionProvider":
        out = session.run(None, {"x": np.ones((256, 256), np.float32)})[0]
        ok = float(out.sum()) == 256.0**3
    else:
        found += " (CUDA/cuDNN libraries not loaded: onnxruntime.preload_dlls() loads the pip ones)"
"""),
}


# -- facts: reading this checkout and this machine -----------------------------------------


def detect_features(harness_python: str | None, repo: Path = REPO) -> Features:
    """The checkout's backends and the CLI's commands (from --help when an interpreter with
    the harness exists, else from the source files)."""
    backends_dir = repo / "backends"
    backends = tuple(
        sorted(p.name for p in backends_dir.iterdir() if (p / "__init__.py").is_file())
    ) if backends_dir.is_dir() else ()  # fmt: skip
    parity = tuple(t for t in backends if (backends_dir / t / "network.py").is_file())
    setup = ()
    script = repo / SETUP_SCRIPT
    if script.is_file():
        text = script.read_text()
        body = text.split("framework_packages()", 1)[-1]
        setup = tuple(dict.fromkeys(re.findall(r"^\s+([a-z0-9_-]+)\)", body, re.M)))
    verify = inference = None
    source = "the source"
    if harness_python:
        try:
            top = _output([harness_python, "-m", "harness", "--help"], timeout=120)
            run = _output([harness_python, "-m", "harness", "run", "--help"], timeout=120)
            verify = bool(re.search(r"^\s+verify\b", top, re.M))
            inference = "--task" in run and "inference" in run
            source = "--help"
        except (OSError, subprocess.SubprocessError):
            pass
    if verify is None or inference is None:
        cli = repo / "harness" / "cli"
        verify = (cli / "verify.py").is_file()
        main = (cli / "main.py").read_text() if (cli / "main.py").is_file() else ""
        inference = '"--task"' in main and "inference" in main
    tasks = {}
    for tool in backends:
        text = (backends_dir / tool / "__init__.py").read_text()
        match = re.search(r"\btasks\s*=\s*\(([^)]*)\)", text)
        if match:
            tasks[tool] = tuple(re.findall(r"[\"']([a-z]+)[\"']", match[1]))
    if source == "--help":  # the plugins' own word, where the harness is importable here
        try:
            from harness.plugins import PluginManager

            for name, info in PluginManager().backends.items():
                tasks[name] = tuple(getattr(info, "tasks", ("train",)))
        except Exception:  # the files' word stands
            pass
    tasks = {t: v for t, v in tasks.items() if v != ("train",)}
    return Features(
        backends, parity, setup, bool(verify), bool(inference), source, tuple(sorted(tasks.items()))
    )


def _output(command: Sequence[str], timeout: float) -> str:
    done = subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def gpus_from_nvidia_smi() -> tuple[tuple[GpuInfo, ...], str | None]:
    """The GPUs as nvidia-smi lists them (before anything is installed)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return (), "nvidia-smi not found: is the NVIDIA driver installed?"
    last = ""
    for fields in ("index,name,memory.total,compute_cap", "index,name,memory.total"):
        try:
            text = _output([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], 60)
        except (OSError, subprocess.SubprocessError) as exc:
            last = str(getattr(exc, "stderr", "") or exc).strip().splitlines()[-1:]
            last = last[0] if last else "nvidia-smi failed"
            continue
        gpus = []
        for line in text.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            cc = _capability(parts[3]) if len(parts) > 3 else None
            memory = int(float(parts[2])) if parts[2].replace(".", "").isdigit() else None
            gpus.append(GpuInfo(int(parts[0]), parts[1], memory, cc))
        return tuple(gpus), None if gpus else "nvidia-smi lists no GPU"
    return (), f"nvidia-smi: {last}"


def _capability(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    return (int(match[1]), int(match[2])) if match else None


def gpus_from_harness() -> tuple[tuple[GpuInfo, ...], str | None]:
    """The GPUs as the harness sees them (NVML, or HARNESS_NVML_MODULE's fake), with the
    compute capability where NVML tells it."""
    import importlib

    from harness.machine import gpus as hgpus
    from harness.monitor.nvml import nvml_module_name

    inventory = hgpus.discover()
    capabilities: dict[int, tuple[int, int]] = {}
    try:
        nvml = importlib.import_module(nvml_module_name())
        nvml.nvmlInit()
        try:
            for gpu in inventory.gpus:
                handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                capabilities[gpu.index] = (int(major), int(minor))
        finally:
            nvml.nvmlShutdown()
    except Exception:  # an older NVML, or a fake without it: unknown
        pass
    found = tuple(
        GpuInfo(g.index, g.name, g.memory_mib, capabilities.get(g.index)) for g in inventory.gpus
    )
    return found, inventory.reason


def venv_check(python: str) -> tuple[bool, str | None]:
    """Can ``python -m venv`` make an environment with pip (Debian splits out ensurepip)?"""
    try:
        subprocess.run(
            [python, "-c", "import ensurepip, venv"], capture_output=True, timeout=60, check=True
        )
        return True, None
    except (OSError, subprocess.SubprocessError):
        return False, (
            "this Python lacks venv/ensurepip: install python3-venv "
            "(apt-get install python3-venv), or give --python-for for every tool"
        )


def has_harness(python: str) -> bool:
    """Can ``python`` import the harness (and so run `python -m harness`)?"""
    if not Path(python).exists():
        return False
    try:
        subprocess.run(
            [python, "-c", "import harness.store.schema"],
            capture_output=True,
            timeout=120,
            check=True,
        )
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def harness_importable() -> bool:
    import importlib.util

    try:
        return all(
            importlib.util.find_spec(m) is not None
            for m in ("harness", "pluggy", "numpy", "rich", "harness.store.schema")
        )
    except (ImportError, ValueError):
        return False


# -- running the plan ------------------------------------------------------------------------


class Runner:
    """Runs the steps of a plan in order, printing a line per step."""

    def __init__(self, plan: Plan, *, quiet: bool = False) -> None:
        self.plan = plan
        self.logs = plan.output_dir / "acceptance"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.unavailable: dict[str, tuple[str, bool]] = {}  # tool -> (why, optional)
        self.outcomes: list[Outcome] = []
        self.quiet = quiet
        self.env = dict(os.environ)
        self.env.update(plan.env)
        self.memory_text = ""

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def execute(self, command: Sequence[str], step: Step, log: Path) -> tuple[int, str, str]:
        env = dict(self.env)
        env.update(step.env)
        for tool in self.unavailable:  # no harness command is pointed at a broken one
            env.pop(env_var(tool), None)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                list(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO,
            )
        except OSError as exc:
            process, rc, out, err = None, 127, "", str(exc)
        if process is not None:
            try:
                out, err = process.communicate(timeout=step.timeout)
                rc = process.returncode
            except subprocess.TimeoutExpired:
                # SIGTERM first: the harness stores the repeats that finished, then exits
                process.terminate()
                out, err = _drain(process, 60)
                rc, err = 124, err + f"\ntimed out after {step.timeout:.0f} s"
            except KeyboardInterrupt:  # Ctrl-C reached the step too: let it store and end
                _drain(process, 60)
                raise
        with log.open("a") as handle:
            handle.write(
                f"$ {format_command(command, step.env)}\n# exit {rc} after "
                f"{time.monotonic() - started:.1f} s\n"
            )
            handle.write(f"--- stdout\n{out}\n--- stderr\n{err}\n")
        return rc, out, err

    def run_all(self) -> list[Outcome]:
        steps = self.plan.steps
        for number, step in enumerate(steps, 1):
            self.say(f"[{number}/{len(steps)}] {step.title} ...")
            started = time.monotonic()
            log = self.logs / f"{number:03d}-{re.sub(r'[^A-Za-z0-9.-]+', '_', step.key)}.log"
            try:
                outcome = self.one(step, log)
            except KeyboardInterrupt:
                self.outcomes.append(Outcome(step.key, step.title, FAIL, "interrupted (Ctrl-C)"))
                self.outcomes[-1].seconds = time.monotonic() - started
                break
            outcome.seconds = time.monotonic() - started
            if log.exists():
                outcome.log = str(log)
            self.outcomes.append(outcome)
            self.say(f"    {outcome.status} ({outcome.seconds:.0f} s) {outcome.detail}")
        return self.outcomes

    def one(self, step: Step, log: Path) -> Outcome:
        made = Outcome(step.key, step.title, PASS)
        if step.skip:
            return replace(made, status=SKIPPED, detail=step.skip)
        if step.refuse:
            return replace(made, status=REFUSED, detail=f"refused: {step.refuse}")
        if step.fail:
            if step.tool and step.kind in ("install", "probe"):
                self.unavailable.setdefault(step.tool, (step.fail, step.optional))
            return replace(made, status=FAIL, detail=step.fail)
        if step.tool and step.tool in self.unavailable and step.kind != "install":
            why, optional = self.unavailable[step.tool]
            return replace(
                made, status=SKIPPED if optional else FAIL, detail=f"{step.tool} unavailable: {why}"
            )
        handler = getattr(self, f"do_{step.kind}")
        return handler(step, log, made)

    def _tool_failed(self, step: Step, made: Outcome, why: str) -> Outcome:
        assert step.tool is not None
        self.unavailable[step.tool] = (why, step.optional)
        if step.optional:
            return replace(made, status=SKIPPED, detail=f"{why} ({OPTIONAL_TOOLS[step.tool]})")
        return replace(made, status=FAIL, detail=why)

    def do_preflight(self, step: Step, log: Path, made: Outcome) -> Outcome:
        return replace(made, detail=step.expect)

    def do_install(self, step: Step, log: Path, made: Outcome) -> Outcome:
        for command in step.commands:
            rc, out, err = self.execute(command, step, log)
            if rc != 0:
                return self._tool_failed(step, made, f"exit {rc}: {_last_line(err or out)}")
        return replace(made, detail=f".venvs/{step.tool}")

    def do_probe(self, step: Step, log: Path, made: Outcome) -> Outcome:
        rc, out, err = self.execute(step.commands[0], step, log)
        answer = _last_json(out)
        if rc != 0 or answer is None:
            return self._tool_failed(step, made, f"exit {rc}: {_last_line(err or out)}")
        if not answer.get("ok"):
            found = answer.get("found") or "no GPU"
            return self._tool_failed(step, made, f"{found} (a CPU build? --reinstall)")
        return replace(made, detail=str(answer.get("found")))

    def do_doctor(self, step: Step, log: Path, made: Outcome) -> Outcome:
        rc, out, err = self.execute(step.commands[0], step, log)
        try:
            checks = json.loads(out)
        except ValueError:
            checks = []
        counts = {s: sum(1 for c in checks if c.get("status") == s) for s in ("ok", "warn", "fail")}
        detail = f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail"
        failing = [
            f"{c.get('name')}: {c.get('found')}" for c in checks if c.get("status") == "fail"
        ]
        if rc != 0:
            reason = "; ".join(failing) or _last_line(err or out)
            return replace(made, status=FAIL, detail=f"exit {rc}: {reason}")
        return replace(made, detail=detail)

    def do_run(self, step: Step, log: Path, made: Outcome) -> Outcome:
        assert step.run is not None
        rc, out, err = self.execute(step.commands[0], step, log)
        document = _last_json(out)
        if rc == 2 and document is None:
            line = _error_line(err or out)
            if step.refusable:
                return replace(made, status=REFUSED, detail=f"refused: {line}")
            return replace(made, status=FAIL, detail=f"refused by the harness: {line}")
        if document is None or not document.get("run_id"):
            return replace(made, status=FAIL, detail=f"exit {rc}, no result: {_error_line(err)}")
        run_id = str(document["run_id"])
        stored = self.stored(run_id)
        if stored is None:
            return replace(
                made, status=FAIL, run_id=run_id, detail=f"run {run_id} is not in {self.plan.store}"
            )
        verdict = check_run(stored, step.run)
        detail = run_figures(stored)
        if verdict.notes:
            detail += "; note: " + "; ".join(verdict.notes)
        if not verdict.ok:
            return replace(
                made,
                status=FAIL,
                run_id=run_id,
                detail="; ".join(verdict.failures) + f" [{run_id}]",
            )
        if rc != 0:
            return replace(made, status=FAIL, run_id=run_id, detail=f"exit {rc}; {detail}")
        return replace(made, run_id=run_id, detail=detail)

    def stored(self, run_id: str) -> Any:
        from harness.store.store import ResultStore

        if not self.plan.store.is_file():
            return None
        found = ResultStore(self.plan.store, readonly=True).runs(run_id=run_id)
        return found[-1] if found else None

    def stored_runs(self) -> list[Any]:
        ids = [o.run_id for o in self.outcomes if o.run_id]
        return [r for r in (self.stored(i) for i in ids) if r is not None]

    def do_memory(self, step: Step, log: Path, made: Outcome) -> Outcome:
        results = self.stored_runs()
        header, rows = memory_table(results)
        text = format_rows(header, rows)
        log.write_text(text + "\n")
        self.memory_text = text
        ok = [r for r in results if r.summary.status == "ok"]
        lacking = [r.run_id for r in ok if _mean(r.summary.gpu_memory_mib) is None]
        if not rows:
            return replace(made, status=FAIL, detail="no ok run to compare")
        if lacking:
            return replace(made, status=FAIL, detail=f"no NVML memory in {', '.join(lacking)}")
        tools = len(header) - 4
        return replace(
            made, detail=f"{len(rows)} configuration(s) x {tools} tool(s): the table below"
        )

    def do_verify(self, step: Step, log: Path, made: Outcome) -> Outcome:
        command = list(step.commands[0])
        listed = command[command.index("--tools") + 1].split(",")
        usable = [t for t in listed if t not in self.unavailable]
        if not usable:
            return replace(made, status=SKIPPED, detail="no tool left to verify")
        command[command.index("--tools") + 1] = ",".join(usable)
        rc, out, err = self.execute(command, step, log)
        failing = [ln.strip() for ln in out.splitlines() if "FAIL" in ln or "failed" in ln]
        dropped = [t for t in listed if t not in usable]
        note = f" (without {', '.join(dropped)}: unavailable)" if dropped else ""
        if rc != 0:
            reason = "; ".join(failing[:3]) or _last_line(err or out)
            return replace(made, status=FAIL, detail=f"exit {rc}: {reason}{note}")
        return replace(made, detail=f"all pass: {', '.join(usable)}{note}")

    def do_report(self, step: Step, log: Path, made: Outcome) -> Outcome:
        command = step.commands[0]
        if not self.plan.store.is_file():
            return replace(made, status=FAIL, detail=f"no store at {self.plan.store}")
        rc, out, err = self.execute(command, step, log)
        written = Path(command[command.index("-o") + 1])
        if rc != 0 or not written.is_file():
            return replace(made, status=FAIL, detail=f"exit {rc}: {_last_line(err or out)}")
        return replace(made, detail=str(written))


def _drain(process: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """What ``process`` still writes, waiting ``seconds`` before killing it."""
    try:
        return process.communicate(timeout=seconds)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        out, err = process.communicate()
        return _text(out), _text(err)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _error_line(text: str) -> str:
    """The harness's one-line error (``error: ...``), else the last line."""
    for line in reversed((text or "").splitlines()):
        if line.startswith("error:"):
            return line[len("error:") :].strip()[:300]
    return _last_line(text)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None


# -- the command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="GPU acceptance of the harness: set up, run every backend on 1 and 2 "
        "GPUs in fp32/fp16/bf16, check the stored results, one pass/fail table.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument(
        "--skip-install",
        action="store_true",
        help="create no environment: use the interpreters the harness finds",
    )
    parser.add_argument(
        "--reinstall", action="store_true", help="run the setup even where .venvs/<tool> exists"
    )
    parser.add_argument(
        "--python-for",
        action="append",
        default=[],
        metavar="TOOL=PATH",
        help="this interpreter has TOOL's framework (no install for it)",
    )
    parser.add_argument(
        "--harness-python",
        metavar="PATH",
        help="the interpreter that runs `python -m harness` (default: one "
        "with the harness: this one, else the first tool's)",
    )
    parser.add_argument(
        "--tools",
        help="comma-separated (default: every backend with a GPU "
        "install recipe: " + ", ".join(TOOL_ORDER) + " where present)",
    )
    parser.add_argument(
        "--models",
        help="comma-separated, among " + ", ".join(m for m, _ in WORKLOADS) + " (default: both)",
    )
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--max-gpus", type=int, default=2, help="1: no 2-GPU runs (default 2)")
    parser.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="--dry-run only: plan for N GPUs instead of the ones found",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="results.sqlite and the run folders (default logs/gpu-acceptance-<time>)",
    )
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, help="fixed timed steps (default: 3 to 5 s)")
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--max-time", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, help="per run (default: 2 in fp32, 1 otherwise)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per repeat")
    parser.add_argument("--idle-baseline", type=float, default=1.0)
    parser.add_argument("--setup-outcomes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gpus is not None and not args.dry_run:
        parser.error("--gpus plans for pretend GPUs: only with --dry-run")
    for item in args.python_for:
        if "=" not in item:
            parser.error(f"--python-for wants TOOL=PATH, not {item!r}")
    return args


def settings_from(args: argparse.Namespace, features: Features) -> Settings:
    tools = (
        tuple(t.strip() for t in args.tools.split(",") if t.strip())
        if args.tools
        else default_tools(features)
    )
    workloads = WORKLOADS
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in dict(WORKLOADS)]
        if unknown:
            raise SystemExit(
                f"error: unknown model {unknown[0]!r}; choose from: " + ", ".join(dict(WORKLOADS))
            )
        workloads = tuple(w for w in WORKLOADS if w[0] in wanted)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    output = args.output_dir or REPO / "logs" / f"gpu-acceptance-{datetime.now():%Y%m%d-%H%M%S}"
    python_for = tuple(
        (k.strip(), str(Path(v).expanduser()))
        for k, v in (item.split("=", 1) for item in args.python_for)
    )
    return Settings(
        tools=tools,
        output_dir=Path(output).resolve(),
        workloads=workloads,
        precisions=precisions,
        max_gpus=args.max_gpus,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        min_time=args.min_time,
        max_time=args.max_time,
        repeats=args.repeats,
        timeout=args.timeout,
        idle_baseline=args.idle_baseline,
        skip_install=args.skip_install,
        reinstall=args.reinstall,
        python_for=python_for,
        session=Path(output).name,
    )


def resolve_interpreters(
    tools: Sequence[str], python_for: dict[str, str], *, in_process: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(tool -> interpreter, tool -> why none): --python-for, then .venvs/<tool>; in an
    interpreter with the harness, then what a run would find."""
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for tool in tools:
        if tool in python_for:
            if Path(python_for[tool]).exists():
                found[tool] = python_for[tool]
            else:
                missing[tool] = f"--python-for {tool}={python_for[tool]}: no such file"
        elif Path(venv_python(tool)).exists():
            found[tool] = venv_python(tool)
        elif in_process:
            from harness.errors import UsageError
            from harness.plugins import PluginManager
            from harness.run.interpreters import find_interpreter

            try:
                found[tool] = find_interpreter(PluginManager().backend(tool)).python
            except UsageError as exc:
                missing[tool] = str(exc)
        else:
            missing[tool] = f"not set up: .venvs/{tool} does not exist"
    return found, missing


def machine_facts(
    args: argparse.Namespace, settings: Settings, *, in_process: bool, installing: bool
) -> Machine:
    if args.gpus is not None:
        gpus: tuple[GpuInfo, ...] = tuple(GpuInfo(i, f"GPU {i}") for i in range(args.gpus))
        reason = None if gpus else "--gpus 0"
    elif in_process:
        gpus, reason = gpus_from_harness()
    else:
        gpus, reason = gpus_from_nvidia_smi()
    venv_ok, venv_reason = venv_check(sys.executable) if installing else (True, None)
    python_for = dict(settings.python_for)
    existing = frozenset(t for t in settings.tools if Path(venv_python(t)).exists())
    if installing:
        # after the install, .venvs/<tool> is the interpreter of every tool it sets up
        interpreters = {t: python_for.get(t) or venv_python(t) for t in settings.tools}
        missing: dict[str, str] = {}
    else:
        interpreters, missing = resolve_interpreters(
            settings.tools, python_for, in_process=in_process
        )
    harness_python = args.harness_python
    if harness_python is None:  # this one, else the first tool's (it has the harness)
        harness_python = sys.executable if in_process else next(iter(interpreters.values()), None)
    return Machine(
        gpus=gpus,
        gpu_reason=reason,
        python=sys.executable,
        python_version=sys.version_info[:2],
        venv_ok=venv_ok,
        venv_reason=venv_reason,
        existing_envs=existing,
        interpreters=tuple(interpreters.items()),
        missing=tuple(missing.items()),
        harness_python=harness_python,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    in_process = harness_importable() and args.harness_python is None
    features = detect_features(sys.executable if in_process else None)
    settings = settings_from(args, features)
    if not settings.tools:
        print("error: no tool to check (backends/ has none with a GPU install recipe)")
        return 2
    installing = not settings.skip_install and any(
        t not in dict(settings.python_for) for t in settings.tools
    )
    machine = machine_facts(args, settings, in_process=in_process, installing=installing)
    plan = build_plan(settings, features, machine)
    if args.dry_run:
        print(describe_plan(plan, features, machine))
        return 0

    started = time.monotonic()
    prior: list[Outcome] = []
    if args.setup_outcomes and args.setup_outcomes.is_file():
        prior = [Outcome(**o) for o in json.loads(args.setup_outcomes.read_text())]
    setup_kinds = ("preflight", "install")
    if not in_process:
        if args.setup_outcomes:  # started again, and still no harness here: stop
            prior.append(Outcome("harness", "an interpreter with the harness", FAIL,
                                 f"{sys.executable} cannot import the harness"))  # fmt: skip
            return finish(prior, plan, time.monotonic() - started, memory="")
        # Set up here (standard library only), then run the rest in an interpreter that
        # has the harness: this script again, told to skip the install.
        runner = Runner(replace(plan, steps=tuple(s for s in plan.steps if s.kind in setup_kinds)))
        outcomes = runner.run_all()
        if any(o.status == FAIL and o.key == "preflight" for o in outcomes):
            return finish(outcomes, plan, time.monotonic() - started, memory="")
        usable = [p for t, p in machine.interpreters if t not in runner.unavailable]
        python = args.harness_python or next((p for p in usable if has_harness(p)), None)
        if python is None:
            outcomes.append(Outcome("harness", "an interpreter with the harness", FAIL,
                                    "none of the tools' interpreters imports the harness: "
                                    "install, or give --harness-python"))  # fmt: skip
            return finish(outcomes, plan, time.monotonic() - started, memory="")
        saved = plan.output_dir / "acceptance" / "setup-outcomes.json"
        saved.write_text(json.dumps([asdict(o) for o in outcomes]))
        rest = _without(list(sys.argv[1:] if argv is None else argv),
                        ("--setup-outcomes", "--harness-python"))  # fmt: skip
        child = [python, str(Path(__file__).resolve()), *rest, "--skip-install",
                 "--output-dir", str(plan.output_dir), "--setup-outcomes", str(saved)]  # fmt: skip
        for tool, path in machine.interpreters:
            if tool not in dict(settings.python_for) and Path(path).exists():
                child += ["--python-for", f"{tool}={path}"]
        print(f"continuing in {python}", flush=True)
        process = subprocess.Popen(child, cwd=REPO)
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # it got Ctrl-C too: it ends its step, prints the table
                continue

    steps = plan.steps
    if prior:
        steps = tuple(s for s in steps if s.kind not in setup_kinds)
    runner = Runner(replace(plan, steps=steps))
    for outcome in prior:  # tools whose install failed stay unavailable
        if outcome.key.startswith("install/") and outcome.status in (FAIL, SKIPPED):
            tool = outcome.key.split("/", 1)[1]
            if not outcome.detail.startswith(("already set up", "--python-for")):
                runner.unavailable[tool] = (outcome.detail, outcome.status == SKIPPED)
    outcomes = prior + runner.run_all()
    return finish(outcomes, plan, time.monotonic() - started, memory=runner.memory_text)


def _without(argv: list[str], options: Sequence[str]) -> list[str]:
    """``argv`` without ``options`` and their values (both spellings)."""
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in options:
            skip = True
            continue
        if any(item.startswith(o + "=") for o in options):
            continue
        out.append(item)
    return out


def finish(outcomes: list[Outcome], plan: Plan, seconds: float, memory: str) -> int:
    print()
    print("GPU acceptance")
    print(outcome_table(outcomes))
    if memory:
        print()
        print("GPU memory per tool, MiB: NVML over the timed phase (framework allocator peak)")
        print(memory)
    print()
    for note in plan.notes:
        print(f"note: {note}")
    print(summary_line(outcomes, seconds))
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "accepted": passed(outcomes),
        "seconds": round(seconds, 1),
        "store": str(plan.store),
        "outcomes": [asdict(o) for o in outcomes],
    }
    (plan.output_dir / "acceptance.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"logs: {plan.output_dir / 'acceptance'}; table: {plan.output_dir / 'acceptance.json'}")
    print(f"report: {shlex.join(report_command(plan.harness_python, plan.store))}")
    return 0 if passed(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
