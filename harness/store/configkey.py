"""Configuration identity: a short key built from everything that changes a run's figures.

Two runs share a key exactly when they measured the same configuration, so reports,
``compare``, ``export --latest`` and sweeps never merge unlike runs into one cell.

The key is the first 12 hex digits of the SHA-256 of the configuration's canonical JSON
(sorted keys, no spaces). The configuration (stored as ``RunResult.config``) holds:

- ``tool``, ``model``, ``dataset``;
- the devices: ``num_gpus``, ``cpu_devices``, ``gpus`` (the model names of the GPUs
  used) and, on CPU runs, ``cpu`` (the CPU model);
- ``batch_size`` (per device), ``precision``, ``learning_rate``;
- ``data``: ``"synthetic"`` or ``"real"`` (what the run used; None if it never started);
- ``data_workers`` (JPEG decoding threads), ``options`` (backend options);
- ``image_size`` (``--image-size``: the images upscaled to 3xSxS), only when set, so
  runs on the native images keep the keys they had before the option existed;
- ``threads``: the run's intra-op thread count after ``resolve`` (None only in runs stored
  before the harness resolved it: "the framework's default");
- ``denormals``: only when ``--denormals flush`` (each framework's own way, the default,
  keeps the keys runs had before the option);
- ``sync_every``: the timing mode (None: automatic windows; N: every N steps);
- ``epochs`` and ``validate``: epochs mode times whole epochs (epoch boundaries, the last
  partial batch, weights reset after warmup) and reports accuracy after E epochs, so its
  figures differ from a steps-mode run's and depend on E; None means steps mode;
- ``harness_version`` (``harness.__version__``, not the commit);
- ``nodes`` (``--nodes N``) when more than one: one-node runs keep the keys they had
  before the option; ``launcher`` (how the nodes were started) is left out;
- ``task``: ``"inference"`` for inference runs, so they never share a key with training
  (training runs leave it out and keep the keys they had before the task existed); with
  it, ``weights`` (the file name of ``--weights``, or None: the initial weights),
  ``onnx_file`` (the file name and size of a user's model) and ``input_shape``;
  ``learning_rate`` is None (nothing is trained).

Left out, because they do not change what the figures estimate: the number of steps,
warmup steps and the time bounds of the timed phase (they change how precise the figures
are, not their expected value), ``repeats``, ``max_repeats``, ``seed`` (another draw of
the same random process, like a repeat), ``gpu`` (the selection; the GPUs' names are in),
``data_dir``, ``output_dir``, ``python`` (the interpreter; its framework version is
recorded with the run and shown by ``compare`` when it differs), ``timeout_s``, the
monitor's settings, ``require_quiet_s`` (a wait before the run), ``dump_weights``,
``tags``, ``batch_search`` (how ``--batch-size auto`` found the batch; the batch it
found is ``batch_size``) and ``compile`` (the backend option it turns on is in
``options``; a backend that always compiles changes nothing). A spec field this module
does not know is put in the key (an unknown field never merges two configurations).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store.schema import RunResult

KEY_LENGTH = 12

# RunSpec fields copied into the configuration as they are.
SPEC_FIELDS = (
    "tool",
    "model",
    "dataset",
    "num_gpus",
    "cpu_devices",
    "batch_size",
    "precision",
    "learning_rate",
    "epochs",
    "validate",
    "data_workers",
    "options",
    "threads",
    "sync_every",
    "image_size",
    "nodes",
    "denormals",
    # the inference task's (kept only in inference runs' configurations, see _task_fields)
    "task",
    "weights",
    "onnx_file",
    "input_shape",
)
# RunSpec fields that do not change what the figures estimate (see the module docstring).
EXCLUDED_SPEC_FIELDS = frozenset(
    {
        "gpu",
        "warmup_steps",
        "steps",
        "min_time_s",
        "max_time_s",
        "repeats",
        "max_repeats",
        "seed",
        "data_dir",
        "output_dir",
        "python",
        "timeout_s",
        "monitor_interval_s",
        "idle_baseline_s",
        "require_quiet_s",
        "dump_weights",
        "tags",
        "launcher",  # how the nodes were started, not what they ran
        "batch_search",  # how the batch was found; the batch found is batch_size
        "compile",  # the backend option it sets is in options (always-compiling: no change)
    }
)
# Spec fields replaced by what the run found: "synthetic" (None = auto) by ``data``.
REPLACED_SPEC_FIELDS = frozenset({"synthetic"})
# Fields that describe the hardware (report columns); the rest describe the workload (rows).
HARDWARE_FIELDS = ("num_gpus", "cpu_devices", "gpus", "cpu", "threads")
# Fields a failed run may not know; such a run joins the one configuration it matches.
UNKNOWABLE_FIELDS = ("data",)


def _data_source(result: RunResult) -> str | None:
    synthetic = result.synthetic
    if synthetic is None:
        synthetic = result.spec.synthetic
    if synthetic is None:
        return None
    return "synthetic" if synthetic else "real"


def _gpu_names(result: RunResult) -> list[str]:
    count = result.spec.num_gpus or -1
    if count <= 0:
        return []
    listed = result.environment.get("gpus") or []
    names = [str(g.get("name", "?")) for g in listed if isinstance(g, dict)]
    if names:
        return names
    return [result.gpu_name or "?"] * count


def build_config(result: RunResult) -> dict[str, Any]:
    """The configuration of a stored (or about to be stored) result."""
    spec = result.spec.to_dict()
    env = result.environment
    config: dict[str, Any] = {}
    for name, value in spec.items():
        if name in EXCLUDED_SPEC_FIELDS or name in REPLACED_SPEC_FIELDS:
            continue
        config[name] = value
    for name in SPEC_FIELDS:
        config.setdefault(name, None)
    if config["image_size"] is None:  # native images: the key they had before the option
        del config["image_size"]
    if config.get("denormals") in (None, "keep"):  # the key it had before --denormals
        config.pop("denormals", None)
    if config.get("nodes") in (None, 1):  # one node: the key it had before --nodes
        config.pop("nodes", None)
    config["options"] = {str(k): str(v) for k, v in (config.get("options") or {}).items()}
    config["gpus"] = _gpu_names(result)
    is_cpu = (result.spec.num_gpus or -1) < 0
    config["cpu"] = env.get("cpu") if is_cpu else None
    config["data"] = _data_source(result)
    config["harness_version"] = env.get("harness_version")
    _task_fields(config, result)
    return config


# Spec fields that belong to the inference task only (a training run's key has none).
INFERENCE_FIELDS = ("task", "weights", "onnx_file", "input_shape")


def _task_fields(config: dict[str, Any], result: RunResult) -> None:
    """Training keeps its keys from before the task existed; inference names its file."""
    if config.get("task", "train") == "train":
        for name in INFERENCE_FIELDS:
            config.pop(name, None)
        return
    config["learning_rate"] = None
    if config.get("weights"):
        config["weights"] = Path(str(config["weights"])).name
    onnx_file = config.get("onnx_file")
    if onnx_file:
        summary = result.summary.inference
        size = summary.model_bytes if summary is not None else None
        config["onnx_file"] = f"{Path(str(onnx_file)).name} ({size if size else '?'} bytes)"


def canonical(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def key_of(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:KEY_LENGTH]


def config_of(result: RunResult) -> dict[str, Any]:
    """The stored configuration, or the one built from the result (runs stored before keys)."""
    return result.config if result.config is not None else build_config(result)


def config_key(result: RunResult) -> str:
    """The stored key, or the key of the configuration built from the result."""
    return result.config_key or key_of(config_of(result))


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for every field whose values differ, sorted."""
    return [(f, a.get(f), b.get(f)) for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]


_LABELS = {
    "batch_size": "batch",
    "learning_rate": "lr",
    "sync_every": "sync every",
    "data_workers": "data workers",
    "harness_version": "harness",
    "num_gpus": "GPUs",
    "cpu_devices": "CPU devices",
}


def _short_gpu(name: str) -> str:
    return name.replace("NVIDIA ", "").replace("Tesla ", "").strip()


def value_text(name: str, value: Any) -> str:
    """A value as a person reads it: ``fp16``, ``auto``, ``x=1``, ``A100-SXM4-40GB``."""
    if name == "sync_every" and value is None:
        return "auto"
    if name == "epochs" and value is None:
        return "steps mode"
    if name == "threads" and value is None:
        return "framework default"
    if value is None:  # a field this kind of run does not have (training's weights ...)
        return "default" if name in ("data_workers", "validate") else "n/a"
    if name == "options":
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    if name == "gpus":
        names = [_short_gpu(n) for n in value]
        if names and len(set(names)) == 1:
            return names[0] + (f" x{len(names)}" if len(names) > 1 else "")
        return "+".join(names) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def field_text(name: str, value: Any) -> str:
    """``batch 64``, ``fp16``, ``synthetic``, ``options x=1``: one field of a label."""
    text = value_text(name, value)
    if name in ("precision", "data", "tool", "model", "dataset", "gpus", "cpu"):
        return text if name != "data" or value is not None else "data n/a"
    if name == "epochs" and value is None:
        return text
    return f"{_LABELS.get(name, name)} {text}"


def difference_text(diffs: list[tuple[str, Any, Any]]) -> str:
    """``batch_size: 32 vs 64; precision: fp32 vs fp16``."""
    return "; ".join(f"{f}: {value_text(f, a)} vs {value_text(f, b)}" for f, a, b in diffs)


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """The fields whose values are not the same in all ``configs``."""
    if len(configs) < 2:
        return []
    names = sorted(set().union(*configs))
    first = configs[0]
    return [n for n in names if any(c.get(n) != first.get(n) for c in configs[1:])]


def label(config: dict[str, Any], fields: list[str]) -> str:
    """What tells ``config`` apart from the others: its values of ``fields``."""
    return " · ".join(field_text(f, config.get(f)) for f in fields)


def split(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(workload part, hardware part) of a configuration."""
    hardware = {k: v for k, v in config.items() if k in HARDWARE_FIELDS}
    workload = {k: v for k, v in config.items() if k not in HARDWARE_FIELDS}
    return workload, hardware
