"""The metrics: one declaration each, from which every consumer derives what it shows.

A :class:`Metric` says what a figure is called, its unit and how it is printed, whether
higher is better, how it is read from a run (its statistics over the ok repeats), and
the tasks it applies to. The results store's columns (harness.store.store), the
export's columns (harness.results.export), the report's tables (harness.report), the
comparison's figures (harness.results.compare) and the summary printed after a run
(harness.cli.summary) all come from :data:`REGISTRY`, in its order.

Adding a metric is one :func:`register_metric` call (or a line in :data:`BUILTIN`):
see docs/metrics.md. A metric's name is also its store column and export column, so a
name, once stored, is never renamed (stored results must still read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass
from typing import Any

from harness.store.schema import RepeatRecord, RunResult, Stat

TASKS = ("train", "inference")
TRAIN: tuple[str, ...] = ("train",)
INFERENCE: tuple[str, ...] = ("inference",)


@dataclass(frozen=True)
class Metric:
    """One figure of a run.

    ``read`` gives its statistics over the ok repeats (raw units: seconds, a fraction)
    or None; ``scale`` turns a raw value into the unit shown (``unit``, ``digits``
    decimals). What the metric is part of:

    - ``tasks``: the tasks whose report, comparison and summary show it;
    - ``column``: its SQL type in the store's ``runs`` table ("" : not stored); with
      ``std_column`` also ``<name>_std``;
    - ``export``: the export's ``<name>`` and ``<name>_std`` columns (``std``), plus
      ``<name>_<field>`` for each Stat field in ``extra``;
      (store and export columns are named ``stored_as`` where it is set);
    - ``report``: a row (training) or column (inference) of the report's tables;
    - ``summary``: the label of its line in the summary after a run ("" : none);
    - ``compare``: the short name of a figure compared A against B ("" : not compared),
      named ``compare_stem`` in the comparison's CSV;
    - ``per_batch``: a figure of one batch size (a latency per batch): the runs of a
      task with such a metric are never compared, nor merged, across batch sizes;
    - ``note``: how it is measured, under the report's table where a run has it (a
      ``{task: note}`` mapping where the tasks differ; metrics measured together share
      one note, written once).
    """

    name: str
    title: str  # the report's label, with the unit: "GPU power (W)"
    unit: str  # of the shown value (after scale)
    digits: int
    read: Callable[[RunResult], Stat | None]
    _: KW_ONLY
    higher_is_better: bool = True
    tasks: tuple[str, ...] = TASKS
    scale: float = 1.0  # stored value x scale = shown value
    axis: str = ""  # a chart's y-axis label; default: the title
    always: bool = False  # shown in a report even when no run has it (carries statuses)
    column: str = ""  # SQL type of its store column
    std_column: bool = False
    export: bool = True
    std: bool = True
    extra: tuple[str, ...] = ()
    report: bool = True
    summary: str = ""
    compare: str = ""
    compare_stem: str = ""
    stored_as: str = ""  # its store and export column, where it differs from the name
    per_batch: bool = False  # a figure of one batch size (a latency per batch)
    note: str | Mapping[str, str] = ""

    @property
    def key(self) -> str:
        return self.name

    @property
    def column_name(self) -> str:
        """Its column in the store and the export."""
        return self.stored_as or self.name

    @property
    def csv_stem(self) -> str:
        """The prefix of its columns in the comparison's CSV."""
        return self.compare_stem or self.column_name

    @property
    def axis_label(self) -> str:
        return self.axis or self.title

    def applies(self, task: str) -> bool:
        return task in self.tasks

    def note_for(self, task: str) -> str:
        """The report's note on it for ``task`` ("" : none)."""
        return self.note if isinstance(self.note, str) else self.note.get(task, "")

    def stat(self, result: RunResult) -> Stat:
        """Its statistics for ``result`` (an empty Stat where the run has none)."""
        found = self.read(result)
        return found if isinstance(found, Stat) else Stat()

    def shown(self, value: float | None) -> float | None:
        """A raw value in the shown unit."""
        return None if value is None else value * self.scale

    def text(self, value: float | None) -> str:
        """A raw value as printed: ``1,234.5 W`` (``-`` when unknown)."""
        if value is None:
            return "-"
        return f"{value * self.scale:,.{self.digits}f} {self.unit}".rstrip()

    def export_columns(self) -> tuple[str, ...]:
        if not self.export:
            return ()
        name = self.column_name
        stds = (f"{name}_std",) if self.std else ()
        return (name, *stds, *(f"{name}_{f}" for f in self.extra))

    def export_values(self, result: RunResult) -> dict[str, Any]:
        found, name = self.stat(result), self.column_name
        row = {name: found.mean, f"{name}_std": found.std}
        row |= {f"{name}_{f}": getattr(found, f) for f in self.extra}
        return {k: v for k, v in row.items() if k in self.export_columns()}

    def store_columns(self) -> dict[str, tuple[str, Callable[[RunResult], Any]]]:
        """Its ``runs`` columns: name -> (SQL type, value of a run)."""
        if not self.column:
            return {}
        name = self.column_name
        out = {name: (self.column, lambda r: self.stat(r).mean)}
        if self.std_column:
            out[f"{name}_std"] = (self.column, lambda r: self.stat(r).std)
        return out


# --- readers ---------------------------------------------------------------------------


def summary_stat(name: str) -> Callable[[RunResult], Stat | None]:
    """A RunSummary statistic by name (``images_per_sec``, ``gpu_power_w``...)."""
    return lambda r: r.summary.metric(name)


def inference_stat(name: str) -> Callable[[RunResult], Stat | None]:
    """An InferenceSummary statistic (None for a run without one: training)."""

    def read(result: RunResult) -> Stat | None:
        part = result.summary.inference
        found = getattr(part, name, None) if part is not None else None
        return found if isinstance(found, Stat) else None

    return read


def over_repeats(get: Callable[[RepeatRecord], float | None]) -> Callable[[RunResult], Stat]:
    """Aggregating a per-repeat figure: its statistics over the ok repeats."""
    return lambda r: Stat.of([float(v) for x in r.repeats if x.ok and (v := get(x)) is not None])


def _accuracy(result: RunResult) -> Stat | None:
    """Top-1 accuracy: of the inference run's test pass, or of the last validation."""
    part = result.summary.inference
    return part.accuracy if part is not None and part.accuracy.n else result.summary.accuracy


def _flops(field: str) -> Callable[[RunResult], Stat | None]:
    """Achieved FLOP/s or MFU (a fraction); its std follows images/sec's."""

    def read(result: RunResult) -> Stat | None:
        fl, speed = result.summary.flops, result.summary.images_per_sec
        base = None if fl is None else getattr(fl, field)
        if base is None:
            return None
        std = speed.std * base / speed.mean if speed.mean and speed.std is not None else None
        return Stat(n=speed.n, mean=base, std=std)

    return read


def _model_mb(result: RunResult) -> Stat | None:
    part = result.summary.inference
    size = part.model_bytes if part is not None else None
    return Stat(n=1, mean=size / 1e6) if size else None


_THROUGHPUT = "throughput (images/s)"
_HOST_CPU = "host CPU utilisation (%, 100 = one core)"
_LATENCY_AXIS = "latency per batch (ms)"


def _latency(name: str, title: str, short: str, *, column: str = "") -> Metric:
    return Metric(
        name, title, "ms", 2, inference_stat(name), higher_is_better=False, tasks=INFERENCE,
        scale=1e3, axis=_LATENCY_AXIS, always=True, column=column, compare=short,
        compare_stem=name.removesuffix("_s") + "_ms", per_batch=True,
    )  # fmt: skip


_GPU_NOTE = (
    "GPU memory and power are averages over the timed phase, summed over the GPUs the run "
    "used (NVML)."
)
_FLOPS_NOTE = (
    "TFLOP/s = images/sec x training FLOPs per image (3 x forward; 1 multiply-add = 2 "
    "FLOPs; convolutions and dense layers); MFU = FLOP/s per device / the device's peak "
    "for the run's precision (GPUs: published dense peaks; CPUs: the GEMM peak measured "
    "by `python -m harness peak --tool T` through the run's framework, else by `python -m "
    "harness peak` through NumPy)."
)
_DYNAMIC_NOTE = (
    "Dynamic energy is the energy above idle: the timed phase's energy minus the idle power "
    "(sampled before the first repeat, --idle-baseline) x its duration."
)
_SETUP_NOTE = (
    "Load: the model file into a ready model on the device; session: session creation, "
    "compilation or tracing for the batch size; first inference: the first batch after "
    "both, alone."
)

_COMPILE_NOTE = (
    "Time to first step: from the worker's launch to the end of its first training step "
    "(interpreter, framework, data, model, compilation). Compilation: the training step "
    "compiled ahead of warmup and timed alone where the backend can (its prepare_training), "
    "else the first step less a steady step. First step: the first step alone. None of "
    "them is in the timed phase or in images/sec."
)

# The built-in metrics, in the order every consumer shows them (a report: those of its
# task; an inference table puts its metrics in columns).
BUILTIN: tuple[Metric, ...] = (
    _latency("latency_mean_s", "latency mean (ms)", "mean"),
    _latency("latency_p50_s", "p50 (ms)", "p50", column="REAL"),
    _latency("latency_p90_s", "p90 (ms)", "p90"),
    _latency("latency_p99_s", "p99 (ms)", "p99", column="REAL"),
    _latency("latency_p999_s", "p99.9 (ms)", "p99.9"),
    Metric("images_per_sec", "images/sec", "images/s", 1, summary_stat("images_per_sec"),
           axis=_THROUGHPUT, always=True, column="REAL", std_column=True,
           extra=("ci95", "median", "jitter", "olympic_mean")),
    Metric("gpu_memory_mib", "GPU memory (MiB)", "MiB", 0, summary_stat("gpu_memory_mib"),
           higher_is_better=False, tasks=TRAIN, column="REAL",
           summary="GPU memory used (timed)", note=_GPU_NOTE),
    Metric("gpu_power_w", "GPU power (W)", "W", 1, summary_stat("gpu_power_w"),
           higher_is_better=False, tasks=TRAIN, column="REAL", summary="GPU power (timed)",
           note=_GPU_NOTE),
    Metric("framework_memory_mib", "framework allocator peak (MiB)", "MiB", 0,
           summary_stat("framework_memory_mib"), higher_is_better=False, report=False,
           summary="framework allocator peak"),
    Metric("idle_power_w", "idle power (W)", "W", 1, summary_stat("idle_power_w"),
           higher_is_better=False, report=False),  # its summary line: cli.summary.energy_lines
    Metric("energy_j", "energy (J)", "J", 1, summary_stat("energy_j"),
           higher_is_better=False, column="REAL", report=False, summary="energy (timed)"),
    Metric("energy_dynamic_j", "dynamic energy (J)", "J", 1, summary_stat("energy_dynamic_j"),
           higher_is_better=False, report=False, summary="dynamic energy (timed, above idle)"),
    Metric("load_s", "load (s)", "s", 3, inference_stat("load_s"), higher_is_better=False,
           tasks=INFERENCE, note=_SETUP_NOTE),
    Metric("prepare_s", "session (s)", "s", 3, inference_stat("prepare_s"),
           higher_is_better=False, tasks=INFERENCE, note=_SETUP_NOTE),
    Metric("first_inference_s", "first inference (ms)", "ms", 2,
           inference_stat("first_inference_s"), higher_is_better=False, tasks=INFERENCE,
           scale=1e3, note=_SETUP_NOTE),
    Metric("total_inference_s", "total inference time (s)", "s", 2,
           inference_stat("total_inference_s"), higher_is_better=False, tasks=INFERENCE,
           column="REAL",
           note="Total inference time = load + session + one pass over the whole test split "
           "(input pipeline and copies included); accuracy is that pass's top-1."),
    Metric("joules_per_image", "energy per image (J)", "J", 4, summary_stat("joules_per_image"),
           higher_is_better=False, column="REAL", summary="energy per image", compare="J/image",
           note={"train": "Energy per image is the timed phase's energy over its images: the "
                 "GPU energy counter (or power integral) on GPU runs, the CPU package's RAPL "
                 "counter on CPU runs where it is readable (not the whole machine).",
                 "inference": "Energy per image is the timed phase's energy over its images."}),
    Metric("joules_per_image_dynamic", "dynamic energy per image (J)", "J", 4,
           summary_stat("joules_per_image_dynamic"), higher_is_better=False,
           summary="dynamic energy per image", compare="dyn J/image", note=_DYNAMIC_NOTE),
    Metric("energy_disagreement", "GPU energy counter vs power integral (%)", "%", 1,
           summary_stat("energy_disagreement"), higher_is_better=False, scale=100.0,
           report=False, summary="GPU energy counter vs power integral"),
    Metric("host_cpu_percent", "host CPU utilisation (%)", "%", 0,
           summary_stat("host_cpu_percent"), higher_is_better=False, tasks=TRAIN,
           axis=_HOST_CPU, summary="process-tree CPU (timed)",
           note="Host CPU utilisation is the CPU time of the run's process tree over the "
           "timed phase's wall time (100% = one core busy)."),
    Metric("host_rss_mib", "host memory peak (MiB)", "MiB", 0, summary_stat("host_rss_mib"),
           higher_is_better=False, tasks=TRAIN, summary="process-tree memory peak",
           note="Host memory peak is the largest resident set (RSS) of the run's process "
           "tree during the run."),
    Metric("execution_time_s", "execution time (s)", "s", 1, summary_stat("execution_time_s"),
           higher_is_better=False, tasks=TRAIN, column="REAL",
           note="Execution time is the study's: training (warmup included) and validation, "
           "setup excluded."),
    Metric("time_to_first_step_s", "time to first step (s)", "s", 2,
           summary_stat("time_to_first_step_s"), higher_is_better=False, tasks=TRAIN,
           summary="time to first step", note=_COMPILE_NOTE),
    Metric("compile_s", "compilation (s)", "s", 2, summary_stat("compile_s"),
           higher_is_better=False, tasks=TRAIN, summary="compilation (training step)",
           note=_COMPILE_NOTE),
    Metric("first_step_s", "first step (s)", "s", 3, summary_stat("first_step_s"),
           higher_is_better=False, tasks=TRAIN, note=_COMPILE_NOTE),
    Metric("data_wait_fraction", "data wait (% of timed)", "%", 1,
           summary_stat("data_wait_fraction"), higher_is_better=False, tasks=TRAIN,
           scale=100.0, summary="data wait (timed)",
           note="Data wait is the time the loop waited for the host's input pipeline over "
           "the timed phase's wall time (0 on synthetic data, which is on the device before "
           "the loop starts); the bottleneck verdict below the table is explained in "
           "docs/metrics.md."),
    Metric("accuracy", "accuracy (%)", "%", 1, _accuracy, scale=100.0, column="REAL",
           note={"train": "Accuracy is the last validation's top-1 accuracy."}),
    Metric("tflops", "achieved TFLOP/s", "TFLOP/s", 2, _flops("achieved_total"),
           tasks=TRAIN, scale=1e-12, column="REAL", std=False, stored_as="flops_per_sec",
           note=_FLOPS_NOTE),
    Metric("mfu", "MFU (%)", "%", 1, _flops("mfu"), tasks=TRAIN, scale=100.0, column="REAL",
           std=False, note=_FLOPS_NOTE),
    Metric("model_mb", "model file (MB)", "MB", 1, _model_mb, higher_is_better=False,
           tasks=INFERENCE, export=False),
)  # fmt: skip

_REGISTRY: dict[str, Metric] = {m.name: m for m in BUILTIN}


def registry() -> tuple[Metric, ...]:
    """Every metric, built-in and registered, in order."""
    return tuple(_REGISTRY.values())


def get(name: str) -> Metric:
    return _REGISTRY[name]


def register_metric(metric: Metric) -> None:
    """Adds ``metric`` after the others (a plugin's or a test's); its name must be new."""
    if metric.name in _REGISTRY or metric.column_name in {m.column_name for m in registry()}:
        raise ValueError(f"a metric named {metric.name!r} is already declared")
    for task in metric.tasks:
        if task not in TASKS:
            raise ValueError(f"metric {metric.name!r}: unknown task {task!r}")
    _REGISTRY[metric.name] = metric


def unregister_metric(name: str) -> None:
    if any(m.name == name for m in BUILTIN):
        raise ValueError(f"{name!r} is a built-in metric")
    _REGISTRY.pop(name, None)


@contextmanager
def registered(metric: Metric) -> Iterator[Metric]:
    """``metric`` registered for the duration of a ``with`` block."""
    register_metric(metric)
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


def for_task(task: str, *, report: bool = False) -> list[Metric]:
    """The metrics shown for a run of ``task`` (``report``: only the report's)."""
    return [m for m in _REGISTRY.values() if m.applies(task) and (m.report or not report)]


def compared(task: str) -> list[Metric]:
    """The figures a comparison sets side by side besides images/sec, for ``task``."""
    return [m for m in _REGISTRY.values() if m.compare and m.applies(task)]


def all_compared() -> list[Metric]:
    return [m for m in _REGISTRY.values() if m.compare]


def per_batch(task: str) -> bool:
    """Whether ``task`` has a figure per batch (a latency): its runs are compared and
    reported per batch size, and its step is a batch."""
    return any(m.per_batch for m in for_task(task))
