"""The result records, typed and versioned, and their one JSON codec.

A *repeat record* (:class:`RepeatRecord`) is what one worker process measured; a *run
result* (:class:`RunResult`) holds a run's repeats, the environment and the summary over
the repeats (:class:`RunSummary`). Every writer builds these classes and every reader
(the store's columns, reports, ``compare``, ``export``, the terminal summary, sweeps)
reads their attributes, so a renamed field fails where it is used, not silently.

Serialised documents carry ``schema_version``. Version 0 is what the harness wrote
before the records were typed (no ``schema_version``): it is read leniently, missing
fields taking their defaults and fields this version does not know being dropped (the
store keeps the original JSON). A document of the current version must not hold
unknown fields (:class:`SchemaError`), and one of a newer version is refused.

Free-form parts stay dictionaries on purpose: what a backend says about itself
(``framework``), the worker's plan, the machine (``environment``), the monitor's
per-phase samples and the configuration (``config``, see harness.store.configkey).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.spec import RunSpec
from harness.store import stats, strictjson
from harness.store.bottleneck import Bottleneck
from harness.store.strictjson import finite

SCHEMA_VERSION = 1

T = TypeVar("T")


class SchemaError(ValueError):
    """A document that is not a record of a version this harness reads."""


@dataclass
class Stat:
    """Statistics of a sample (see harness.store.stats.describe)."""

    n: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    ci95: float | None = None
    median: float | None = None
    jitter: float | None = None
    olympic_mean: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(**stats.describe(values))  # type: ignore[arg-type]


# --- one repeat ---------------------------------------------------------------------


@dataclass
class Timed:
    """The timed phase of a repeat."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    images_per_sec: float | None = None
    step_time_s: Stat = field(default_factory=Stat)
    # per step: window time / steps per window ("window"), each step timed on its own
    # ("step"), or the device's own per-step timers ("device")
    step_time_basis: str | None = None
    windows: int = 0
    window_steps: int | None = None
    window_images_per_sec: Stat = field(default_factory=Stat)
    ci95_rel: float | None = None


@dataclass
class Warmup:
    steps: int = 0
    seconds: float = 0.0
    first_step_s: float | None = None  # the first step alone (compilation included)
    windows: int = 0
    end: str | None = None  # how the warmup ended: "steady", "fixed", a bound


@dataclass
class Timing:
    """How the worker timed the repeat (its ``timing`` event)."""

    mode: str | None = None  # window | per-step | device-events
    sync_every: int | None = None
    window_steps: int | None = None
    window_target_s: float | None = None
    warmup_end: str | None = None
    warmup_steps: int | None = None
    warmup_windows: int | None = None
    length: str | None = None  # how the timed phase's length was decided
    timed_windows: int | None = None
    ci95_rel: float | None = None
    min_time_s: float | None = None
    max_time_s: float | None = None


@dataclass
class DataSource:
    synthetic: bool | None = None
    description: str | None = None


@dataclass
class Validation:
    epoch: int | None = None
    images: int | None = None
    seconds: float | None = None
    loss: float | None = None
    accuracy: float | None = None
    synthetic: bool | None = None


@dataclass
class Loss:
    first: float | None = None
    last: float | None = None


@dataclass
class ResourceTimed:
    """The monitor's figures over the timed phase (all its windows)."""

    windows: int = 0
    gpu_power_w: float | None = None
    gpu_power_max_w: float | None = None
    gpu_memory_mib: float | None = None
    gpu_memory_max_mib: float | None = None
    gpu_process_memory_max_mib: float | None = None
    gpu_utilization_pct: float | None = None
    throttled: bool = False
    energy_j: float | None = None
    energy_from: str | None = None  # "gpu" (NVML counter or power integral) or "cpu" (RAPL)
    joules_per_image: float | None = None
    host_cpu_percent: float | None = None
    # energy above idle: energy_j - the idle baseline's power x the time covered
    # (harness.monitor.summary); the baseline is sampled before the first repeat
    idle_power_w: float | None = None  # GPUs' summed idle power (GPU runs), else RAPL's
    idle_baseline_s: float | None = None  # how long the idle baseline sampled
    energy_dynamic_j: float | None = None
    joules_per_image_dynamic: float | None = None
    # GPU runs: NVML's energy counter and the integral of sampled power, both summed over
    # the GPUs, and the largest GPU's |integral - counter| / counter, flagged above
    # harness.monitor.summary.ENERGY_DISAGREEMENT_THRESHOLD
    energy_counter_j: float | None = None
    energy_integral_j: float | None = None
    energy_disagreement: float | None = None
    energy_disagreement_flagged: bool = False
    # several GPUs: each one's energy and energy above idle, by NVML index
    energy_per_device_j: dict[str, float] | None = None
    energy_dynamic_per_device_j: dict[str, float] | None = None
    energy_reason: str | None = None  # why energy_j is None


@dataclass
class Resources:
    """What the monitor measured during a repeat (harness.monitor)."""

    interval_s: float | None = None
    phases: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None  # the idle baseline, when one was taken
    errors: list[dict[str, Any]] = field(default_factory=list)
    sampler: dict[str, Any] = field(default_factory=dict)
    timed: ResourceTimed | None = None


@dataclass
class InferenceRepeat:
    """What one repeat of an inference run measured (``--task inference``).

    The model file was written once per run, before the repeats; each repeat's fresh
    worker loads it (``load_s``), creates its session or compiles (``prepare_s``), times
    its first inference alone, then the per-batch latency in the timed phase (the same
    windows as training: exact per batch with ``--sync-every 1``, else window time /
    batches, as ``latency_basis`` says). With real data, ``test_pass_s`` is one pass over
    the whole test split (input pipeline, copies and predictions to the host included)
    and ``total_inference_s`` = load + prepare + that pass."""

    model_file: str | None = None
    model_bytes: int | None = None
    model_format: str | None = None
    batch_size: int | None = None
    load_s: float | None = None
    prepare_s: float | None = None
    first_inference_s: float | None = None
    latency_basis: str | None = None  # "batch" (each timed alone), "window" or "device"
    latency_mean_s: float | None = None
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    latency_p999_s: float | None = None
    images_per_sec: float | None = None
    test_images: int | None = None
    test_pass_s: float | None = None
    total_inference_s: float | None = None
    accuracy: float | None = None


@dataclass
class RepeatRecord:
    """Everything measured in one repeat (one worker process)."""

    status: str = "error"  # ok, oom, error, crashed, timeout, interrupted
    cause: str | None = None
    global_batch: int = 0
    run_id: str | None = None
    repeat: int | None = None
    started_at: str | None = None
    exit_code: int | None = None
    process_wall_s: float | None = None
    command: list[str] = field(default_factory=list)
    timed: Timed = field(default_factory=Timed)
    warmup: Warmup = field(default_factory=Warmup)
    timing: Timing = field(default_factory=Timing)
    # (start, end) monotonic seconds of each phase: setup, warmup, timed, validation
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    framework: dict[str, Any] | None = None
    data: DataSource | None = None
    plan: dict[str, Any] | None = None
    framework_memory: dict[str, Any] | None = None
    eval_compile_s: float | None = None
    # the training step's compilation: timed ahead of warmup where the backend compiles
    # ahead (basis "ahead"), else the first step less a steady step ("first step")
    compile_s: float | None = None
    compile_basis: str | None = None
    # from the worker's start to the end of its first training step (setup included)
    time_to_first_step_s: float | None = None
    data_wait_s: float | None = None
    data_wait_fraction: float | None = None
    bottleneck: Bottleneck | None = None  # input-, device- or host-bound, and why
    validation: list[Validation] = field(default_factory=list)
    loss: Loss | None = None
    execution_time_s: float | None = None  # training and validation, setup excluded
    train_validate_s: float | None = None  # the same without warmup
    validation_time_s: float | None = None
    resources: Resources | None = None
    inference: InferenceRepeat | None = None  # inference runs only
    # --nodes N: each node's rank, host and node-process pid (harness.run.node)
    nodes: list[dict[str, Any]] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        """The last validation's accuracy."""
        return self.validation[-1].accuracy if self.validation else None

    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> RepeatRecord:
        return load(cls, text)


# --- one run --------------------------------------------------------------------------


@dataclass
class TimingSummary:
    """How the ok repeats were timed, each as it happened."""

    mode: str | list[str] | None = None  # one mode, or the list when repeats differed
    window_steps: list[int | None] = field(default_factory=list)
    warmup_end: list[str | None] = field(default_factory=list)
    length: list[str | None] = field(default_factory=list)


@dataclass
class Flops:
    """FLOPs per image, achieved FLOP/s and MFU (harness.store.flops)."""

    forward_per_image: float | None = None
    train_per_image: float | None = None
    achieved_total: float | None = None
    achieved_per_device: float | None = None
    peak_per_device: float | None = None
    peak_source: str | None = None
    mfu: float | None = None
    note: str | None = None
    error: str | None = None  # why there are none (a fault while counting)


@dataclass
class InferenceSummary:
    """An inference run's figures over its ok repeats (see :class:`InferenceRepeat`)."""

    model_file: str | None = None
    model_bytes: int | None = None
    model_format: str | None = None
    latency_basis: str | None = None
    load_s: Stat = field(default_factory=Stat)
    prepare_s: Stat = field(default_factory=Stat)
    first_inference_s: Stat = field(default_factory=Stat)
    latency_mean_s: Stat = field(default_factory=Stat)
    latency_p50_s: Stat = field(default_factory=Stat)
    latency_p90_s: Stat = field(default_factory=Stat)
    latency_p99_s: Stat = field(default_factory=Stat)
    latency_p999_s: Stat = field(default_factory=Stat)
    total_inference_s: Stat = field(default_factory=Stat)
    accuracy: Stat = field(default_factory=Stat)


@dataclass
class RunSummary:
    """Figures over the repeats that finished ok."""

    status: str = "error"  # a repeat status, or "partial" (some repeats failed)
    repeats: int = 0
    repeats_ok: int = 0
    images_per_sec: Stat = field(default_factory=Stat)
    execution_time_s: Stat = field(default_factory=Stat)
    step_time_p50_s: Stat = field(default_factory=Stat)
    accuracy: Stat = field(default_factory=Stat)
    eval_compile_s: Stat = field(default_factory=Stat)
    compile_s: Stat = field(default_factory=Stat)
    first_step_s: Stat = field(default_factory=Stat)
    time_to_first_step_s: Stat = field(default_factory=Stat)
    data_wait_fraction: Stat = field(default_factory=Stat)
    bottleneck: Bottleneck | None = None  # the rules on the ok repeats' mean figures
    timing: TimingSummary = field(default_factory=TimingSummary)
    causes: list[str] = field(default_factory=list)
    # from the monitor, when one ran
    gpu_power_w: Stat | None = None
    gpu_memory_mib: Stat | None = None
    energy_j: Stat | None = None
    joules_per_image: Stat | None = None
    idle_power_w: Stat | None = None  # measured once, before the first repeat
    energy_dynamic_j: Stat | None = None
    joules_per_image_dynamic: Stat | None = None
    energy_disagreement: Stat | None = None  # GPU energy counter vs power integral
    host_cpu_percent: Stat | None = None
    host_rss_mib: Stat | None = None
    framework_memory_mib: Stat | None = None
    resource_notes: list[str] = field(default_factory=list)
    flops: Flops | None = None
    inference: InferenceSummary | None = None  # inference runs only

    def metric(self, name: str) -> Stat | None:
        """The statistics of a figure by its name (``images_per_sec``, ``gpu_power_w``...)."""
        value = getattr(self, name, None) if name in _STAT_FIELDS else None
        return value if isinstance(value, Stat) else None


@dataclass
class RunResult:
    """One run: its spec, machine, repeats and summary."""

    run_id: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    spec: RunSpec = field(default_factory=lambda: RunSpec("?", "?", "?"))
    hardware: str = "?"
    gpu_name: str | None = None
    global_batch: int | None = None
    launcher: str | None = None
    processes: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    sweep_id: str | None = None
    repeats: list[RepeatRecord] = field(default_factory=list)
    framework: dict[str, Any] | None = None
    synthetic: bool | None = None
    data: DataSource | None = None
    summary: RunSummary = field(default_factory=RunSummary)
    config: dict[str, Any] | None = None
    config_key: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def contended(self) -> list[dict[str, Any]]:
        """Other processes the monitor saw on the run's GPUs (pid, name, gpu, ...)."""
        return [
            other
            for r in self.repeats
            if r.resources is not None
            for other in r.resources.gpu.get("contended") or []
        ]

    @property
    def host_contended(self) -> list[dict[str, Any]]:
        """The repeats' host contention (``resources.host["contention"]``) where other
        processes or VM steal took more than the stated share of the run's cores
        (harness.monitor.contention); records stored before it have none."""
        return [
            found
            for r in self.repeats
            if r.resources is not None
            and (found := r.resources.host.get("contention") or {}).get("contended")
        ]

    def to_json(self, indent: int | None = 2) -> str:
        return dumps(self, indent=indent)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> RunResult:
        return load(cls, text)


_STAT_FIELDS = frozenset(f.name for f in dataclasses.fields(RunSummary) if "Stat" in str(f.type))


# --- the codec ------------------------------------------------------------------------


def to_dict(record: Any) -> dict[str, Any]:
    """The JSON-ready dict of a record (non-finite floats become None)."""
    return finite(dataclasses.asdict(record))


def dumps(record: Any, *, indent: int | None = 2) -> str:
    """Strict JSON (no NaN or Infinity tokens) of a record."""
    return strictjson.dumps(to_dict(record), indent=indent, default=str)


def load(cls: type[T], data: str | bytes | dict[str, Any]) -> T:
    """A record of type ``cls`` from its JSON text or dict, upgraded from older versions."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"a {cls.__name__} must be a JSON object, not {type(data).__name__}")
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise SchemaError(f"schema_version {version!r} is not a version")
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"schema_version {version} was written by a newer harness (this one reads "
            f"up to {SCHEMA_VERSION}); upgrade the harness"
        )
    strict = version == SCHEMA_VERSION
    data = {**data, "schema_version": SCHEMA_VERSION}
    return _decode(cls, data, cls.__name__, strict)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(kind: Any, value: Any, where: str, strict: bool) -> Any:
    """``value`` (parsed JSON) as type ``kind``; ``where`` names it in errors."""
    if kind is Any or (value is None and _optional(kind)):
        return value
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _decode(option, value, where, strict)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits no type")
    if origin is list:
        (item,) = typing.get_args(kind)
        _expect(value, list, where)
        return [_decode(item, v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
    if origin is tuple:
        _expect(value, (list, tuple), where)
        kinds = typing.get_args(kind)
        if len(kinds) != len(value):
            raise SchemaError(f"{where}: expected {len(kinds)} values, got {len(value)}")
        return tuple(_decode(k, v, where, strict) for k, v in zip(kinds, value, strict=True))
    if origin is dict:
        _, item = typing.get_args(kind)
        _expect(value, dict, where)
        return {str(k): _decode(item, v, f"{where}.{k}", strict) for k, v in value.items()}
    if kind is RunSpec:
        _expect(value, dict, where)
        return RunSpec.from_dict(value)
    if dataclasses.is_dataclass(kind):
        _expect(value, dict, where)
        hints = _hints(kind)
        unknown = [k for k in value if k not in hints]
        if unknown and strict:
            raise SchemaError(f"{where}: unknown field {unknown[0]!r}")
        fields = {
            k: _decode(hints[k], v, f"{where}.{k}", strict)
            for k, v in value.items()
            if k in hints and (strict or v is not None or _optional(hints[k]))
        }  # an old document's null in a field that is never null now: the default
        return kind(**fields)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{where}: {value!r} is not a number")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SchemaError(f"{where}: {value!r} is not an integer")
        return value
    if kind in (str, bool):
        _expect(value, kind, where)
        return value
    return value


def _optional(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(kind)


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SchemaError(f"{where}: expected {name}, got {type(value).__name__}")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """A record of type ``cls`` built now from ``data`` (current fields only)."""
    return _decode(cls, data, cls.__name__, True)


# --- operation benchmarks (python -m harness ops, see harness.ops) --------------------


@dataclass
class OpResult:
    """One kernel of an operation suite in one framework and precision."""

    kernel: str = ""  # kind: gemm | sparse_gemm | conv | rnn | allreduce
    name: str = ""
    shape: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    direction: str = "forward"  # forward | backward (forward + gradients)
    status: str = "ok"  # ok | unsupported | skipped | failed
    reason: str | None = None  # why it is not ok ("unsupported: ..." etc.)
    calls: int = 0  # timed calls
    time_us: Stat = field(default_factory=Stat)  # per call, over the timed windows
    flops: float | None = None  # per call
    tflops: float | None = None
    bytes: float | None = None  # all-reduce: bytes per device per call
    gb_per_s: float | None = None  # all-reduce: algorithm bandwidth
    bus_gb_per_s: float | None = None  # all-reduce: bus bandwidth, 2 (n - 1) / n x the above
    peak_tflops: float | None = None  # the device's peak for this precision
    peak_source: str | None = None
    percent_of_peak: float | None = None
    max_error: float | None = None  # max |result - NumPy| / max |NumPy| (None: not checked)
    warmup_end: str | None = None
    length: str | None = None
    wall_s: float | None = None  # warmup, timing and check together
    detail: dict[str, Any] = field(default_factory=dict)  # implementation, nnz, devices, ...


@dataclass
class OpSet:
    """The kernels of one kind, run in one worker process."""

    kind: str = ""
    status: str = "ok"  # ok | failed (the worker crashed or timed out)
    cause: str | None = None
    wall_s: float | None = None  # the worker process, start to end
    total_us: float | None = None  # sum of the ok kernels' mean time per call
    ops: list[OpResult] = field(default_factory=list)
    resources: dict[str, Any] | None = None


@dataclass
class OpsResult:
    """One ``python -m harness ops`` run: a suite's sets in one framework."""

    ops_id: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    tool: str = ""
    suite: str = ""
    scale: float = 1.0
    precision: str = "fp32"
    hardware: str = "cpu"
    devices: int = 1
    gpu_name: str | None = None
    min_time_s: float | None = None
    max_time_s: float | None = None
    framework: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    sets: list[OpSet] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def status(self) -> str:
        """failed when a worker failed or a kernel failed (unsupported and skipped are ok)."""
        ok = all(s.status == "ok" and all(o.status != "failed" for o in s.ops) for s in self.sets)
        return "ok" if self.sets and ok else "failed"

    def to_json(self, indent: int | None = 2) -> str:
        return dumps(self, indent=indent)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> OpsResult:
        return load(cls, text)
