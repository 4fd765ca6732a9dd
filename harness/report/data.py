"""What a report shows, computed once from stored run results, rendered by the others.

The table is the study's: one row per (metric, dataset, network, framework), one
column per hardware configuration. A *cell* (tool, model, dataset, hardware) may have
several stored runs; the report uses the latest run whose status is ``ok``, else the
latest ``partial`` one (some repeats failed: the mean is over the ok ones, marked),
else the latest run of any status, whose status the cell then shows ("oom", ...).
Cells with no run show "-". A column is a hardware configuration: the sweep file's
label for it, else "CPU", "CPU x2", "1 GPU", "2 GPUs", with the GPU model appended
when the runs used more than one kind of GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import datasets, models


@dataclass(frozen=True)
class Metric:
    key: str  # in result["summary"]
    title: str
    unit: str
    digits: int


METRICS = (
    Metric("images_per_sec", "images/sec", "images/s", 1),
    Metric("gpu_memory_mib", "GPU memory (MiB)", "MiB", 0),
    Metric("gpu_power_w", "GPU power (W)", "W", 1),
    Metric("joules_per_image", "energy per image (J)", "J", 4),
)
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


def latest_per_cell(
    results: list[dict[str, Any]],
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(tool, model, dataset, hardware label) -> the run shown; ``results`` oldest first."""
    with_gpu = several_gpu_kinds(results)
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        spec = result.get("spec") or {}
        label = hardware_label(result, with_gpu=with_gpu)
        key = (spec.get("tool", "?"), spec.get("model", "?"), spec.get("dataset", "?"), label)
        groups.setdefault(key, []).append(result)
    return {key: pick(runs) for key, runs in groups.items()}


def metric_value(result: dict[str, Any] | None, key: str) -> Value:
    if result is None:
        return Value(None)
    stats = (result.get("summary") or {}).get(key)
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
    cells: dict[tuple[str, str, str, str], dict[str, Any]]  # (tool, model, dataset, label)
    info: list[str] = field(default_factory=list)  # lines about the source
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)
    sweep: str | None = None  # the sweep reported on, if one

    def result(self, row: Row, column: Column) -> dict[str, Any] | None:
        return self.cells.get((row.tool, row.model, row.dataset, column.label))

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
        return [r.tool for r in self.rows if (r.dataset, r.model) == (dataset, model)]

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
    cells = latest_per_cell(results)
    columns: dict[str, Column] = {}
    with_gpu = several_gpu_kinds(results)
    for result in results:
        column = column_of(result, with_gpu=with_gpu)
        columns.setdefault(column.label, column)
    dataset_order = {name: i for i, name in enumerate(datasets.DATASETS)}
    model_order = {name: i for i, name in enumerate(models.MODELS)}
    tool_rank = {name: i for i, name in enumerate(tool_order or [])}
    rows = sorted(
        {Row(ds, model, tool) for tool, model, ds, _ in cells},
        key=lambda r: (
            dataset_order.get(r.dataset, 99),
            r.dataset,
            model_order.get(r.model, 99),
            r.model,
            tool_rank.get(r.tool, 99),
            r.tool,
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
    synthetic = sum(bool(r.get("synthetic")) for r in shown)
    if synthetic:
        notes.append(
            f"{synthetic} of {len(shown)} runs shown trained on synthetic data "
            "(the input pipeline is not measured)."
        )
    return notes
