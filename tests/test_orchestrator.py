"""The orchestrator end to end with a fake backend: results, failures, timeouts, Ctrl-C.

The fake backend (tests/fakes/fake_backend.py) is loaded in the orchestrator and in
its workers through HARNESS_PLUGINS, exactly as an installed plugin would be.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import fake_cli
import pytest
from fake_cli import harness_env
from test_denormals import X86_LINUX


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Fake runs here are short: a hang fails within two minutes."""
    return fake_cli.run_cli(*args, timeout=timeout)


def fake_run(tmp_path: Path, *extra: str, repeats: int = 2) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "--tool",
        "fake",
        "--model",
        "lenet",
        "--dataset",
        "mnist",
        "--synthetic",
        "--warmup-steps",
        "2",
        "--steps",
        "6",
        "--repeats",
        str(repeats),
        "--batch-size",
        "16",
        "--idle-baseline",
        "0",
        "--output-dir",
        str(tmp_path / "logs"),
        "--json",
        *extra,
    )


def only_run_dir(tmp_path: Path) -> Path:
    dirs = [p for p in (tmp_path / "logs").iterdir() if p.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def test_successful_run_writes_everything(tmp_path: Path) -> None:
    out = fake_run(tmp_path, "-o", "step_s=0.01", "--tag", "who=test")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["summary"]["status"] == "ok"
    assert result["summary"]["repeats_ok"] == 2
    assert result["spec"]["tags"] == {"who": "test"}
    assert "denormals" not in result["config"]  # the default keeps the keys runs had
    for record in result["repeats"]:
        assert record["timed"]["steps"] == 6
        assert record["timed"]["images"] == 6 * 16
        assert record["warmup"]["steps"] == 2
        # each step sleeps 10 ms, so no more than 1600 images/sec can be measured
        assert 0 < record["timed"]["images_per_sec"] <= 16 / 0.01
        assert record["data"]["synthetic"] is True
        assert record["framework"]["framework"] == "fake"
        # the default, read in the worker (tests/test_denormals.py: "keep" and the threads)
        assert record["framework"]["denormals"] == ("keep" if X86_LINUX else "unsupported")
        assert record["loss"]["last"] == pytest.approx(1 / 8)
    run_dir = only_run_dir(tmp_path)
    for name in ("run.json", "result.json"):
        assert (run_dir / name).is_file()
    for repeat in (1, 2):
        folder = run_dir / f"repeat-{repeat}"
        for name in ("job.json", "events.jsonl", "worker.log", "record.json", "command.txt"):
            assert (folder / name).is_file(), name
    db = sqlite3.connect(tmp_path / "logs" / "results.sqlite")
    assert db.execute("SELECT status, repeats_ok, tool FROM runs").fetchall() == [("ok", 2, "fake")]
    assert db.execute("SELECT COUNT(*) FROM repeats WHERE status = 'ok'").fetchone()[0] == 2
    assert "SYNTHETIC" in out.stderr


@pytest.mark.parametrize(
    ("behaviour", "status", "cause"),
    [
        ("raise", "error", "RuntimeError: the fake framework failed"),
        ("oom", "oom", "CUDA out of memory"),
        ("exit", "crashed", "exited with code 7"),
        ("signal", "crashed", "killed by signal SIGKILL"),
        ("raise_in_setup", "error", "refuses to start"),
    ],
)
def test_failed_worker_becomes_a_stored_result(
    tmp_path: Path, behaviour: str, status: str, cause: str
) -> None:
    out = fake_run(tmp_path, "-o", f"behaviour={behaviour}")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["status"] for r in result["repeats"]] == [status, status]
    assert cause in result["repeats"][0]["cause"]
    assert result["summary"]["status"] == status
    db = sqlite3.connect(tmp_path / "logs" / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM repeats WHERE status = ?", (status,)).fetchone()[0] == 2


@pytest.mark.slow
def test_timeout_kills_the_worker_tree(tmp_path: Path) -> None:
    out = fake_run(tmp_path, "-o", "behaviour=hang", "--timeout", "4", repeats=1)
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["repeats"][0]
    assert record["status"] == "timeout"
    assert "4 s timeout" in record["cause"]
    # the hanging worker is gone
    worker_pid = next(
        e["pid"]
        for e in map(json.loads, (only_run_dir(tmp_path) / "repeat-1" / "events.jsonl").open())
        if e["event"] == "start"
    )
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


def test_ctrl_c_keeps_finished_repeats(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            "fake",
            "--model",
            "lenet",
            "--dataset",
            "mnist",
            "--synthetic",
            "--warmup-steps",
            "1",
            "--steps",
            "3",
            "--repeats",
            "3",
            "--idle-baseline",
            "0",
            "--output-dir",
            str(tmp_path / "logs"),
            "-o",
            "behaviour=hang",
            "-o",
            "fail_at=1",
        ],
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first worker hangs in its timed phase
        found = list((tmp_path / "logs").glob("*/repeat-1/events.jsonl"))
        if found and '"timed"' in found[0].read_text():
            events = found[0]
            break
        time.sleep(0.2)
    assert events is not None
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr
    db = sqlite3.connect(tmp_path / "logs" / "results.sqlite")
    assert db.execute("SELECT status FROM repeats").fetchall() == [("interrupted",)]
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tool", "nosuch", "--model", "lenet", "--dataset", "mnist"],
            "unknown tool 'nosuch'; choose from:",
        ),
        (
            ["--tool", "fake", "--model", "nosuch", "--dataset", "mnist"],
            "unknown model 'nosuch'; choose from: lenet",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "nosuch"],
            "unknown dataset 'nosuch'; choose from: mnist",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "cifar10"],
            "cannot run lenet on cifar10",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "imagenet"],
            "cannot run lenet on imagenet",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--batch-size", "0"],
            "--batch-size must be a positive number",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--batch-size", "-4"],
            "--batch-size must be a positive number",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--num-gpus", "0"],
            "--num-gpus must be -1",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--num-gpus", "2"],
            "asks for 2 GPU(s) but this machine has 0",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--precision", "fp16"],
            "fake supports precision fp32, bf16, not fp16",
        ),
        (
            ["--tool", "fake-missing", "--model", "lenet", "--dataset", "mnist"],
            "needs Nonexistium, which no interpreter has: run `pip install nonexistium`",
        ),
        (
            [
                "--tool",
                "fake",
                "--model",
                "lenet",
                "--dataset",
                "mnist",
                "--python",
                "/nonexistent/python",
            ],
            "/nonexistent/python (--python) does not run",
        ),
        (
            ["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "-o", "novalue"],
            "--option takes KEY=VALUE",
        ),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = run_cli(*args, "--output-dir", str(tmp_path / "logs"))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    assert message in text
    assert text.startswith("error:")
    assert not (tmp_path / "logs").exists()  # nothing ran, nothing written


def test_dry_run_builds_the_multi_device_command(tmp_path: Path) -> None:
    out = run_cli(
        "--tool",
        "fake-ddp",
        "--model",
        "lenet",
        "--dataset",
        "mnist",
        "--num-gpus",
        "2",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "-m torch.distributed.run --standalone --nproc-per-node=2 -m harness.run.worker" in text
    assert "CUDA_VISIBLE_DEVICES=0,1" in text
    assert "asks for 2 GPU(s) but this machine has 0" in text  # said clearly, as a warning
    cpu = run_cli("--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--dry-run")
    assert "CUDA_VISIBLE_DEVICES= " in " ".join(cpu.stderr.split()) + " "
    assert "-m harness.run.worker" in cpu.stderr


def test_list_shows_plugins_models_and_datasets() -> None:
    out = run_cli("list")
    assert out.returncode == 0
    for word in (
        "fake",
        "pytorch",
        "lenet",
        "resnet50",
        "googlenet",
        "vgg16",
        "alexnet",
        "mnist",
        "fashion-mnist",
        "kmnist",
        "cifar10",
        "imagenet",
    ):
        assert word in out.stdout  # the listing is the answer: stdout


@pytest.mark.slow
def test_batch_size_auto_finds_the_largest_batch_that_fits(tmp_path: Path) -> None:
    # the fake device holds 12 images per device: 4, 8 fit, 16 not; bisection: 12, 14, 13
    out = fake_run(
        tmp_path,
        *("--batch-size", "auto:bisect:start=4:max=64", "--cpu-devices", "2"),
        *("-o", "oom_above=12", "-o", "step_s=0"),
        repeats=1,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["spec"]["batch_size"], result["global_batch"]) == (12, 24)  # per device
    search = result["environment"]["batch_search"]
    tried = [(t["batch"], t["status"]) for t in search["tries"]]
    assert tried == [(4, "ok"), (8, "ok"), (16, "oom"), (12, "ok"), (14, "oom"), (13, "oom")]
    assert search["found"] == 12 and search["devices"] == 2 and search["seconds"] > 0
    assert "MemoryError" in search["tries"][2]["cause"]
    run_dir = only_run_dir(tmp_path)
    assert len(list((run_dir / "batch-search").glob("try-*/worker.log"))) == 6  # a process each
    assert "--batch-size auto:bisect:start=4:max=64: batch 12 per device" in " ".join(
        out.stderr.split()
    )
