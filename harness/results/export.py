"""Exporting stored runs: one CSV row per run with its main figures, or JSON with everything.

CSV columns are :data:`COLUMNS`; a missing figure is an empty field. JSON is an object
``{"format": "harness-runs", "version": 2, "runs": [...]}`` whose runs carry the same
fields plus ``result``, the full stored result (every repeat, the environment).
Version 2 added the configuration key and what it is made of (threads, timing mode,
options, harness version), the median, jitter and olympic mean of images/sec, and
FLOPs, FLOP/s and MFU (harness.results.flops). Version 3: ``result`` is the typed
record (harness.results.schema, with its ``schema_version``), the JSON is strict (no
NaN), and CSV cells that a spreadsheet would run as a formula (a text starting with
= + - @) start with a ' instead. ``export --latest`` keeps one run per configuration
key: the one the report shows. Inference runs (``--task inference``) fill the columns of
the task (:data:`INFERENCE_COLUMNS`, added within version 3: the task, the model file's
size and format, and the means and stds of load, session, first-inference, latency
percentiles per batch and total inference times, in seconds); training runs leave them
empty (``task`` is ``train``).

:func:`to_frame` gives the CSV's rows as a pandas DataFrame with typed columns
(:data:`DTYPES`), and :func:`to_parquet` writes it as Parquet (pandas and pyarrow: the
``dataframe`` extra); ``harness.results.load(store)`` is the DataFrame of a store.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from harness.report.data import hardware_label
from harness.results import configkey
from harness.results.schema import Flops, RunResult, Stat, to_dict
from harness.run import strictjson

EXPORT_VERSION = 3
_FIGURES = (
    "images_per_sec",
    "gpu_power_w",
    "gpu_memory_mib",
    "energy_j",
    "joules_per_image",
    "execution_time_s",
    "accuracy",
    "host_cpu_percent",
    "host_rss_mib",
    "framework_memory_mib",
)

# Inference figures (InferenceSummary statistics, seconds): a mean and a std column each.
_INFERENCE_FIGURES = (
    "load_s",
    "prepare_s",
    "first_inference_s",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "latency_p999_s",
    "total_inference_s",
)
INFERENCE_COLUMNS: tuple[str, ...] = (
    "model_bytes",
    "model_format",
    "latency_basis",
    *(f"{name}{suffix}" for name in _INFERENCE_FIGURES for suffix in ("", "_std")),
)

COLUMNS: tuple[str, ...] = (
    "run_id",
    "sweep_id",
    "started_at",
    "finished_at",
    "status",
    "task",
    "tool",
    "model",
    "dataset",
    "hardware",
    "hardware_label",
    "num_gpus",
    "cpu_devices",
    "gpu_name",
    "batch_size",
    "global_batch",
    "learning_rate",
    "warmup_steps",
    "steps",
    "epochs",
    "precision",
    "synthetic",
    "threads",
    "sync_every",
    "data_workers",
    "options",
    "harness_version",
    "config_key",
    "repeats",
    "repeats_ok",
    *(f"{name}{suffix}" for name in _FIGURES for suffix in ("", "_std")),
    "images_per_sec_ci95",
    "images_per_sec_median",
    "images_per_sec_jitter",
    "images_per_sec_olympic_mean",
    "forward_flops_per_image",
    "train_flops_per_image",
    "flops_per_sec",
    "flops_per_sec_per_device",
    "peak_flops_per_device",
    "peak_source",
    "mfu",
    *INFERENCE_COLUMNS,
    "framework",
    "framework_version",
    "host",
    "harness_commit",
    "causes",
)
# RunSpec fields exported as they are.
_SPEC_COLUMNS = (
    "tool",
    "model",
    "dataset",
    "num_gpus",
    "cpu_devices",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "steps",
    "epochs",
    "precision",
    "threads",
    "sync_every",
    "data_workers",
)


def flat(result: RunResult) -> dict[str, Any]:
    """The exported fields of one run (None where unknown)."""
    spec, summary = result.spec, result.summary
    framework = result.framework or {}
    env = result.environment
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "sweep_id": result.sweep_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": summary.status,
        "hardware": result.hardware,
        "hardware_label": hardware_label(result),
        "gpu_name": result.gpu_name,
        "global_batch": result.global_batch,
        "synthetic": result.synthetic,
        "repeats": summary.repeats,
        "repeats_ok": summary.repeats_ok,
        "framework": framework.get("framework"),
        "framework_version": framework.get("version"),
        "host": env.get("hostname"),
        "harness_commit": env.get("harness_commit"),
        "harness_version": env.get("harness_version"),
        "config_key": configkey.config_key(result),
        "causes": "; ".join(summary.causes) or None,
    }
    for key in _SPEC_COLUMNS:
        row[key] = getattr(spec, key)
    row["options"] = ",".join(f"{k}={v}" for k, v in sorted(spec.options.items())) or None
    for name in _FIGURES:
        found = summary.metric(name) or Stat()
        row[name], row[f"{name}_std"] = found.mean, found.std
    speed = summary.images_per_sec
    row["images_per_sec_ci95"] = speed.ci95
    row["images_per_sec_median"] = speed.median
    row["images_per_sec_jitter"] = speed.jitter
    row["images_per_sec_olympic_mean"] = speed.olympic_mean
    fl = summary.flops or Flops()
    row["forward_flops_per_image"] = fl.forward_per_image
    row["train_flops_per_image"] = fl.train_per_image
    row["flops_per_sec"] = fl.achieved_total
    row["flops_per_sec_per_device"] = fl.achieved_per_device
    row["peak_flops_per_device"] = fl.peak_per_device
    row["peak_source"] = fl.peak_source
    row["mfu"] = fl.mfu
    row["task"] = getattr(spec, "task", None) or "train"
    part = summary.inference
    if part is not None:
        row["model_bytes"] = part.model_bytes
        row["model_format"] = part.model_format
        row["latency_basis"] = part.latency_basis
        for name in _INFERENCE_FIGURES:
            found = getattr(part, name, None) or Stat()
            row[name], row[f"{name}_std"] = found.mean, found.std
    return {column: row.get(column) for column in COLUMNS}


_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a string that a spreadsheet would take for a
    formula (it starts with = + - @, a tab or a carriage return) gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_LEADS):
        return "'" + value
    return value


def to_csv(results: list[RunResult]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: csv_cell(v) for k, v in flat(result).items()})
    return out.getvalue()


def to_json(results: list[RunResult], *, full: bool = True) -> str:
    runs = [flat(r) | ({"result": to_dict(r)} if full else {}) for r in results]
    body = {"format": "harness-runs", "version": EXPORT_VERSION, "runs": runs}
    return strictjson.dumps(body, indent=1) + "\n"


# Column types of a DataFrame of runs (to_frame): text, timestamps (UTC), nullable
# integers and booleans, and floats for every figure (a missing one is NaN).
_TEXT = (
    "run_id", "sweep_id", "status", "task", "tool", "model", "dataset", "hardware",
    "hardware_label", "gpu_name", "precision", "options", "harness_version", "config_key",
    "peak_source", "framework", "framework_version", "host", "harness_commit", "causes",
    "model_format", "latency_basis",
)  # fmt: skip
_TIMES = ("started_at", "finished_at")
_INTEGERS = (
    "num_gpus", "cpu_devices", "batch_size", "global_batch", "warmup_steps", "steps",
    "epochs", "threads", "sync_every", "data_workers", "repeats", "repeats_ok", "model_bytes",
)  # fmt: skip
_BOOLEANS = ("synthetic",)
DTYPES: dict[str, str] = {
    column: "string"
    if column in _TEXT
    else "datetime64[ns, UTC]"
    if column in _TIMES
    else "Int64"
    if column in _INTEGERS
    else "boolean"
    if column in _BOOLEANS
    else "float64"
    for column in COLUMNS
}
DATAFRAME_EXTRA = "pip install 'dlbench-harness[dataframe]'"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            f"a DataFrame of runs needs pandas, which is not installed: {DATAFRAME_EXTRA}"
        ) from None
    return pandas


def to_frame(results: list[RunResult]) -> Any:
    """A pandas DataFrame of ``results``: one row per run, the CSV's columns (COLUMNS),
    typed as :data:`DTYPES` says. ImportError (with the install command) without pandas."""
    pd = _pandas()
    rows = [flat(r) for r in results]
    columns = {}
    for column in COLUMNS:
        values = [row[column] for row in rows]
        kind = DTYPES[column]
        if column in _TIMES:
            columns[column] = pd.to_datetime(
                pd.Series(values, dtype="object"), utc=True, format="ISO8601", errors="coerce"
            ).astype(kind)
        elif kind == "float64":
            columns[column] = pd.Series(
                [float("nan") if v is None else float(v) for v in values], dtype=kind
            )
        else:
            columns[column] = pd.Series(values, dtype="object").astype(kind)
    return pd.DataFrame(columns, columns=list(COLUMNS))


def to_parquet(results: list[RunResult], path: str) -> None:
    """``results`` as a Parquet file (pandas and pyarrow); ImportError without them."""
    frame = to_frame(results)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            f"Parquet needs pyarrow, which is not installed: {DATAFRAME_EXTRA}"
        ) from None
    frame.to_parquet(path, engine="pyarrow", index=False)


def export(results: list[RunResult], fmt: str, *, full: bool = True) -> str:
    if fmt == "csv":
        return to_csv(results)
    if fmt == "json":
        return to_json(results, full=full)
    raise ValueError(f"unknown export format {fmt!r}")
