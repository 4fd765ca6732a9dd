"""Exporting stored runs: one CSV row per run with its main figures, or JSON with everything.

CSV columns are :func:`columns`: what a run is, then each exported metric's mean and
std (and images/sec's CI, median, jitter and olympic mean), declared once in
harness.store.metrics, then the rest; a missing figure is an empty field. JSON is an object
``{"format": "harness-runs", "version": 2, "runs": [...]}`` whose runs carry the same
fields plus ``result``, the full stored result (every repeat, the environment).
Version 2 added the configuration key and what it is made of (threads, timing mode,
options, harness version), the median, jitter and olympic mean of images/sec, and
FLOPs, FLOP/s and MFU (harness.store.flops). Version 3: ``result`` is the typed
record (harness.store.schema, with its ``schema_version``), the JSON is strict (no
NaN), and CSV cells that a spreadsheet would run as a formula (a text starting with
= + - @) start with a ' instead. ``export --latest`` keeps one run per configuration
key: the one the report shows. Inference runs (``--task inference``) fill the columns of
the task (:func:`inference_columns`, added within version 3: the task, the model file's
size and format, and the means and stds of load, session, first-inference, latency
percentiles per batch and total inference times, in seconds); training runs leave them
empty (``task`` is ``train``).

:func:`to_frame` gives the CSV's rows as a pandas DataFrame with typed columns
(:func:`dtypes`), and :func:`to_parquet` writes it as Parquet (pandas and pyarrow: the
``dataframe`` extra); ``harness.results.load(store)`` is the DataFrame of a store.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from harness.report.data import hardware_label
from harness.store import configkey, metrics, strictjson
from harness.store.schema import Flops, RunResult, to_dict

EXPORT_VERSION = 3
# What the inference task adds besides its metrics (in harness.store.metrics).
_INFERENCE_FIELDS = ("model_bytes", "model_format", "latency_basis")
# What a run's FLOPs summary adds besides its metrics (tflops: flops_per_sec, mfu).
_FLOPS_FIELDS = (
    "forward_flops_per_image",
    "train_flops_per_image",
    "flops_per_sec_per_device",
    "peak_flops_per_device",
    "peak_source",
)
_BEFORE = (
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
)
_AFTER = ("framework", "framework_version", "host", "harness_commit", "causes")


def inference_columns() -> tuple[str, ...]:
    """The columns only inference runs fill: its fields, and the inference-only metrics'."""
    only = [m for m in metrics.registry() if m.tasks == metrics.INFERENCE]
    return (*_INFERENCE_FIELDS, *(c for m in only for c in m.export_columns()))


def columns() -> tuple[str, ...]:
    """The CSV's columns: what the run is, then each exported metric's (its mean, std
    and extra statistics, harness.store.metrics, in order), then the rest."""
    figures = [c for m in metrics.registry() for c in m.export_columns()]
    return (*_BEFORE, *figures, *_FLOPS_FIELDS, *_INFERENCE_FIELDS, *_AFTER)


# The columns of the built-in metrics (a metric registered later adds its own).
INFERENCE_COLUMNS = inference_columns()
COLUMNS = columns()
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
    for metric in metrics.registry():
        row |= metric.export_values(result)
    fl = summary.flops or Flops()
    row["forward_flops_per_image"] = fl.forward_per_image
    row["train_flops_per_image"] = fl.train_per_image
    row["flops_per_sec_per_device"] = fl.achieved_per_device
    row["peak_flops_per_device"] = fl.peak_per_device
    row["peak_source"] = fl.peak_source
    row["task"] = getattr(spec, "task", None) or "train"
    part = summary.inference
    for name in _INFERENCE_FIELDS:
        row[name] = getattr(part, name, None)
    return {column: row.get(column) for column in columns()}


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
    writer = csv.DictWriter(out, fieldnames=columns(), lineterminator="\n")
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


def dtypes() -> dict[str, str]:
    """The type of each column (every metric's is float64)."""
    return {
        column: "string"
        if column in _TEXT
        else "datetime64[ns, UTC]"
        if column in _TIMES
        else "Int64"
        if column in _INTEGERS
        else "boolean"
        if column in _BOOLEANS
        else "float64"
        for column in columns()
    }


DTYPES = dtypes()  # of the built-in metrics' columns
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
    kinds = dtypes()
    frame = {}
    for column, kind in kinds.items():
        values = [row[column] for row in rows]
        if column in _TIMES:
            frame[column] = pd.to_datetime(
                pd.Series(values, dtype="object"), utc=True, format="ISO8601", errors="coerce"
            ).astype(kind)
        elif kind == "float64":
            frame[column] = pd.Series(
                [float("nan") if v is None else float(v) for v in values], dtype=kind
            )
        else:
            frame[column] = pd.Series(values, dtype="object").astype(kind)
    return pd.DataFrame(frame, columns=list(kinds))


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
