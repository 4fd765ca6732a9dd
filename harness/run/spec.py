"""A RunSpec checked and completed for this machine's tools: :func:`resolve`, with the
task's own rules (harness.run.task), and :func:`check_values`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness import cpu, datasets, models
from harness.backend import PRECISIONS, compile_options
from harness.errors import InvalidValue, UsageError
from harness.run import denormals
from harness.run.task import task_for
from harness.spec import FAMILY_BATCH, MODEL_LR, STUDY_DEFAULTS, RunSpec, parse_batch_search


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


def check_values(spec: RunSpec) -> None:
    """Values no machine could run (InvalidValue): a zero batch, NaN, min > max time."""
    task_for(spec.task)  # InvalidValue for an unknown task
    if spec.num_gpus == 0 or spec.num_gpus < -1:
        raise InvalidValue(
            f"--num-gpus must be -1 (the CPU) or a positive count, got {spec.num_gpus}"
        )
    if spec.precision not in PRECISIONS:
        raise InvalidValue(
            f"unknown precision {spec.precision!r}; choose from: {', '.join(PRECISIONS)}"
        )
    if spec.denormals not in denormals.MODES:
        raise InvalidValue(
            f"unknown --denormals {spec.denormals!r}; choose from: {', '.join(denormals.MODES)}"
        )
    _positive("--batch-size", spec.batch_size)
    if spec.batch_search is not None:
        parse_batch_search(spec.batch_search)
    _positive("--lr", spec.learning_rate)
    _positive("--warmup-steps", spec.warmup_steps, allow_zero=True)
    _positive("--steps", spec.steps)
    _positive("--epochs", spec.epochs)
    _positive("--repeats", spec.repeats)
    _positive("--max-repeats", spec.max_repeats)
    if spec.max_repeats is not None and spec.max_repeats < spec.repeats:
        raise InvalidValue(
            f"--max-repeats ({spec.max_repeats}) must not be below --repeats ({spec.repeats})"
        )
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
    if spec.tool not in tools:
        choices = ", ".join(sorted(tools)) or "none installed"
        raise UsageError(f"unknown tool {spec.tool!r}; choose from: {choices}")
    task = task_for(spec.task)
    spec = task.check_spec(spec, tools)  # the task's own rules; an --onnx-file run resolved
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
    refusal = task.refusal(spec.tool, tools)  # e.g. an inference-only backend
    if refusal:
        raise UsageError(refusal)
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
    options = compile_options(backend, spec.options) if spec.compile else dict(spec.options)
    out = dataclasses.replace(spec, options=options, tags=dict(spec.tags))
    out.batch_size = spec.batch_size or batch
    out.learning_rate = spec.learning_rate or lr
    # --threads: intra-op threads of the whole run (harness.cpu); default the cores
    # available to this process (affinity and cgroup quota); validated above.
    out.threads = spec.threads or cpu.available_cores()
    if native:
        out.image_size = None  # the native images: the same configuration as without it
    return out
