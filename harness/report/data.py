"""What a report shows, computed once from stored run results, rendered by the others.

The table is the study's: one row per (metric, dataset, network, framework), one
column per hardware configuration. A *cell* is one configuration (its key,
harness.store.configkey: batch, precision, data source, options, threads, timing mode, ...)
and may have several stored runs; the report uses the latest run whose status is ``ok``,
else the latest ``partial`` one (some repeats failed: the mean is over the ok ones,
marked), else the latest run of any status, whose status the cell then shows ("oom",
...). Cells with no run show "-". A column is a hardware configuration: the sweep file's
label for it, else "CPU", "CPU x2", "1 GPU", "2 GPUs", with the GPU model appended
when the runs used more than one kind of GPU. Two configurations never share a cell:
when a framework has runs of several workload configurations (batch, precision, ...)
it gets one row per configuration, labelled with the fields that differ ("mytool ·
batch 64"); when runs under one column label differ in hardware settings (threads, CPU
or GPU model), the column splits the same way ("CPU · threads 1").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import datasets, models
from harness.monitor.summary import ENERGY_DISAGREEMENT_THRESHOLD
from harness.store import bottleneck, configkey, metrics
from harness.store.metrics import Metric
from harness.store.schema import RunResult

# Every figure a report can show, in the order it shows them (harness.store.metrics:
# those of the task with ``report``); a report leaves out those that no run in it has
# (ReportData.metrics), so a CPU-only report has no GPU rows. METRICS and
# INFERENCE_METRICS are the built-in ones; a report asks the registry (report_metrics).
METRICS = tuple(metrics.for_task("train", report=True))
METRIC = {m.key: m for m in METRICS}


def report_metrics(task: str) -> list[Metric]:
    """The metrics a report of ``task`` runs can show, in order (those registered too)."""
    return metrics.for_task(task, report=True)


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
        """The framework column: ``mytool``, or ``mytool · batch 64``."""
        return f"{self.tool} · {self.variant}" if self.variant else self.tool


@dataclass(frozen=True)
class Value:
    """One number of the table: the mean and std over a run's ok repeats, or a status."""

    mean: float | None
    std: float | None = None
    n: int = 0
    status: str = "-"  # the run's status; "-" for no run
    run_id: str | None = None
    contended: bool = False  # another process used the run's GPUs or CPU cores (marked †)

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


def hardware_label(result: RunResult, *, with_gpu: bool = False) -> str:
    """The column label: the sweep's name for it, else "CPU", "2 GPUs" (+ " · A100")."""
    tags = result.spec.tags or {}
    if tags.get("hardware_label"):
        return str(tags["hardware_label"])
    label = result.hardware or "?"
    gpu = short_gpu(result.gpu_name)
    return f"{label} · {gpu}" if gpu and with_gpu else label


def several_gpu_kinds(results: Iterable[RunResult]) -> bool:
    """Whether the runs used more than one GPU model (then labels name the GPU)."""
    return len({r.gpu_name for r in results if r.gpu_name}) > 1


def column_of(result: RunResult, *, with_gpu: bool = False) -> Column:
    return Column(
        hardware_label(result, with_gpu=with_gpu),
        result.spec.num_gpus,
        result.spec.cpu_devices or 1,
        short_gpu(result.gpu_name),
    )


def run_status(result: RunResult) -> str:
    return result.summary.status or "?"


def task_of(result: RunResult) -> str:
    """``train`` or ``inference`` (runs stored before the task existed trained)."""
    return getattr(result.spec, "task", None) or "train"


def memory_limits(results: Iterable[RunResult]) -> list[str]:
    """One line per (tool, model, dataset, hardware, precision, task) where a batch ran out
    of memory: the largest batch that ran and the smallest that did not."""
    groups: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    for r in results:
        batch = r.spec.batch_size
        if batch is None or run_status(r) not in (*USABLE, "oom"):
            continue
        key = (*base_of(r), hardware_label(r, with_gpu=True), r.spec.precision, task_of(r))
        ran, failed = groups.setdefault(key, ([], []))
        (failed if run_status(r) == "oom" else ran).append(batch)
    lines = []
    for key, (ran, failed) in sorted(groups.items()):
        if not failed:
            continue
        below = [b for b in ran if b < min(failed)]
        lines.append(
            f"{' · '.join(key)}: largest batch that ran {max(below) if below else '-'}, "
            f"smallest that ran out of memory {min(failed)}"
        )
    return lines


def base_of(result: RunResult) -> tuple[str, str, str]:
    """(tool, model, dataset) of a run."""
    return (result.spec.tool, result.spec.model, result.spec.dataset)


def pick(runs: list[RunResult]) -> RunResult:
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
    runs: list[RunResult]

    @property
    def shown(self) -> RunResult:
        return pick(self.runs)


def configurations(results: list[RunResult]) -> dict[str, Configuration]:
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


def placements(
    results: list[RunResult], row_exclude: tuple[str, ...] = ()
) -> tuple[list[tuple[CellKey, Configuration]], dict[str, Column]]:
    """Where each configuration of ``results`` (oldest first) goes: its cell key (tool,
    model, dataset, row variant, column label), and the columns. ``row_exclude``: workload
    fields left out of the row variants (the inference table's batch-size column)."""
    with_gpu = several_gpu_kinds(results)
    groups = list(configurations(results).values())
    parts = {g.key: configkey.split(g.config) for g in groups}
    bases: dict[str, str] = {}
    workloads: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    hardware: dict[str, dict[str, dict[str, Any]]] = {}
    for g in groups:
        base = base_of(g.shown)
        bases[g.key] = hardware_label(g.shown, with_gpu=with_gpu)
        work, hard = parts[g.key]
        workloads.setdefault(base, {})[configkey.canonical(work)] = work
        hardware.setdefault(bases[g.key], {})[configkey.canonical(hard)] = hard
    row_fields = {
        b: [f for f in configkey.varying_fields(list(w.values())) if f not in row_exclude]
        for b, w in workloads.items()
    }
    col_fields = {b: configkey.varying_fields(list(h.values())) for b, h in hardware.items()}
    placed: list[tuple[CellKey, Configuration]] = []
    columns: dict[str, Column] = {}
    for g in groups:
        shown = g.shown
        base = base_of(shown)
        work, hard = parts[g.key]
        variant = configkey.label(work, row_fields[base])
        fields = col_fields[bases[g.key]]
        label = bases[g.key] + (f" · {configkey.label(hard, fields)}" if fields else "")
        placed.append(((*base, variant, label), g))
        column = column_of(shown, with_gpu=with_gpu)
        columns.setdefault(
            label, Column(label, column.num_gpus, column.cpu_devices, column.gpu_name)
        )
    return placed, columns


def _layout(
    results: list[RunResult],
) -> tuple[dict[CellKey, RunResult], dict[str, Column]]:
    """The run shown per cell, and the columns, for ``results`` oldest first."""
    placed, columns = placements(results)
    return {key: g.shown for key, g in placed}, columns


def latest_per_cell(results: list[RunResult]) -> dict[CellKey, RunResult]:
    """(tool, model, dataset, row variant, column label) -> the run shown; one per
    configuration key; ``results`` oldest first."""
    return _layout(results)[0]


def metric_value(result: RunResult | None, key: str) -> Value:
    """One cell: the metric's mean and std over the ok repeats in its shown unit, or the
    run's status."""
    if result is None:
        return Value(None)
    metric = metrics.get(key)
    found = metric.stat(result)
    status = run_status(result)
    mean = metric.shown(found.mean) if status in USABLE else None
    return Value(mean, metric.shown(found.std), found.n, status, result.run_id,
                 bool(result.contended or result.host_contended))  # fmt: skip


def measured(metrics: Iterable[Metric], results: Iterable[RunResult]) -> list[Metric]:
    """The metrics a report of ``results`` (the runs its cells show) has: those that some
    run has a value of, and those shown always (images/sec, which carries the statuses)."""
    shown = list(results)
    return [m for m in metrics if m.always or any(metric_value(r, m.key).shown for r in shown)]


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
    cells: dict[CellKey, RunResult]  # (tool, model, dataset, variant, column label)
    info: list[str] = field(default_factory=list)  # lines about the source
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    # where batches ran out of memory: the largest that ran, the smallest that did not
    memory_limits: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sweep: str | None = None  # the sweep reported on, if one
    # the metrics shown: those of METRICS that some run in the report has (see measured)
    metrics: list[Metric] = field(default_factory=lambda: report_metrics("train"))
    # the inference runs (--task inference), reported apart; None when there are none
    inference: InferenceData | None = None
    # (run label, verdict text) of each shown run with a bottleneck verdict
    bottlenecks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """No run of either task to report."""
        return not self.rows and self.inference is None

    def result(self, row: Row, column: Column) -> RunResult | None:
        return self.cells.get((row.tool, row.model, row.dataset, row.variant, column.label))

    def not_run_by_reason(self) -> dict[str, list[str]]:
        """Why -> the runs not run for that reason."""
        groups: dict[str, list[str]] = {}
        for what, why in self.not_run:
            groups.setdefault(why, []).append(what)
        return groups

    def value(self, metric: str, row: Row, column: Column) -> Value:
        return metric_value(self.result(row, column), metric)

    def has_data(self, metric: Metric, dataset: str, model: str) -> bool:
        """Whether some cell of the (dataset, network) chart has a value of ``metric``."""
        return any(
            self.value(metric.key, row, column).shown
            for row in self.rows
            if (row.dataset, row.model) == (dataset, model)
            for column in self.columns
        )

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
    results: list[RunResult],
    *,
    title: str = "Benchmark report",
    info: list[str] | None = None,
    not_run: list[tuple[str, str]] | None = None,
    tool_order: list[str] | None = None,
) -> ReportData:
    """The report of ``results`` (oldest first, as the store returns them): the study's
    table of the training runs, and the inference runs' own tables (:class:`InferenceData`)."""
    # a task with figures per batch (latencies) has tables of its own (per batch size)
    inference = [r for r in results if metrics.per_batch(task_of(r))]
    results = [r for r in results if not metrics.per_batch(task_of(r))]
    cells, columns = _layout(results)
    order = catalogue_order(tool_order)
    rows = sorted(
        {Row(ds, model, tool, variant) for tool, model, ds, variant, _ in cells},
        key=lambda r: (*order(r.dataset, r.model, r.tool), r.variant),
    )
    data = ReportData(
        title=title,
        columns=sorted(columns.values(), key=Column.sort_key),
        rows=rows,
        cells=cells,
        info=list(info or []),
        not_run=list(not_run or []),
        memory_limits=memory_limits([*results, *inference]),
        metrics=measured(report_metrics("train"), cells.values()) if cells else [],
    )
    data.notes = _notes(data) if cells or not inference else []
    data.bottlenecks = bottleneck_lines(data)
    if inference:
        data.inference = build_inference(inference, tool_order=tool_order)
    return data


def metric_notes(shown: list[Any], task: str) -> list[str]:
    """The notes of the metrics shown (harness.store.metrics: each metric's ``note``),
    each written once, in the metrics' order."""
    found = (metrics.get(m.key) for m in shown)
    return list(dict.fromkeys(n for m in found if m is not None and (n := m.note_for(task))))


def catalogue_order(tool_order: list[str] | None) -> Callable[..., tuple[Any, ...]]:
    """A sort key of (dataset, model, tool): the catalogues' order (datasets, then
    models), then ``tool_order``; unknown names after the known ones, by name. ``between``
    goes between the model and the tool."""
    dataset_order = {name: i for i, name in enumerate(datasets.DATASETS)}
    model_order = {name: i for i, name in enumerate(models.MODELS)}
    tool_rank = {name: i for i, name in enumerate(tool_order or [])}

    def order(dataset: str, model: str, tool: str, between: tuple = ()) -> tuple[Any, ...]:
        return (
            dataset_order.get(dataset, 99),
            dataset,
            model_order.get(model, 99),
            model,
            *between,
            tool_rank.get(tool, 99),
            tool,
        )

    return order


def bottleneck_lines(data: ReportData) -> list[tuple[str, str]]:
    """(run, verdict and its figures) for each shown run that has a verdict, in row order."""
    out = []
    for row in data.rows:
        for column in data.columns:
            result = data.result(row, column)
            found = result.summary.bottleneck if result is not None else None
            if found is not None and run_status(result) in USABLE:
                label = f"{row.tool} · {row.model} · {row.dataset} · {column.label}"
                out.append((label, bottleneck.text(found)))
    return out


def _partial_note(shown: list[RunResult], runs: str) -> list[str]:
    partial = sum(run_status(r) == "partial" for r in shown)
    if not partial:
        return []
    return [
        f"* partial: {partial} {runs} had failed repeats; their values are the mean over "
        "the repeats that finished ok."
    ]


def _synthetic_note(shown: list[RunResult], what: str) -> list[str]:
    synthetic = sum(bool(r.synthetic) for r in shown)
    return [f"{synthetic} of {len(shown)} {what}."] if synthetic else []


def _notes(data: ReportData) -> list[str]:
    shown = list(data.cells.values())
    notes = [
        "Each value is the mean ± standard deviation over the repeats (fresh processes) "
        "of one run that finished ok; when a cell has several runs, the latest ok one is "
        "shown.",
    ]
    notes += metric_notes(data.metrics, "train")
    notes += _partial_note(shown, "run(s)")
    if any(row.variant for row in data.rows) or len(data.cells) > len(
        {(t, m, d, hardware_label(r)) for (t, m, d, _, _), r in data.cells.items()}
    ):
        notes.append(
            "Runs are grouped by configuration key (batch, precision, data source, backend "
            "options, threads, timing mode, devices, harness version): a framework with runs "
            "of several configurations has one row per configuration, and a column one per "
            "hardware setting, labelled with what differs."
        )
    contended = [r for r in shown if r.contended]
    if contended:
        pids = sorted(
            {f"{o.get('pid')} ({o.get('name') or '?'})" for r in contended for o in r.contended}
        )
        notes.append(
            f"† contended: {len(contended)} run(s) shared their GPUs with other processes "
            f"(pid {', '.join(pids)}); their figures may be low."
        )
    notes += _energy_note(shown)
    host = [r for r in shown if r.host_contended]
    if host:
        names = sorted(
            {f"{o.get('pid')} ({o.get('name') or '?'})" for r in host for c in r.host_contended
             for o in c.get("top") or []}
        )  # fmt: skip
        notes.append(
            f"† CPU contended: {len(host)} run(s) shared their CPU cores with other processes "
            "or lost time to VM steal during warmup and timed"
            + (f" (pid {', '.join(names)})" if names else "")
            + "; their figures may be low."
        )
    notes += _synthetic_note(
        shown, "runs shown trained on synthetic data (the input pipeline is not measured)"
    )
    return notes


def _energy_note(shown: list[RunResult]) -> list[str]:
    """Runs whose GPU energy counter and power integral differ beyond the threshold."""
    flagged = [
        r.run_id
        for r in shown
        if (gap := r.summary.energy_disagreement) is not None
        and gap.max is not None
        and gap.max > ENERGY_DISAGREEMENT_THRESHOLD
    ]
    if not flagged:
        return []
    return [
        f"Energy: in {len(flagged)} run(s) ({', '.join(flagged)}) the GPU energy counter and "
        f"the integral of sampled power differ by more than "
        f"{ENERGY_DISAGREEMENT_THRESHOLD:.0%} in a repeat; the counter's figure is shown."
    ]


# --- inference runs ---------------------------------------------------------------------
#
# An inference run (--task inference) measures one batch size; ``--batch-size 1,8,64``
# stores one run per batch size. Its table has one row per (dataset, network, framework,
# hardware, batch size) and one column per figure, and its charts put the batch size
# along x, per (dataset, network, hardware): throughput, and the latency percentiles.

# Figures of an inference row, in the table's order (harness.store.metrics: those of
# the inference task with ``report``).
INFERENCE_METRICS = tuple(metrics.for_task("inference", report=True))
INFERENCE_METRIC = {m.key: m for m in INFERENCE_METRICS}
LATENCY_PERCENTILES = ("latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_p999_s")
inference_value = metric_value  # one cell of the inference table


@dataclass(frozen=True)
class InferenceRow:
    """One inference configuration: a framework on a hardware column at one batch size."""

    dataset: str
    model: str
    tool: str
    hardware: str  # the column label of the training table (CPU, 1 GPU, ...)
    batch_size: int | None
    variant: str = ""  # what tells it apart from the tool's other configurations

    @property
    def label(self) -> str:
        return f"{self.tool} · {self.variant}" if self.variant else self.tool


@dataclass
class InferenceData:
    """The inference half of a report."""

    rows: list[InferenceRow]
    cells: dict[InferenceRow, RunResult]
    columns: list[Column]  # the hardware configurations, in column order
    metrics: list[Metric]  # those of INFERENCE_METRICS some run has (and the always ones)
    notes: list[str] = field(default_factory=list)

    def value(self, metric: str, row: InferenceRow) -> Value:
        return metric_value(self.cells.get(row), metric)

    def groups(self) -> list[tuple[str, str, str]]:
        """(dataset, network, hardware) in row order: one pair of charts each."""
        return list(dict.fromkeys((r.dataset, r.model, r.hardware) for r in self.rows))

    def series(self, dataset: str, model: str, hardware: str) -> list[str]:
        """The frameworks (row labels) of one chart, in row order."""
        return list(
            dict.fromkeys(
                r.label
                for r in self.rows
                if (r.dataset, r.model, r.hardware) == (dataset, model, hardware)
            )
        )

    def batch_sizes(self, dataset: str, model: str, hardware: str) -> list[int | None]:
        """The batch sizes of one chart, ascending."""
        found = {
            r.batch_size
            for r in self.rows
            if (r.dataset, r.model, r.hardware) == (dataset, model, hardware)
        }
        return sorted(found, key=lambda b: (b is None, b or 0))

    def row(
        self, dataset: str, model: str, hardware: str, label: str, batch: int | None
    ) -> InferenceRow | None:
        for r in self.rows:
            if (r.dataset, r.model, r.hardware, r.label, r.batch_size) == (
                dataset, model, hardware, label, batch,
            ):  # fmt: skip
                return r
        return None


def build_inference(
    results: list[RunResult], *, tool_order: list[str] | None = None
) -> InferenceData:
    """The inference tables of ``results`` (inference runs, oldest first)."""
    placed, columns = placements(results, row_exclude=("batch_size",))
    cells: dict[InferenceRow, RunResult] = {}
    for (tool, model, dataset, variant, hardware), group in placed:
        shown = group.shown
        row = InferenceRow(dataset, model, tool, hardware, shown.spec.batch_size, variant)
        cells[row] = shown
    order = catalogue_order(tool_order)
    ordered = sorted(columns.values(), key=Column.sort_key)
    column_rank = {c.label: i for i, c in enumerate(ordered)}
    rows = sorted(
        cells,
        key=lambda r: (
            *order(r.dataset, r.model, r.tool, (column_rank.get(r.hardware, 99),)),
            r.variant,
            r.batch_size or 0,
        ),
    )
    shown = list(cells.values())
    data = InferenceData(rows, cells, ordered, measured(report_metrics("inference"), shown))
    data.notes = _inference_notes(data)
    return data


def _inference_notes(data: InferenceData) -> list[str]:
    shown = list(data.cells.values())
    notes = [
        "Inference: one row per batch size; each value is the mean ± standard deviation "
        "over the repeats (fresh processes) of the run shown. Latency is per batch, over "
        "the timed phase (the model's forward pass on batches already on the device); "
        "images/sec is the timed phase's throughput.",
    ]
    bases = {r.summary.inference.latency_basis for r in shown if r.summary.inference}
    if "window" in bases:
        notes.append(
            "Latency percentiles of runs timed in windows are over window time / batches "
            "(--sync-every 1 times every batch on its own)."
        )
    notes += metric_notes(data.metrics, "inference")
    notes += _partial_note(shown, "inference run(s)")
    notes += _synthetic_note(shown, "inference runs shown used synthetic inputs (no test pass: "
                             "no total inference time nor accuracy)")  # fmt: skip
    return notes
