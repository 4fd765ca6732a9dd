"""The configuration key: stable, changed by every field that changes figures, by no other."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fake_cli import run_cli

from harness.spec import RunSpec
from harness.store import configkey
from harness.store.schema import SCHEMA_VERSION, RunResult


def result(**spec: Any) -> dict[str, Any]:
    """A stored run's JSON as the orchestrator writes it (the fields the key reads)."""
    fields = {"batch_size": 32, "learning_rate": 0.1, "threads": 4} | spec
    run_spec = RunSpec("pytorch", "resnet50", "cifar10", **fields)
    gpus = [{"index": i, "name": "NVIDIA A100-SXM4-40GB"} for i in range(max(0, run_spec.num_gpus))]
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": run_spec.to_dict(),
        "gpu_name": gpus[0]["name"] if gpus else None,
        "synthetic": True,
        "environment": {"cpu": "Test CPU 9000", "harness_version": "0.1.0", "gpus": gpus},
    }


def typed(r: dict[str, Any]) -> RunResult:
    return RunResult.from_json(r)


def key(r: dict[str, Any]) -> str:
    return configkey.key_of(configkey.build_config(typed(r)))


def test_key_is_a_short_digest_of_canonical_json_and_stable() -> None:
    r = result()
    config = configkey.build_config(typed(r))
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert configkey.canonical(config) == text
    assert len(key(r)) == 12 and int(key(r), 16) >= 0
    assert key(r) == key(copy.deepcopy(r)) == key(json.loads(json.dumps(r)))
    # key order in the stored dicts does not matter
    shuffled = dict(reversed(list(r.items())))
    shuffled["spec"] = dict(reversed(list(r["spec"].items())))
    assert key(shuffled) == key(r)
    assert config == {
        "tool": "pytorch",
        "model": "resnet50",
        "dataset": "cifar10",
        "num_gpus": -1,
        "cpu_devices": 1,
        "gpus": [],
        "cpu": "Test CPU 9000",
        "batch_size": 32,
        "precision": "fp32",
        "learning_rate": 0.1,
        "epochs": None,
        "validate": None,
        "data": "synthetic",
        "data_workers": None,
        "options": {},
        "threads": 4,
        "sync_every": None,
        "harness_version": "0.1.0",
    }


def _changed(r: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(r)
    node = out
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "tool"), "jax"),
        (("spec", "model"), "vgg16"),
        (("spec", "dataset"), "mnist"),
        (("spec", "cpu_devices"), 2),
        (("spec", "batch_size"), 64),
        (("spec", "precision"), "bf16"),
        (("spec", "learning_rate"), 0.01),
        (("spec", "epochs"), 3),
        (("spec", "validate"), False),
        (("spec", "data_workers"), 2),
        (("spec", "options"), {"compile": "1"}),
        (("spec", "threads"), 1),
        (("spec", "sync_every"), 1),
        (("synthetic",), False),
        (("environment", "cpu"), "Other CPU"),
        (("environment", "harness_version"), "0.2.0"),
    ],
)
def test_every_field_that_changes_figures_changes_the_key(
    path: tuple[str, ...], value: Any
) -> None:
    r = result()
    assert key(_changed(r, path, value)) != key(r)


def test_devices_and_gpu_models_change_the_key() -> None:
    one, two = result(num_gpus=1), result(num_gpus=2)
    assert len({key(result()), key(one), key(two)}) == 3
    h100 = copy.deepcopy(one)
    h100["environment"]["gpus"][0]["name"] = "NVIDIA H100 80GB HBM3"
    assert key(h100) != key(one)
    # GPU runs do not depend on the CPU model; CPU runs do (above)
    assert key(_changed(one, ("environment", "cpu"), "Other CPU")) == key(one)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gpu", "0"),
        ("warmup_steps", 50),
        ("steps", 1000),
        ("min_time_s", 1.0),
        ("max_time_s", 99.0),
        ("repeats", 7),
        ("seed", 42),
        ("data_dir", "/elsewhere"),
        ("output_dir", "/tmp/out"),
        ("python", "/usr/bin/python3"),
        ("timeout_s", 5.0),
        ("monitor_interval_s", 1.0),
        ("idle_baseline_s", 0.0),
        ("dump_weights", "/tmp/w"),
        ("tags", {"who": "me"}),
    ],
)
def test_what_does_not_change_figures_keeps_the_key(name: str, value: Any) -> None:
    r = result()
    assert key(_changed(r, ("spec", name), value)) == key(r)


def test_every_spec_field_is_classified() -> None:
    """A new RunSpec field must be put in the key or excluded with a reason (the docstring)."""
    names = {f.name for f in dataclasses.fields(RunSpec)}
    known = (
        set(configkey.SPEC_FIELDS) | configkey.EXCLUDED_SPEC_FIELDS | configkey.REPLACED_SPEC_FIELDS
    )
    assert names - known == set()


def test_unknown_spec_fields_go_into_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    r = result()
    before = key(r)
    # "seed" as if it were a new RunSpec field this module does not know yet
    monkeypatch.setattr(
        configkey, "EXCLUDED_SPEC_FIELDS", configkey.EXCLUDED_SPEC_FIELDS - {"seed"}
    )
    assert configkey.build_config(typed(r))["seed"] == 0
    assert key(r) != before


def test_stored_key_wins_and_differences_read_well() -> None:
    r = result()
    assert configkey.config_key(typed(r)) == key(r)
    r["config_key"] = "abcdef012345"
    assert configkey.config_key(typed(r)) == "abcdef012345"
    a = configkey.build_config(typed(result()))
    b = configkey.build_config(typed(result(batch_size=64, precision="fp16", sync_every=1)))
    diffs = configkey.differences(a, b)
    assert diffs == [("batch_size", 32, 64), ("precision", "fp32", "fp16"), ("sync_every", None, 1)]
    assert configkey.difference_text(diffs) == (
        "batch_size: 32 vs 64; precision: fp32 vs fp16; sync_every: auto vs 1"
    )
    fields = configkey.varying_fields([a, b])
    assert configkey.label(b, fields) == "batch 64 · fp16 · sync every 1"


def test_a_fake_run_stores_its_key_and_configuration(tmp_path: Path) -> None:
    out = run_cli(
        "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--batch-size", "8",
        "--warmup-steps", "1", "--steps", "3", "--repeats", "1", "--idle-baseline", "0",
        "--output-dir", str(tmp_path), "-o", "step_s=0.001", "--json",
        HARNESS_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    stored = json.loads(out.stdout.strip().splitlines()[-1])
    assert stored["config_key"] == configkey.key_of(stored["config"])
    assert stored["config"] == configkey.build_config(typed(stored))
    assert stored["config"]["batch_size"] == 8 and stored["config"]["threads"] >= 1
    assert f"configuration key: {stored['config_key']}" in out.stderr
    from harness.store.store import ResultStore

    store = ResultStore(tmp_path / "results.sqlite")
    assert [r.run_id for r in store.runs(config_key=stored["config_key"])] == [stored["run_id"]]
    flops = stored["summary"]["flops"]
    assert flops["train_per_image"] == 3 * flops["forward_per_image"] > 0
    assert flops["mfu"] is None and "python -m harness peak" in flops["note"]  # empty cache


def test_a_field_a_run_does_not_have_reads_n_a_never_a_question_mark() -> None:
    from harness.store.configkey import field_text, value_text

    assert field_text("data", None) == "data n/a"
    assert value_text("nodes", None) == "n/a" and value_text("weights", None) == "n/a"
    assert field_text("weights", None) == "weights n/a"
    assert value_text("data_workers", None) == "default"
