"""Exporting stored runs: one CSV row per run with its main figures, or JSON with everything.

CSV columns are :data:`COLUMNS`; a missing figure is an empty field. JSON is an object
``{"format": "harness-runs", "version": 2, "runs": [...]}`` whose runs carry the same
fields plus ``result``, the full stored result (every repeat, the environment).
Version 2 added the configuration key and what it is made of (threads, timing mode,
options, harness version), the median, jitter and olympic mean of images/sec, and
FLOPs, FLOP/s and MFU (harness.results.flops). ``export --latest`` keeps one run per
configuration key: the one the report shows.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from harness.report.data import hardware_label
from harness.results import configkey

EXPORT_VERSION = 2
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

COLUMNS: tuple[str, ...] = (
    "run_id",
    "sweep_id",
    "started_at",
    "finished_at",
    "status",
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
    "framework",
    "framework_version",
    "host",
    "harness_commit",
    "causes",
)


def flat(result: dict[str, Any]) -> dict[str, Any]:
    """The exported fields of one run (None where unknown)."""
    spec = result.get("spec") or {}
    summary = result.get("summary") or {}
    framework = result.get("framework") or {}
    env = result.get("environment") or {}
    row: dict[str, Any] = {
        "run_id": result.get("run_id"),
        "sweep_id": result.get("sweep_id"),
        "started_at": result.get("started_at"),
        "finished_at": result.get("finished_at"),
        "status": summary.get("status"),
        "hardware": result.get("hardware"),
        "hardware_label": hardware_label(result),
        "gpu_name": result.get("gpu_name"),
        "global_batch": result.get("global_batch"),
        "synthetic": result.get("synthetic"),
        "repeats": summary.get("repeats"),
        "repeats_ok": summary.get("repeats_ok"),
        "framework": framework.get("framework"),
        "framework_version": framework.get("version"),
        "host": env.get("hostname"),
        "harness_commit": env.get("harness_commit"),
        "harness_version": env.get("harness_version"),
        "config_key": configkey.config_key(result),
        "causes": "; ".join(summary.get("causes") or []) or None,
    }
    for key in (
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
    ):
        row[key] = spec.get(key)
    options = spec.get("options") or {}
    row["options"] = ",".join(f"{k}={v}" for k, v in sorted(options.items())) or None
    for name in _FIGURES:
        stats = summary.get(name)
        stats = stats if isinstance(stats, dict) else {}
        row[name], row[f"{name}_std"] = stats.get("mean"), stats.get("std")
    speed = summary.get("images_per_sec")
    speed = speed if isinstance(speed, dict) else {}
    for name in ("ci95", "median", "jitter", "olympic_mean"):
        row[f"images_per_sec_{name}"] = speed.get(name)
    fl = summary.get("flops") if isinstance(summary.get("flops"), dict) else {}
    for column, name in (
        ("forward_flops_per_image", "forward_per_image"),
        ("train_flops_per_image", "train_per_image"),
        ("flops_per_sec", "achieved_total"),
        ("flops_per_sec_per_device", "achieved_per_device"),
        ("peak_flops_per_device", "peak_per_device"),
        ("peak_source", "peak_source"),
        ("mfu", "mfu"),
    ):
        row[column] = fl.get(name)
    return {column: row.get(column) for column in COLUMNS}


def to_csv(results: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = flat(result)
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def to_json(results: list[dict[str, Any]], *, full: bool = True) -> str:
    runs = [flat(r) | ({"result": r} if full else {}) for r in results]
    body = {"format": "harness-runs", "version": EXPORT_VERSION, "runs": runs}
    return json.dumps(body, indent=1, default=str) + "\n"


def export(results: list[dict[str, Any]], fmt: str, *, full: bool = True) -> str:
    if fmt == "csv":
        return to_csv(results)
    if fmt == "json":
        return to_json(results, full=full)
    raise ValueError(f"unknown export format {fmt!r}")
