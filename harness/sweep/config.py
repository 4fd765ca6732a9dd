"""Sweep files: a TOML description of a matrix of runs, expanded into cells.

A *cell* is one (tool, model, dataset, hardware configuration): one run of the
orchestrator. The file format is documented in docs/user-guide/sweeps.md; in short::

    [sweep]      name, description, tools, hardware, repeats, models + datasets
    [defaults]   RunSpec fields for every run
    [tool.NAME]  RunSpec fields for one tool (e.g. backend options)
    [[hardware]] name, num_gpus, gpu, cpu_devices, threads, nodes (instead of
                 sweep.hardware), slurm (this entry's SLURM resources: { constraint = "a100" })
    [[workloads]] dataset, model (a name or a list) and their training parameters
    [slurm]      SLURM resources for ``--executor slurm`` (see SLURM_KEYS)

Parameters apply in this order, later ones winning: the harness defaults, [defaults],
[tool.NAME], every matching [[workloads]] entry in file order, the hardware entry,
then ``--set`` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness import datasets, models
from harness.backend import check_options
from harness.errors import UsageError
from harness.plugins import get_plugin_manager
from harness.run.task import TASKS, TRAINING
from harness.spec import RunSpec, batch_sizes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# RunSpec fields a sweep sets from its matrix, never from parameters.
_MATRIX = frozenset({"tool", "model", "dataset", "num_gpus", "gpu", "cpu_devices"})
# Short names accepted beside RunSpec's field names.
ALIASES = {
    "lr": "learning_rate",
    "timeout": "timeout_s",
    "monitor_interval": "monitor_interval_s",
    "idle_baseline": "idle_baseline_s",
    "min_time": "min_time_s",
    "max_time": "max_time_s",
}
# Parameters whose harness default is "decide while running" (TOML has no null):
# "auto" restores that default where an earlier table gave a number.
AUTO = frozenset({"warmup_steps", "steps", "sync_every"})
_SWEEP_KEYS = {"name", "description", "tools", "models", "datasets", "hardware", "repeats"}
_HARDWARE_KEYS = {"name", "num_gpus", "gpu", "cpu_devices", "threads", "nodes", "slurm"}
_TOP_KEYS = {"sweep", "defaults", "tool", "hardware", "workloads", "slurm"}
# The [slurm] table (``--executor slurm``): key -> type. A hardware entry's ``slurm``
# table takes the same keys but poll_s, and wins over [slurm] for its runs.
SLURM_KEYS: dict[str, type] = {
    "partition": str,  # sbatch --partition
    "account": str,  # --account
    "time": str,  # --time: minutes, "MM:SS", "HH:MM:SS" or "D-HH:MM:SS"
    "constraint": str,  # --constraint, e.g. a GPU model's feature
    "cpus_per_task": int,  # --cpus-per-task (default: the run's threads, if set)
    "mem": str,  # --mem, e.g. "32G"
    "gpus": str,  # --gpus-per-node (default: the hardware's num_gpus), e.g. "a100:2"
    "extra_args": list,  # more sbatch arguments, e.g. ["--qos=high"]
    "poll_s": float,  # how often the submitting process asks SLURM (default 5)
}
_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")
_GPUS = re.compile(r"^(\d+)\s*-?\s*gpus?$")


def _field_kinds() -> dict[str, str]:
    """RunSpec field -> 'int', 'float', 'bool', 'str' or 'dict' (from its annotation)."""
    kinds = {}
    for f in dataclasses.fields(RunSpec):
        text = str(f.type)
        for kind in ("dict", "bool", "float", "int", "str"):
            if kind in text:
                kinds[f.name] = kind
                break
    return kinds


PARAMETERS = {name: kind for name, kind in _field_kinds().items() if name not in _MATRIX}


@dataclass(frozen=True)
class Hardware:
    """One hardware configuration: a column of the report."""

    label: str
    num_gpus: int = -1
    cpu_devices: int = 1
    gpu: str | None = None
    threads: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    nodes: int = 1  # RunSpec.nodes: data parallel over this many nodes


@dataclass
class Cell:
    """One run of the sweep: (tool, model, dataset, hardware) and its RunSpec."""

    key: str
    position: int
    hardware: str  # the hardware configuration's label
    spec: RunSpec

    @property
    def tool(self) -> str:
        return self.spec.tool

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def dataset(self) -> str:
        return self.spec.dataset


@dataclass
class Workload:
    datasets: list[str]
    models: list[str]
    params: dict[str, Any]


@dataclass
class SweepConfig:
    """A parsed sweep file."""

    name: str
    source: str
    description: str = ""
    tools: list[str] = field(default_factory=list)
    hardware: list[Hardware] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (dataset, model)
    defaults: dict[str, Any] = field(default_factory=dict)
    per_tool: dict[str, dict[str, Any]] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the file as parsed, for the state
    slurm: dict[str, Any] = field(default_factory=dict)  # the [slurm] table, checked

    def _cell_params(self, overrides: dict[str, Any] | None) -> Iterator[tuple[Any, ...]]:
        """(dataset, model, tool, hardware, parameters) of every point of the matrix, in
        order: pair by pair, tool by tool, hardware last; a point's lists of tasks and batch
        sizes are expanded by :func:`_variants`."""
        extra = _params(overrides or {}, "--set")
        for dataset, model in self.pairs:
            workloads = _pair_params(self.workloads, dataset, model)
            for tool in self.tools:
                for hw in self.hardware:
                    params = _merge({}, self.defaults)
                    params = _merge(params, self.per_tool.get(tool, {}))
                    params = _merge(params, workloads)
                    params = _merge(params, {"num_gpus": hw.num_gpus, "gpu": hw.gpu})
                    params["cpu_devices"] = hw.cpu_devices
                    if hw.threads is not None:
                        params["threads"] = hw.threads
                    if hw.nodes != 1:
                        params["nodes"] = hw.nodes
                    yield dataset, model, tool, hw, _merge(params, extra)

    def count(
        self,
        overrides: dict[str, Any] | None = None,
        filters: dict[str, list[str] | None] | None = None,
    ) -> int:
        """How many cells :meth:`cells` gives (after :func:`select`'s ``filters``), without
        building them: a large sweep is counted in milliseconds, before it is expanded."""
        wanted = {k: set(v) for k, v in (filters or {}).items() if v}
        return sum(
            _variant_count(params)
            for dataset, model, tool, hw, params in self._cell_params(overrides)
            if all(
                value in wanted.get(name, (value,))
                for name, value in (
                    ("tools", tool),
                    ("models", model),
                    ("datasets", dataset),
                    ("hardware", hw.label),
                )
            )
        )

    def cells(self, overrides: dict[str, Any] | None = None) -> list[Cell]:
        """Every cell, in order: pair by pair, tool by tool, hardware last."""
        out: list[Cell] = []
        for dataset, model, tool, hw, params in self._cell_params(overrides):
            for suffix, variant in _variants(params):
                spec = RunSpec(tool=tool, model=model, dataset=dataset, **variant)
                key = f"{tool}/{model}/{dataset}/{hw.label}{suffix}"
                spec.tags.setdefault("sweep_cell", key)
                if hw.label != spec.hardware:
                    spec.tags["hardware_label"] = hw.label
                out.append(Cell(key, len(out), hw.label, spec))
        return out


# RunSpec's fields when fingerprints were introduced: always in the fingerprint. A field
# added since is in it only where a cell sets it away from its default, so a sweep
# planned by an earlier version keeps its fingerprint (and resumes) after an upgrade.
# fmt: off
_FIRST_FIELDS = frozenset((
    "tool", "model", "dataset", "num_gpus", "gpu", "cpu_devices", "threads", "nodes",
    "launcher", "task", "batch_size", "learning_rate", "warmup_steps", "steps", "epochs",
    "precision", "seed", "validate", "data_dir", "data_workers", "image_size", "synthetic",
    "repeats", "sync_every", "min_time_s", "max_time_s", "timeout_s", "monitor_interval_s",
    "idle_baseline_s", "output_dir", "python", "options", "tags", "dump_weights", "weights",
    "onnx_file", "input_shape",
))
# fmt: on


def _later_defaults() -> dict[str, Any]:
    """The fields added after :data:`_FIRST_FIELDS`, with their default values."""
    blank = RunSpec(tool="", model="", dataset="")
    names = (f.name for f in dataclasses.fields(RunSpec) if f.name not in _FIRST_FIELDS)
    return {n: getattr(blank, n) for n in names}


def fingerprint(name: str, cells: list[Cell]) -> str:
    """Identifies a sweep's plan: the same file and options give the same fingerprint."""
    # the fields as to_dict gives them, without its deep copy (the same JSON, 10x faster)
    later = _later_defaults()
    first = [f.name for f in dataclasses.fields(RunSpec) if f.name in _FIRST_FIELDS]

    def fields(spec: RunSpec) -> dict[str, Any]:
        out = {n: getattr(spec, n) for n in first}
        out.update((n, v) for n, d in later.items() if (v := getattr(spec, n)) != d)
        return out

    body = {"name": name, "cells": [[c.key, fields(c.spec)] for c in cells]}
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def select(
    cells: list[Cell],
    *,
    tools: list[str] | None = None,
    models: list[str] | None = None,
    datasets: list[str] | None = None,
    hardware: list[str] | None = None,
) -> list[Cell]:
    """The cells matching every given filter (a filter naming nothing known is an error)."""
    for wanted, attr, flag in (
        (tools, "tool", "--tools"),
        (models, "model", "--models"),
        (datasets, "dataset", "--datasets"),
        (hardware, "hardware", "--hardware"),
    ):
        if not wanted:
            continue
        present = list(dict.fromkeys(getattr(c, attr) for c in cells))
        unknown = [w for w in wanted if w not in present]
        if unknown:
            raise UsageError(
                f"{flag}: {', '.join(unknown)} not in this sweep; it has: {', '.join(present)}"
            )
        cells = [c for c in cells if getattr(c, attr) in wanted]
    return [dataclasses.replace(c, position=i) for i, c in enumerate(cells)]


# Reading -----------------------------------------------------------------------------


def builtin_names() -> list[str]:
    folder = resources.files("harness.sweep").joinpath("files")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_source(source: str) -> tuple[str, str]:
    """(text, where) of a sweep file path or a built-in sweep's name."""
    path = Path(source)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path}: not a UTF-8 text file (byte {exc.start}): save the sweep file as UTF-8"
            ) from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the sweep file: {exc.strerror}") from None
    builtin = resources.files("harness.sweep").joinpath("files", f"{source}.toml")
    if builtin.is_file():
        return builtin.read_text(), f"built-in sweep {source!r}"
    names = ", ".join(builtin_names())
    raise UsageError(f"no sweep file {source!r}; give a path or a built-in sweep: {names}")


def load(source: str, tools: dict[str, Any] | None = None) -> SweepConfig:
    """The sweep file (or built-in sweep) ``source``, checked.

    ``tools``: the registered backends (name -> BackendInfo; default: the installed
    plugins'). A tool that is not registered, or a backend option that its backend does
    not declare, is a mistake in the file (UsageError), not a cell this machine skips."""
    text, where = read_source(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None
    config = parse(data, where)
    if tools is None:
        pm = get_plugin_manager()
        tools, broken = pm.backends, set(pm.load_errors)
    else:
        broken = set()
    unknown = [t for t in config.tools if t not in tools and t not in broken]
    if unknown:
        choices = ", ".join(sorted(tools)) or "none installed"
        raise UsageError(
            f"{where}: unknown tool {unknown[0]!r} in sweep.tools; choose from: {choices}"
        )

    for tool in config.tools:
        if tool not in tools:
            continue
        tables = [config.defaults, config.per_tool.get(tool, {})]
        tables += [w.params for w in config.workloads]
        for table in tables:
            try:
                check_options(tools[tool], table.get("options") or {})
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None
    return config


def check_option_keys(cells: list[Cell], tools: dict[str, Any]) -> None:
    """Every cell's backend options (the file's and ``--set options={...}``'s) against
    what its tool declares: an unknown key or a bad value stops the sweep before any run
    (UsageError naming the cell, with "did you mean" where a declared name is close)."""

    checked: set[tuple[str, str]] = set()
    for cell in cells:
        info = tools.get(cell.tool)
        mark = (cell.tool, repr(sorted(cell.spec.options.items())))
        if info is None or mark in checked:
            continue
        checked.add(mark)
        try:
            check_options(info, cell.spec.options)
        except UsageError as exc:
            raise UsageError(f"{cell.key}: {exc}") from None


def parse(data: dict[str, Any], source: str = "<sweep>") -> SweepConfig:
    """Checks a parsed sweep file; every mistake is a UsageError naming the key."""

    def fail(message: str) -> UsageError:
        return UsageError(f"{source}: {message}")

    _no_unknown(data, _TOP_KEYS, "top-level", fail)
    sweep = _table(data.get("sweep", {}), "[sweep]", fail)
    _no_unknown(sweep, _SWEEP_KEYS, "[sweep]", fail)
    tools = _names(sweep.get("tools"), "sweep.tools", fail)
    if not tools:
        raise fail("sweep.tools must list at least one tool")
    defaults = _params(_table(data.get("defaults", {}), "[defaults]", fail), "[defaults]", fail)
    if "repeats" in sweep:
        defaults = _merge(defaults, _params({"repeats": sweep["repeats"]}, "[sweep]", fail))
    per_tool = {
        tool: _params(_table(params, f"[tool.{tool}]", fail), f"[tool.{tool}]", fail)
        for tool, params in _table(data.get("tool", {}), "[tool]", fail).items()
    }
    for tool in per_tool:
        if tool not in tools:
            raise fail(f"[tool.{tool}] names a tool that sweep.tools does not list")
    hardware = _hardware(sweep.get("hardware"), data.get("hardware"), fail)
    slurm = slurm_table(_table(data.get("slurm", {}), "[slurm]", fail), "[slurm]", fail)

    workloads: list[Workload] = []
    pairs: list[tuple[str, str]] = []
    models = _names(sweep.get("models"), "sweep.models", fail)
    datasets = _names(sweep.get("datasets"), "sweep.datasets", fail)
    if bool(models) != bool(datasets):
        raise fail("sweep.models and sweep.datasets go together (every pair is run)")
    pairs += [(d, m) for d in datasets for m in models]
    entries = data.get("workloads", [])
    if not isinstance(entries, list):
        raise fail("workloads must be an array of tables: [[workloads]]")
    for i, entry in enumerate(entries, 1):
        where = f"[[workloads]] #{i}"
        entry = dict(_table(entry, where, fail))
        ds = _names(entry.pop("dataset", None), f"{where} dataset", fail)
        ms = _names(entry.pop("model", None), f"{where} model", fail)
        if not ds or not ms:
            raise fail(f"{where} needs a dataset and a model (a name or a list of names)")
        workloads.append(Workload(ds, ms, _params(entry, where, fail)))
        pairs += [(d, m) for d in ds for m in ms]
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        raise fail("no (dataset, model) pairs: give [[workloads]] or sweep.models/datasets")
    _known_names(pairs, fail)
    name = sweep.get("name") or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem).strip("-")
    name = name or "sweep"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise fail(f"sweep.name must be letters, digits, '.', '_' or '-', got {name!r}")
    return SweepConfig(
        name=name,
        source=source,
        description=str(sweep.get("description", "")),
        tools=tools,
        hardware=hardware,
        pairs=pairs,
        defaults=defaults,
        per_tool=per_tool,
        workloads=workloads,
        data=data,
        slurm=slurm,
    )


def _known_names(pairs: list[tuple[str, str]], fail: Any) -> None:
    """A model or dataset that does not exist is a mistake in the file (exit 2)."""
    for dataset, model in pairs:
        if model not in models.MODELS:
            raise fail(f"unknown model {model!r}; choose from: {', '.join(models.MODELS)}")
        if dataset not in datasets.DATASETS:
            names = ", ".join(datasets.DATASETS)
            raise fail(f"unknown dataset {dataset!r}; choose from: {names}")


def parse_value(text: str) -> Any:
    """A ``--set KEY=VALUE`` value: TOML's integers, floats and booleans, else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# Helpers -----------------------------------------------------------------------------


def _default_fail(message: str) -> UsageError:
    return UsageError(message)


def _table(value: Any, where: str, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"{where} must be a table")
    return value


def _no_unknown(table: dict[str, Any], known: set[str], where: str, fail: Any) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise fail(
            f"unknown {where} key(s) {', '.join(unknown)}{hint}; known: {', '.join(sorted(known))}"
        )


def slurm_table(
    table: dict[str, Any], where: str = "[slurm]", fail: Any = _default_fail
) -> dict[str, Any]:
    """A [slurm] table (or a hardware entry's ``slurm``), checked: known keys, types."""
    known = set(SLURM_KEYS) - ({"poll_s"} if where != "[slurm]" else set())
    _no_unknown(table, known, where, fail)
    out: dict[str, Any] = {}
    for key, value in table.items():
        kind = SLURM_KEYS[key]
        if key == "time" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # minutes
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = {str: "a string", int: "an integer", float: "a number", list: "a list"}
            raise fail(f"{where}: {key} must be {wanted[kind]}")
        if kind is list and not all(isinstance(v, str) and v for v in value):
            raise fail(f'{where}: {key} must be a list of strings, e.g. ["--qos=high"]')
        if kind in (int, float) and not (math.isfinite(value) and value > 0):
            raise fail(f"{where}: {key} must be positive, got {value}")
        if key == "time" and not _SLURM_TIME.match(value):
            raise fail(
                f'{where}: time {value!r} is not minutes, "MM:SS", "HH:MM:SS" or "D-HH:MM:SS"'
            )
        if kind is str and not value.strip():
            raise fail(f"{where}: {key} must not be empty")
        out[key] = list(value) if kind is list else value
    return out


def _names(value: Any, where: str, fail: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(f"{where} must be a name or a list of names")
    return list(dict.fromkeys(value))


def _params(table: dict[str, Any], where: str, fail: Any = _default_fail) -> dict[str, Any]:
    """RunSpec parameters from a table: names checked, aliases resolved, types checked."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = ALIASES.get(key, key)
        if name == "batch_size" and isinstance(value, str) and value.startswith("auto"):
            name = "batch_search"  # batch_size = "auto": harness.run.autobatch
        if name in _MATRIX:
            raise fail(f"{where}: {key} is set by the sweep's matrix (tools, hardware, workloads)")
        kind = PARAMETERS.get(name)
        if kind is None:
            known = ", ".join(sorted([*PARAMETERS, *ALIASES]))
            raise fail(f"{where}: unknown parameter {key!r}; known: {known}")
        out[name] = _typed(name, kind, value, where, fail)
    return out


def _typed(name: str, kind: str, value: Any, where: str, fail: Any) -> Any:
    if name in AUTO and value == "auto":
        return None
    if name in _LISTS and isinstance(value, list):  # one cell per entry (see SweepConfig.cells)
        return _typed_list(name, value, where, fail)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "dict": isinstance(value, dict),
    }[kind]
    if not ok:
        wanted = "a table" if kind == "dict" else "a " + kind
        if name in AUTO:
            wanted += ' or "auto"'
        raise fail(f"{where}: {name} must be {wanted}")
    if kind == "dict":
        bad = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if bad:
            raise fail(f"{where}: {name}.{bad[0]} must be a single value")
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    if kind == "float" and not math.isfinite(value):  # TOML has nan and inf
        raise fail(f"{where}: {name} must be a finite number, got {value}")
    if name == "timeout_s" and value == 0:
        return None  # as on the command line: 0 means no limit
    return float(value) if kind == "float" else value


# Parameters that take a list too: ``batch_size = [1, 8, 64]``, ``task = ["train",
# "inference"]``; a cell is made of every combination (the tasks: harness.run.task).
_LISTS = ("task", "batch_size")


def _typed_list(name: str, value: list[Any], where: str, fail: Any) -> list[Any]:
    if name == "batch_size":
        try:
            return batch_sizes(value)
        except UsageError as exc:
            raise fail(f"{where}: batch_size: {exc}") from None
    if not value or any(v not in TASKS for v in value):
        raise fail(f"{where}: task must be one of {', '.join(TASKS)} or a list of them")
    return list(dict.fromkeys(value))


# Parameters that may take a list, one cell per value (in every table, and also when
# two [[workloads]] entries of one pair give different values).
LISTED = ("task", "batch_size")


def _pair_params(workloads: list[Workload], dataset: str, model: str) -> dict[str, Any]:
    """The parameters of every [[workloads]] entry naming (dataset, model), merged in file
    order. Two entries giving different tasks or batch sizes add up (a list: one cell per
    value) rather than the later replacing the earlier; any other parameter they set to
    different values is a mistake, named with both entries."""
    out: dict[str, Any] = {}
    where: dict[str, int] = {}
    for number, w in enumerate(workloads, 1):
        if dataset not in w.datasets or model not in w.models:
            continue
        for key, value in w.params.items():
            if key not in out or key in ("options", "tags"):
                out = _merge(out, {key: value})
            elif key in LISTED:
                have = out[key] if isinstance(out[key], list) else [out[key]]
                more = value if isinstance(value, list) else [value]
                out[key] = list(dict.fromkeys([*have, *more]))
            elif out[key] != value:
                raise UsageError(
                    f"[[workloads]] #{where[key]} and #{number} both set {key} for "
                    f"{dataset}/{model} ({out[key]!r}, {value!r}): give it once, or list "
                    "the runs in one entry"
                )
            where.setdefault(key, number)
    return out


def _variant_count(params: dict[str, Any]) -> int:
    """How many cells :func:`_variants` makes of ``params``."""
    return math.prod(len(v) if isinstance(v, list) else 1 for v in map(params.get, LISTED))


def _variants(params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(cell key suffix, parameters) for every task and batch size a list asks for; one
    ("", params) without lists, so training cells keep their keys."""
    tasks = params.get("task", TRAINING.name)
    batches = params.get("batch_size")
    out = []
    for task in tasks if isinstance(tasks, list) else [tasks]:
        for batch in batches if isinstance(batches, list) else [batches]:
            # training cells keep their keys; an unknown task is refused by resolve
            suffix = TASKS[task].cell_suffix if task in TASKS else f"/{task}"
            if isinstance(batches, list):
                suffix += f"/batch{batch}"
            variant = {**params, "task": task, "batch_size": batch}
            for name in ("options", "tags"):  # each cell its own (the key goes into tags)
                if name in variant:
                    variant[name] = dict(variant[name])
            out.append((suffix, variant))
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; backend options and tags merge key by key."""
    out = dict(base)
    for key, value in extra.items():
        if key in ("options", "tags") and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _hardware(short: Any, tables: Any, fail: Any) -> list[Hardware]:
    if short is not None and tables is not None:
        raise fail("give sweep.hardware or [[hardware]] tables, not both")
    if short is None and tables is None:
        return [Hardware("CPU")]
    items: list[Hardware] = []
    if short is not None:
        if not isinstance(short, list):
            raise fail('sweep.hardware must be a list, e.g. ["cpu", "1gpu", "2gpus"]')
        for value in short:
            items.append(_shorthand(value, fail))
    else:
        if not isinstance(tables, list):
            raise fail("hardware must be an array of tables: [[hardware]]")
        for i, entry in enumerate(tables, 1):
            items.append(_hardware_table(_table(entry, f"[[hardware]] #{i}", fail), i, fail))
    counts = Counter(h.label for h in items)  # linear: 20,000 entries parse at once
    twice = sorted(label for label, n in counts.items() if n > 1)
    if twice:
        raise fail(f"two hardware entries are labelled {twice[0]!r}: give each a distinct name")
    return items


def _shorthand(value: Any, fail: Any) -> Hardware:
    """-1 / "cpu": the CPU; N / "Ngpu" / "N gpus": N GPUs."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and value.strip().lower() == "cpu":
        count = -1
    elif isinstance(value, str) and value.strip().lower() == "gpu":
        count = 1
    elif isinstance(value, str) and (m := _GPUS.match(value.strip().lower())):
        count = int(m.group(1))
    else:
        raise fail(f'sweep.hardware: {value!r} is not -1, N, "cpu" or "Ngpus"')
    if count == 0 or count < -1:
        raise fail(f"sweep.hardware: {value!r}: -1 is the CPU, N >= 1 GPUs")
    return Hardware(_label(count, 1, None, None), count)


def _hardware_table(entry: dict[str, Any], index: int, fail: Any) -> Hardware:
    where = f"[[hardware]] #{index}"
    _no_unknown(entry, _HARDWARE_KEYS, where, fail)
    num_gpus = entry.get("num_gpus", -1)
    cpu_devices = entry.get("cpu_devices", 1)
    threads = entry.get("threads")
    gpu = entry.get("gpu")
    nodes = entry.get("nodes", 1)
    for key, value in (("num_gpus", num_gpus), ("cpu_devices", cpu_devices), ("nodes", nodes)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail(f"{where}: {key} must be an integer")
    if nodes < 1 or (nodes > 1 and "nodes" not in PARAMETERS):
        raise fail(f"{where}: nodes must be at least 1 (and this harness runs on one node)")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)):
        raise fail(f"{where}: threads must be an integer")
    if gpu is not None:
        gpu = str(gpu)
    slurm = slurm_table(
        _table(entry.get("slurm", {}), f"{where} slurm", fail), f"{where} slurm", fail
    )
    label = entry.get("name") or _label(num_gpus, cpu_devices, gpu, threads)
    if nodes > 1 and not entry.get("name"):
        label = f"{nodes} nodes x {label}"
    return Hardware(str(label), num_gpus, cpu_devices, gpu, threads, slurm, nodes)


def _label(num_gpus: int, cpu_devices: int, gpu: str | None, threads: int | None) -> str:
    """The default label: RunSpec's ("CPU", "1 GPU", "2 GPUs", "CPU x2"), plus details."""
    label = RunSpec("", "", "", num_gpus=num_gpus, cpu_devices=cpu_devices).hardware
    if gpu:
        label += f" [{gpu}]"
    if threads:
        label += f" ({threads} threads)"
    return label
