"""How a user asks for the timing and the length of a run: flags, spec checks, sweep keys,
and one default run end to end through the CLI with the fake backend."""

from __future__ import annotations

import json
from pathlib import Path

import fake_cli
import pytest

from harness.backend import BackendInfo
from harness.cli.main import build_parser
from harness.cli.run import spec_from_args
from harness.errors import UsageError
from harness.run.spec import resolve
from harness.spec import RunSpec
from harness.sweep.config import parse

TOOLS = {
    "t": BackendInfo(name="t", framework="T", requires=(), install_hint="-", trainer="x:Y"),
}


def parse_run(*flags: str) -> RunSpec:
    parser, _ = build_parser()
    args = parser.parse_args(
        ["run", "--tool", "t", "--model", "lenet", "--dataset", "mnist", *flags]
    )
    return spec_from_args(args)


def test_defaults_are_adaptive_window_timing() -> None:
    spec = parse_run()
    assert (spec.warmup_steps, spec.steps, spec.sync_every) == (None, None, None)
    assert (spec.min_time_s, spec.max_time_s) == (10.0, 30.0)
    fixed = parse_run(
        "--warmup-steps", "5", "--steps", "50", "--sync-every", "1",
        "--min-time", "2", "--max-time", "20",
    )  # fmt: skip
    assert (fixed.warmup_steps, fixed.steps, fixed.sync_every) == (5, 50, 1)
    assert (fixed.min_time_s, fixed.max_time_s) == (2.0, 20.0)
    assert resolve(fixed, TOOLS).steps == 50


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_time_s": 40.0}, "--min-time (40 s) must not exceed --max-time (30 s)"),
        ({"max_time_s": 0.0}, "--max-time must be a positive number"),
        ({"min_time_s": -1.0}, "--min-time must be zero or more"),
        ({"sync_every": 0}, "--sync-every must be a positive number"),
        ({"steps": 0}, "--steps must be a positive number"),
    ],
)
def test_timing_mistakes_are_usage_errors(fields: dict, message: str) -> None:
    spec = RunSpec(tool="t", model="lenet", dataset="mnist", **fields)
    with pytest.raises(UsageError, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
        resolve(spec, TOOLS)


def test_sweep_files_take_the_timing_keys_and_auto() -> None:
    data = {
        "sweep": {"tools": ["t"]},
        "defaults": {"steps": 100, "warmup_steps": 10, "min_time": 5, "max_time": 60.0},
        "workloads": [
            {"dataset": "mnist", "model": "lenet", "steps": "auto", "sync_every": 1},
            {"dataset": "cifar10", "model": "alexnet", "warmup_steps": "auto"},
        ],
    }
    lenet, alexnet = (c.spec for c in parse(data, "t.toml").cells())
    assert (lenet.steps, lenet.warmup_steps, lenet.sync_every) == (None, 10, 1)
    assert (lenet.min_time_s, lenet.max_time_s) == (5.0, 60.0)
    assert (alexnet.steps, alexnet.warmup_steps, alexnet.sync_every) == (100, None, None)
    with pytest.raises(UsageError, match='sync_every must be a int or "auto"'):
        parse({**data, "defaults": {"sync_every": "often"}}, "t.toml")
    with pytest.raises(UsageError, match="batch_size must be a int"):
        parse({**data, "defaults": {"batch_size": "often"}}, "t.toml")


def test_built_in_study_sweep_keeps_fixed_warmup_and_steps() -> None:
    from harness.sweep.config import load

    for cell in load("study").cells():
        assert cell.spec.warmup_steps == 10 and cell.spec.steps is not None


@pytest.mark.slow
def test_default_run_prints_how_its_length_was_decided(tmp_path: Path) -> None:
    out = fake_cli.run_cli(
        "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--synthetic",
        "--repeats", "1", "--batch-size", "8", "--idle-baseline", "0",
        "--min-time", "0.5", "--max-time", "3", "-o", "step_s=0.005",
        "--output-dir", str(tmp_path / "logs"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["repeats"][0]
    timing = record["timing"]
    assert timing["mode"] == "window"
    assert timing["warmup_end"] in ("steady", "bound: time", "bound: steps")
    assert timing["length"] in ("ci within 2%", "max time")
    assert timing["window_steps"] >= 1 and record["timed"]["window_steps"] == timing["window_steps"]
    assert record["timed"]["seconds"] >= 0.5
    assert record["timed"]["step_time_basis"] in ("window", "step")
    assert result["summary"]["timing"]["length"] == [timing["length"]]
    text = " ".join(out.stderr.split())
    assert "timing: the device synchronised at the end of each window" in text
    assert "repeat 1: warmup" in text and "windows:" in text
    assert " left" in text  # the time left was announced (non-terminal: one line)
