"""RunSpec: one benchmark, as the user asked for it, validated and with defaults filled in."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from harness.backend import PRECISIONS
from harness.errors import InvalidValue, UsageError

# The study's training parameters (shared/brief.md): batch size and learning rate
# per (dataset family, model). Used when --batch-size / --lr are not given.
STUDY_DEFAULTS: dict[tuple[str, str], tuple[int, float]] = {
    ("mnist", "lenet"): (64, 0.01),
    ("cifar", "alexnet"): (128, 0.01),
    ("cifar", "resnet50"): (128, 0.1),
    ("cifar", "googlenet"): (128, 0.1),
    ("cifar", "vgg16"): (128, 0.01),
    ("imagenet", "alexnet"): (128, 0.01),
    ("imagenet", "resnet50"): (8, 0.1),
    ("imagenet", "googlenet"): (8, 0.1),
    ("imagenet", "vgg16"): (8, 0.01),
}
# Models the study did not run on a family use the family's usual batch and the
# model's usual learning rate.
FAMILY_BATCH = {"mnist": 64, "cifar": 128, "imagenet": 8}
MODEL_LR = {"lenet": 0.01, "alexnet": 0.01, "resnet50": 0.1, "googlenet": 0.1, "vgg16": 0.01}


@dataclass
class RunSpec:
    """What to run. None fields mean "use the default" until :func:`resolve` fills them."""

    tool: str
    model: str
    dataset: str
    num_gpus: int = -1  # -1: the CPU; N >= 1: N GPUs, data parallel
    gpu: str | None = None  # which GPUs: "0,2" (NVML indices) or a name match ("A100")
    cpu_devices: int = 1  # with num_gpus -1: split the CPU into this many data-parallel devices
    batch_size: int | None = None  # per device; None: the study's default for (dataset, model)
    learning_rate: float | None = None  # None: the study's default
    warmup_steps: int | None = None  # None: until the step time is steady; N: exactly N
    steps: int | None = None  # timed steps; None: adaptive length (ignored with epochs)
    min_time_s: float = 10.0  # adaptive length: measure at least this long
    max_time_s: float = 30.0  # adaptive length: stop here even if the CI is still wide
    epochs: int | None = None  # train whole epochs instead of a number of steps
    repeats: int = 3
    precision: str = "fp32"
    data_dir: str | None = None
    data_workers: int | None = None  # threads decoding JPEGs (ImageNet); None: one per core
    # --image-size S: MNIST-family and CIFAR-10 images upscaled to 3xSxS in the input
    # pipeline (the study's 224 for the ImageNet-shaped networks); None: native images
    image_size: int | None = None
    synthetic: bool | None = None  # None: real files if present, else synthetic
    validate: bool | None = None  # None: validate when training whole epochs on real data
    seed: int = 0
    sync_every: int | None = None  # None: windows of ~0.3 s; N: sync every N steps (1: per step)
    threads: int | None = None  # intra-op threads of the whole run; None: cores available
    timeout_s: float | None = 3600.0  # per repeat; None: no limit
    monitor_interval_s: float = 0.1  # resource sampling period
    idle_baseline_s: float = 2.0  # idle sampling before the first repeat; 0: none
    output_dir: str = "logs"
    python: str | None = None  # interpreter for the worker; None: found automatically
    dump_weights: str | None = None  # folder: save every replica's final weights (.npz)
    options: dict[str, str] = field(default_factory=dict)  # backend options (-o key=value)
    tags: dict[str, str] = field(default_factory=dict)  # free labels recorded with the result
    task: str = "train"  # "train" or "inference" (harness.run.inference)
    weights: str | None = None  # inference: canonical weights (.npz) instead of the initial ones
    onnx_file: str | None = None  # inference: a user's ONNX model (synthetic inputs)
    input_shape: list[int] | None = None  # with onnx_file: (C, H, W) when the file leaves it open
    nodes: int = 1  # data parallel over this many nodes, each with the devices above
    launcher: str | None = None  # --nodes > 1: local-nodes or srun; None: srun in an allocation

    @property
    def devices(self) -> int:
        """Data-parallel devices of each node (of the run, on one node)."""
        return self.num_gpus if self.num_gpus > 0 else self.cpu_devices

    @property
    def total_devices(self) -> int:
        """Data-parallel devices over all the run's nodes."""
        return self.devices * max(1, self.nodes)

    @property
    def global_batch(self) -> int:
        return (self.batch_size or 0) * self.total_devices

    @property
    def hardware(self) -> str:
        """A short label of the hardware configuration, for tables."""
        if self.num_gpus > 0:
            label = f"{self.num_gpus} GPU" + ("s" if self.num_gpus > 1 else "")
        else:
            label = "CPU" if self.cpu_devices == 1 else f"CPU x{self.cpu_devices}"
        return label if self.nodes == 1 else f"{self.nodes} nodes x {label}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValue(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):  # NaN would pass every comparison below
        raise InvalidValue(f"{name} must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "a positive number"
        raise InvalidValue(f"{name} must be {bound}, got {value}")


TASKS = ("train", "inference")
ONNX_FILE_MODEL = "onnx-file"  # the model name of an --onnx-file run


def batch_sizes(text: str | int | list[Any]) -> list[int]:
    """``--batch-size 1,8,64`` (or a sweep's list) as positive whole numbers, in order,
    without repeats; InvalidValue (one line) for anything else."""
    items = text if isinstance(text, list) else str(text).split(",")
    out: list[int] = []
    for item in items:
        word = str(item).strip()
        where = f" in {text!r}" if len(items) > 1 else ""
        if not isinstance(item, bool) and word.lstrip("+-").isdigit() and int(word) < 1:
            raise InvalidValue(f"--batch-size must be a positive number, got {word!r}{where}")
        if isinstance(item, bool) or not word.lstrip("+").isdigit():
            raise InvalidValue(
                f"--batch-size takes positive whole numbers, one or a list like 1,8,64; "
                f"got {word or 'an empty entry'!r}{where}"
            )
        if int(word) not in out:
            out.append(int(word))
    if not out:
        raise InvalidValue("--batch-size: no batch size given")
    return out


def check_values(spec: RunSpec) -> None:
    """Values no machine could run (InvalidValue): a zero batch, NaN, min > max time."""
    if spec.task not in TASKS:
        raise InvalidValue(f"unknown task {spec.task!r}; choose from: {', '.join(TASKS)}")
    if spec.num_gpus == 0 or spec.num_gpus < -1:
        raise InvalidValue(
            f"--num-gpus must be -1 (the CPU) or a positive count, got {spec.num_gpus}"
        )
    if spec.precision not in PRECISIONS:
        raise InvalidValue(
            f"unknown precision {spec.precision!r}; choose from: {', '.join(PRECISIONS)}"
        )
    _positive("--batch-size", spec.batch_size)
    _positive("--lr", spec.learning_rate)
    _positive("--warmup-steps", spec.warmup_steps, allow_zero=True)
    _positive("--steps", spec.steps)
    _positive("--epochs", spec.epochs)
    _positive("--repeats", spec.repeats)
    _positive("--sync-every", spec.sync_every)
    _positive("--min-time", spec.min_time_s, allow_zero=True)
    _positive("--max-time", spec.max_time_s)
    if spec.min_time_s > spec.max_time_s:
        raise InvalidValue(
            f"--min-time ({spec.min_time_s:g} s) must not exceed --max-time ({spec.max_time_s:g} s)"
        )
    _positive("--cpu-devices", spec.cpu_devices)
    if isinstance(spec.nodes, bool) or not isinstance(spec.nodes, int) or spec.nodes < 1:
        raise InvalidValue(f"--nodes must be a whole number of at least 1, got {spec.nodes!r}")
    _positive("--threads", spec.threads)
    _positive("--data-workers", spec.data_workers, allow_zero=True)
    _positive("--timeout", spec.timeout_s)
    _positive("--monitor-interval", spec.monitor_interval_s)
    _positive("--idle-baseline", spec.idle_baseline_s, allow_zero=True)
    _positive("--seed", spec.seed, allow_zero=True)
    _positive("--image-size", spec.image_size)


def resolve(spec: RunSpec, tools: dict[str, Any]) -> RunSpec:
    """Validate ``spec`` against the catalogues and fill in defaults.

    ``tools`` maps tool names to their BackendInfo. Raises UsageError (one clear
    line, naming the valid choices) for anything a user got wrong. Whether the model is
    defined for the dataset's images is not asked here: ``orchestrator.plan_run`` builds
    the network once and turns the builder's refusal into the same kind of error.
    """
    from harness import datasets, models
    from harness.cpu import available_cores

    if spec.tool not in tools:
        choices = ", ".join(sorted(tools)) or "none installed"
        raise UsageError(f"unknown tool {spec.tool!r}; choose from: {choices}")
    if spec.task == "inference" or spec.onnx_file:
        from harness.run.inference import check_spec

        spec = check_spec(spec, tools)  # the task's own rules; an --onnx-file run resolved
        if spec.onnx_file:
            return spec
    if spec.model not in models.MODELS:
        raise UsageError(f"unknown model {spec.model!r}; choose from: {', '.join(models.MODELS)}")
    if spec.dataset not in datasets.DATASETS:
        names = ", ".join(datasets.DATASETS)
        raise UsageError(f"unknown dataset {spec.dataset!r}; choose from: {names}")
    info = datasets.DATASETS[spec.dataset]

    check_values(spec)
    if spec.num_gpus > 0 and spec.cpu_devices != 1:
        raise UsageError("--cpu-devices applies to CPU runs (--num-gpus -1) only")
    backend = tools[spec.tool]
    tasks = getattr(backend, "tasks", ("train",))
    if spec.task == "train" and "train" not in tasks:  # an inference-only backend
        trains = [t for t, b in tools.items() if "train" in getattr(b, "tasks", ("train",))]
        trainers = ", ".join(sorted(trains))
        raise UsageError(
            f"{spec.tool} runs {', '.join(tasks)} only, it cannot train; "
            f"tools that train: {trainers or 'none installed'}"
        )
    if spec.precision not in backend.precisions:
        supported = ", ".join(backend.precisions)
        raise UsageError(f"{spec.tool} supports precision {supported}, not {spec.precision}")
    size = spec.image_size
    native = size is not None and (3, size, size) == info.image_shape
    if size is not None and not native:
        try:
            datasets.resized_info(info, spec.image_size)
        except datasets.DatasetError as exc:
            raise UsageError(str(exc)) from None

    batch, lr = STUDY_DEFAULTS.get(
        (info.family, spec.model), (FAMILY_BATCH[info.family], MODEL_LR[spec.model])
    )
    out = dataclasses.replace(spec, options=dict(spec.options), tags=dict(spec.tags))
    out.batch_size = spec.batch_size or batch
    out.learning_rate = spec.learning_rate or lr
    # --threads: intra-op threads of the whole run (harness.cpu); default the cores
    # available to this process (affinity and cgroup quota); validated above.
    out.threads = spec.threads or available_cores()
    if native:
        out.image_size = None  # the native images: the same configuration as without it
    return out
