"""What a report shows, computed once from stored run results, rendered by the others.

The table is the study's: one row per (metric, dataset, network, framework), one
column per hardware configuration. A *cell* is one configuration (its key,
harness.results.configkey: batch, precision, data source, options, threads, timing mode, ...)
and may have several stored runs; the report uses the latest run whose status is ``ok``,
else the latest ``partial`` one (some repeats failed: the mean is over the ok ones,
marked), else the latest run of any status, whose status the cell then shows ("oom",
...). Cells with no run show "-". A column is a hardware configuration: the sweep file's
label for it, else "CPU", "CPU x2", "1 GPU", "2 GPUs", with the GPU model appended
when the runs used more than one kind of GPU. Two configurations never share a cell:
when a framework has runs of several workload configurations (batch, precision, ...)
it gets one row per configuration, labelled with the fields that differ ("pytorch ·
batch 64"); when runs under one column label differ in hardware settings (threads, CPU
or GPU model), the column splits the same way ("CPU · threads 1").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import datasets, models
from harness.results import configkey


@dataclass(frozen=True)
class Metric:
    key: str  # in result["summary"], or a figure derived from it (DERIVED)
    title: str
    unit: str
    digits: int


METRICS = (
    Metric("images_per_sec", "images/sec", "images/s", 1),
    Metric("gpu_memory_mib", "GPU memory (MiB)", "MiB", 0),
    Metric("gpu_power_w", "GPU power (W)", "W", 1),
    Metric("joules_per_image", "energy per image (J)", "J", 4),
    Metric("tflops", "achieved TFLOP/s", "TFLOP/s", 2),
    Metric("mfu", "MFU (%)", "%", 1),
)
# Figures computed from summary["flops"] and images/sec: the std follows images/sec's.
DERIVED = ("tflops", "mfu")
METRIC = {m.key: m for m in METRICS}

DATASET_TITLES = {
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "kmnist": "KMNIST",
    "cifar10": "CIFAR-10",
    "imagenet": "ImageNet",
}
USABLE = ("ok", "partial")  # run statuses whose figures the report shows


def dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name, name)


def model_title(name: str) -> str:
    info = models.MODELS.get(name)
    return info.title if info else name


@dataclass(frozen=True)
class Column:
    """A hardware configuration."""

    label: str
    num_gpus: int
    cpu_devices: int
    gpu_name: str | None

    @property
    def is_cpu(self) -> bool:
        return self.num_gpus < 0

    def sort_key(self) -> tuple:
        return (
            0 if self.is_cpu else 1,
            self.gpu_name or "",
            self.num_gpus,
            self.cpu_devices,
            self.label,
        )


@dataclass(frozen=True)
class Row:
    dataset: str
    model: str
    tool: str
    variant: str = ""  # what tells this configuration apart from the tool's others

    @property
    def label(self) -> str:
        """The framework column: ``pytorch``, or ``pytorch · batch 64``."""
        return f"{self.tool} · {self.variant}" if self.variant else self.tool


@dataclass(frozen=True)
class Value:
    """One number of the table: the mean and std over a run's ok repeats, or a status."""

    mean: float | None
    std: float | None = None
    n: int = 0
    status: str = "-"  # the run's status; "-" for no run
    run_id: str | None = None

    @property
    def shown(self) -> bool:
        return self.mean is not None and self.status in USABLE


@dataclass(frozen=True)
class Ratio:
    """b / a with the std propagated from both; ``status`` says why there is none."""

    value: float | None
    std: float | None = None
    status: str = "-"


def short_gpu(name: str | None) -> str | None:
    return name.replace("NVIDIA ", "").strip() if name else None


def hardware_label(result: dict[str, Any], *, with_gpu: bool = False) -> str:
    """The column label: the sweep's name for it, else "CPU", "2 GPUs" (+ " · A100")."""
    tags = (result.get("spec") or {}).get("tags") or {}
    if tags.get("hardware_label"):
        return str(tags["hardware_label"])
    label = result.get("hardware") or "?"
    gpu = short_gpu(result.get("gpu_name"))
    return f"{label} · {gpu}" if gpu and with_gpu else label


def several_gpu_kinds(results: Iterable[dict[str, Any]]) -> bool:
    """Whether the runs used more than one GPU model (then labels name the GPU)."""
    return len({r.get("gpu_name") for r in results if r.get("gpu_name")}) > 1


def column_of(result: dict[str, Any], *, with_gpu: bool = False) -> Column:
    spec = result.get("spec") or {}
    return Column(
        hardware_label(result, with_gpu=with_gpu),
        int(spec.get("num_gpus", -1)),
        int(spec.get("cpu_devices", 1) or 1),
        short_gpu(result.get("gpu_name")),
    )


def run_status(result: dict[str, Any]) -> str:
    return (result.get("summary") or {}).get("status") or "?"


def pick(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run a cell shows, from its runs oldest first: latest ok, latest partial, latest."""
    for wanted in USABLE:
        chosen = [r for r in runs if run_status(r) == wanted]
        if chosen:
            return chosen[-1]
    return runs[-1]


@dataclass
class Configuration:
    """The runs of one configuration key, oldest first."""

    key: str
    config: dict[str, Any]
    runs: list[dict[str, Any]]

    @property
    def shown(self) -> dict[str, Any]:
        return pick(self.runs)


def configurations(results: list[dict[str, Any]]) -> dict[str, Configuration]:
    """Runs grouped by configuration key (``results`` oldest first).

    A run that ended before it learnt something (the data source, when its worker never
    started) joins the one configuration that agrees with it on everything it knows;
    with none or several such configurations it stays on its own."""
    groups: dict[str, Configuration] = {}
    for result in results:
        key = configkey.config_key(result)
        if key not in groups:
            groups[key] = Configuration(key, configkey.config_of(result), [])
        groups[key].runs.append(result)
    for key, group in list(groups.items()):
        unknown = [f for f in configkey.UNKNOWABLE_FIELDS if group.config.get(f) is None]
        if not unknown:
            continue
        known = {k: v for k, v in group.config.items() if k not in unknown}
        matches = [
            other
            for other in groups.values()
            if other is not group
            and all(other.config.get(f) is not None for f in unknown)
            and {k: v for k, v in other.config.items() if k not in unknown} == known
        ]
        if len(matches) == 1:
            target = matches[0]
            order = {id(r): i for i, r in enumerate(results)}
            target.runs = sorted(target.runs + group.runs, key=lambda r: order[id(r)])
            del groups[key]
    return groups


CellKey = tuple[str, str, str, str, str]  # tool, model, dataset, row variant, column label


def _layout(
    results: list[dict[str, Any]],
) -> tuple[dict[CellKey, dict[str, Any]], dict[str, Column]]:
    """The run shown per cell, and the columns, for ``results`` oldest first."""
    with_gpu = several_gpu_kinds(results)
    groups = list(configurations(results).values())
    parts = {g.key: configkey.split(g.config) for g in groups}
    bases: dict[str, str] = {}
    workloads: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    hardware: dict[str, dict[str, dict[str, Any]]] = {}
    for g in groups:
        spec = g.shown.get("spec") or {}
        base = (spec.get("tool", "?"), spec.get("model", "?"), spec.get("dataset", "?"))
        bases[g.key] = hardware_label(g.shown, with_gpu=with_gpu)
        work, hard = parts[g.key]
        workloads.setdefault(base, {})[configkey.canonical(work)] = work
        hardware.setdefault(bases[g.key], {})[configkey.canonical(hard)] = hard
    row_fields = {b: configkey.varying_fields(list(w.values())) for b, w in workloads.items()}
    col_fields = {b: configkey.varying_fields(list(h.values())) for b, h in hardware.items()}
    cells: dict[CellKey, dict[str, Any]] = {}
    columns: dict[str, Column] = {}
    for g in groups:
        shown = g.shown
        spec = shown.get("spec") or {}
        base = (spec.get("tool", "?"), spec.get("model", "?"), spec.get("dataset", "?"))
        work, hard = parts[g.key]
        variant = configkey.label(work, row_fields[base])
        fields = col_fields[bases[g.key]]
        label = bases[g.key] + (f" · {configkey.label(hard, fields)}" if fields else "")
        cells[(*base, variant, label)] = shown
        column = column_of(shown, with_gpu=with_gpu)
        columns.setdefault(
            label, Column(label, column.num_gpus, column.cpu_devices, column.gpu_name)
        )
    return cells, columns


def latest_per_cell(results: list[dict[str, Any]]) -> dict[CellKey, dict[str, Any]]:
    """(tool, model, dataset, row variant, column label) -> the run shown; one per
    configuration key; ``results`` oldest first."""
    return _layout(results)[0]


def _derived(result: dict[str, Any], key: str) -> dict[str, Any]:
    """Achieved TFLOP/s or MFU (%) as a mean/std/n dict, scaled from images/sec."""
    summary = result.get("summary") or {}
    fl = summary.get("flops") if isinstance(summary.get("flops"), dict) else {}
    speed = summary.get("images_per_sec")
    speed = speed if isinstance(speed, dict) else {}
    base = fl.get("achieved_total") if key == "tflops" else fl.get("mfu")
    if base is None or not speed.get("mean"):
        return {}
    factor = (1e-12 if key == "tflops" else 100.0) * base / speed["mean"]
    std = speed.get("std")
    return {
        "mean": speed["mean"] * factor,
        "std": None if std is None else std * factor,
        "n": speed.get("n"),
    }


def metric_value(result: dict[str, Any] | None, key: str) -> Value:
    if result is None:
        return Value(None)
    summary = result.get("summary") or {}
    stats = _derived(result, key) if key in DERIVED else summary.get(key)
    stats = stats if isinstance(stats, dict) else {}
    status = run_status(result)
    mean = stats.get("mean") if status in USABLE else None
    return Value(mean, stats.get("std"), int(stats.get("n") or 0), status, result.get("run_id"))


def ratio(a: Value, b: Value, divisor: float = 1.0) -> Ratio:
    """(b / a) / divisor, e.g. a speedup (divisor 1) or a scaling efficiency (divisor N)."""
    if not a.shown or not b.shown:
        missing = a if not a.shown else b
        return Ratio(None, None, missing.status)
    if not a.mean:
        return Ratio(None, None, "-")
    value = b.mean / a.mean / divisor
    rel = 0.0
    for v in (a, b):
        if v.std is not None and v.mean:
            rel += (v.std / v.mean) ** 2
    return Ratio(value, value * math.sqrt(rel), "ok")


@dataclass
class SpeedupTable:
    title: str
    description: str
    headers: list[str]
    pairs: list[tuple[Column, Column, float]]  # (baseline, target, divisor for efficiency)
    rows: list[tuple[Row, list[Ratio], list[Ratio]]]  # speedups and efficiencies per pair


@dataclass
class ReportData:
    title: str
    columns: list[Column]
    rows: list[Row]
    cells: dict[CellKey, dict[str, Any]]  # (tool, model, dataset, variant, column label)
    info: list[str] = field(default_factory=list)  # lines about the source
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)
    sweep: str | None = None  # the sweep reported on, if one

    def result(self, row: Row, column: Column) -> dict[str, Any] | None:
        return self.cells.get((row.tool, row.model, row.dataset, row.variant, column.label))

    def not_run_by_reason(self) -> dict[str, list[str]]:
        """Why -> the runs not run for that reason."""
        groups: dict[str, list[str]] = {}
        for what, why in self.not_run:
            groups.setdefault(why, []).append(what)
        return groups

    def value(self, metric: str, row: Row, column: Column) -> Value:
        return metric_value(self.result(row, column), metric)

    def pairs(self) -> list[tuple[str, str]]:
        """(dataset, model) in row order."""
        return list(dict.fromkeys((r.dataset, r.model) for r in self.rows))

    def tools(self, dataset: str, model: str) -> list[str]:
        """The series of a (dataset, network) chart: row labels (tool and variant)."""
        return [r.label for r in self.rows if (r.dataset, r.model) == (dataset, model)]

    def speedups(self) -> list[SpeedupTable]:
        cpus = [c for c in self.columns if c.is_cpu]
        ones = [c for c in self.columns if c.num_gpus == 1]
        tables = []
        pairs = [(cpu, gpu, 1.0) for gpu in ones for cpu in cpus]
        if pairs:
            tables.append(
                self._speedup_table(
                    "Speedup: CPU to 1 GPU",
                    "images/sec on one GPU divided by images/sec on the CPU",
                    pairs,
                )
            )
        scaling = [
            (one, many, many.num_gpus / one.num_gpus)
            for one in ones
            for many in self.columns
            if many.num_gpus > 1 and many.gpu_name == one.gpu_name
        ]
        if scaling:
            tables.append(
                self._speedup_table(
                    "Scaling: 1 to N GPUs",
                    "images/sec on N GPUs divided by images/sec on one GPU of the same kind; "
                    "efficiency = speedup / N (1 = perfect scaling)",
                    scaling,
                )
            )
        return tables

    def _speedup_table(
        self, title: str, description: str, pairs: list[tuple[Column, Column, float]]
    ) -> SpeedupTable:
        headers = [f"{target.label} / {base.label}" for base, target, _ in pairs]
        rows = []
        for row in self.rows:
            speed = [
                ratio(self.value("images_per_sec", row, base), self.value("images_per_sec", row, t))
                for base, t, _ in pairs
            ]
            eff = [
                ratio(
                    self.value("images_per_sec", row, base), self.value("images_per_sec", row, t), n
                )
                for base, t, n in pairs
            ]
            rows.append((row, speed, eff))
        return SpeedupTable(title, description, headers, pairs, rows)


def build(
    results: list[dict[str, Any]],
    *,
    title: str = "Benchmark report",
    info: list[str] | None = None,
    not_run: list[tuple[str, str]] | None = None,
    tool_order: list[str] | None = None,
) -> ReportData:
    """The report of ``results`` (oldest first, as the store returns them)."""
    cells, columns = _layout(results)
    dataset_order = {name: i for i, name in enumerate(datasets.DATASETS)}
    model_order = {name: i for i, name in enumerate(models.MODELS)}
    tool_rank = {name: i for i, name in enumerate(tool_order or [])}
    rows = sorted(
        {Row(ds, model, tool, variant) for tool, model, ds, variant, _ in cells},
        key=lambda r: (
            dataset_order.get(r.dataset, 99),
            r.dataset,
            model_order.get(r.model, 99),
            r.model,
            tool_rank.get(r.tool, 99),
            r.tool,
            r.variant,
        ),
    )
    data = ReportData(
        title=title,
        columns=sorted(columns.values(), key=Column.sort_key),
        rows=rows,
        cells=cells,
        info=list(info or []),
        not_run=list(not_run or []),
    )
    data.notes = _notes(data)
    return data


def _notes(data: ReportData) -> list[str]:
    shown = list(data.cells.values())
    notes = [
        "Each value is the mean ± standard deviation over the repeats (fresh processes) "
        "of one run that finished ok; when a cell has several runs, the latest ok one is "
        "shown.",
        "GPU memory and power are averages over the timed phase, summed over the GPUs the "
        "run used (NVML); energy per image is the timed phase's energy over its images (the "
        "GPU energy counter, or the CPU's RAPL counter on CPU runs, where available).",
    ]
    partial = sum(run_status(r) == "partial" for r in shown)
    if partial:
        notes.append(
            f"* partial: {partial} run(s) had failed repeats; their values are the "
            "mean over the repeats that finished ok."
        )
    if any(row.variant for row in data.rows) or len(data.cells) > len(
        {(t, m, d, hardware_label(r)) for (t, m, d, _, _), r in data.cells.items()}
    ):
        notes.append(
            "Runs are grouped by configuration key (batch, precision, data source, backend "
            "options, threads, timing mode, devices, harness version): a framework with runs "
            "of several configurations has one row per configuration, and a column one per "
            "hardware setting, labelled with what differs."
        )
    if any(metric_value(r, "tflops").shown for r in shown):
        notes.append(
            "TFLOP/s = images/sec x training FLOPs per image (3 x forward; 1 multiply-add = "
            "2 FLOPs; convolutions and dense layers); MFU = FLOP/s per device / the device's "
            "peak for the run's precision (GPUs: published dense peaks; CPUs: the GEMM peak "
            "measured by `python -m harness peak`)."
        )
    synthetic = sum(bool(r.get("synthetic")) for r in shown)
    if synthetic:
        notes.append(
            f"{synthetic} of {len(shown)} runs shown trained on synthetic data "
            "(the input pipeline is not measured)."
        )
    return notes
