"""A new framework is a separate package: install the harness and the example plugin
tests/plugins/harness-numpy into a fresh virtual environment and benchmark with it.

Needs pip to reach a package index (or a wheel cache) for the harness's dependencies.
The repository is copied first (without VCS data, caches and outputs) so that building
the wheels writes nothing into the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN = Path("tests") / "plugins" / "harness-numpy"
# Top-level entries that are not part of the project's sources.
SKIP_TOP = {".git", ".tox", ".venv", ".venvs", ".ci-venv", "logs", "data", "build", "dist"}
SKIP_ANY = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIP_ANY or n.endswith(".egg-info")}
    if Path(folder) == REPO:
        skipped |= SKIP_TOP & set(names)
    if Path(folder).name == "harness-numpy":
        skipped |= {"build", "dist"} & set(names)
    return skipped


def _env() -> dict[str, str]:
    """This environment without anything that points Python or the harness elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HARNESS_", "PYTHON", "VIRTUAL_ENV"))
    }


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = str(root / "venv" / "bin" / "python")

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, *args],
            cwd=self.root,
            env=_env(),
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def pip_install(self, target: Path) -> None:
        done = self.run("-m", "pip", "install", "--quiet", str(target))
        assert done.returncode == 0, f"pip install {target} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("plugin-package")
    source = root / "harness-src"
    shutil.copytree(REPO, source, ignore=_ignore)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=_env())
    env = Venv(root)
    env.pip_install(source)  # non-editable: the wheel must carry models/, datasets/, backends/
    env.pip_install(source / PLUGIN)
    return env


def _harness(venv: Venv, *args: str) -> subprocess.CompletedProcess[str]:
    return venv.run("-m", "harness", *args, timeout=900)


def _run_args(venv: Venv, model: str, dataset: str, repeats: int) -> list[str]:
    return [
        "--tool",
        "numpy",
        "--model",
        model,
        "--dataset",
        dataset,
        "--steps",
        "5",
        "--warmup-steps",
        "2",
        "--repeats",
        str(repeats),
        "--synthetic",
        "--output-dir",
        str(venv.root / "logs"),
        "--json",
        "--idle-baseline",
        "0",
    ]


def _stored(venv: Venv, run_id: str) -> tuple[tuple, list[tuple]]:
    with sqlite3.connect(venv.root / "logs" / "results.sqlite") as db:
        run = db.execute(
            "SELECT tool, model, status, repeats_ok FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        repeats = db.execute(
            "SELECT repeat, status, cause FROM repeats WHERE run_id = ? ORDER BY repeat", (run_id,)
        ).fetchall()
    return run, repeats


@pytest.mark.slow
def test_installed_packages_come_from_the_venv(venv: Venv):
    code = (
        "import harness, harness.models, harness.datasets, harness.backends.pytorch, "
        "harness_numpy; print(harness.__file__); print(harness_numpy.__file__)"
    )
    done = venv.run("-c", code)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert Path(line).resolve().is_relative_to((venv.root / "venv").resolve()), line


def test_install_claims_no_generic_top_level_names(venv: Venv):
    code = (
        "import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n) is None "
        "for n in ('models', 'datasets', 'backends', 'harness.models', 'harness.datasets')}))"
    )
    done = venv.run("-c", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "models": True,
        "datasets": True,
        "backends": True,
        "harness.models": False,
        "harness.datasets": False,
    }


def test_list_shows_the_numpy_tool(venv: Venv):
    done = _harness(venv, "list", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    tools = {row["tool"]: row for row in listing["tools"]}
    assert tools["numpy"]["framework"] == "NumPy (reference)", tools
    assert tools["numpy"]["installed"], tools["numpy"]
    assert {"model": "lenet", "title": "LeNet"} in listing["models"]


def test_lenet_benchmark_with_the_numpy_tool(venv: Venv):
    done = _harness(venv, *_run_args(venv, "lenet", "mnist", repeats=2))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["spec"]["tool"] == "numpy"
    assert result["framework"]["framework"] == "numpy"
    assert result["environment"]["interpreter"]["python"] == venv.python
    summary = result["summary"]
    assert summary["status"] == "ok"
    assert summary["repeats"] == summary["repeats_ok"] == 2
    assert summary["images_per_sec"]["mean"] > 0
    assert [r["status"] for r in result["repeats"]] == ["ok", "ok"]
    assert all(
        r["timed"]["steps"] == 5 and r["timed"]["images_per_sec"] > 0 for r in result["repeats"]
    )
    run_dir = venv.root / "logs" / result["run_id"]
    assert json.loads((run_dir / "result.json").read_text())["run_id"] == result["run_id"]
    run, repeats = _stored(venv, result["run_id"])
    assert run == ("numpy", "lenet", "ok", 2)
    assert [(r[0], r[1]) for r in repeats] == [(1, "ok"), (2, "ok")]


def test_unsupported_network_is_a_recorded_error(venv: Venv):
    done = _harness(venv, *_run_args(venv, "resnet50", "cifar10", repeats=1))
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["summary"]["status"] == "error"
    (cause,) = result["summary"]["causes"]
    assert "cannot train resnet50" in cause
    assert "BatchNorm" in cause and "Conv2D" in cause
    assert (venv.root / "logs" / result["run_id"] / "result.json").is_file()
    run, repeats = _stored(venv, result["run_id"])
    assert run == ("numpy", "resnet50", "error", 0)
    assert repeats == [(1, "error", cause)]


def test_verify_checks_the_numpy_tool(venv: Venv):
    """Plugin API 1.2: the installed plugin's parity probe takes part in ``verify``."""
    done = _harness(venv, "verify", "--tools", "numpy", "--models", "lenet")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("numpy ")]
    assert row.split()[1:3] == ["lenet", "1x28x28"] and row.endswith("pass"), row
    assert done.stdout.strip().endswith("all pass")


def test_ops_times_the_numpy_gemm_kernels(venv: Venv):
    """Plugin API 1.2: the installed plugin's kernels take part in ``ops``."""
    logs = str(venv.root / "logs")
    args = ("ops", "--tool", "numpy", "--suite", "smoke", "--ops", "gemm,conv", "--quick")
    done = _harness(venv, *args, "--output-dir", logs, "--json")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    status = {(s["kind"], o["status"]) for s in result["sets"] for o in s["ops"]}
    assert status == {("gemm", "ok"), ("conv", "unsupported")}, status
    assert result["framework"]["name"] == "NumPy"


def test_an_installed_wheel_names_the_published_extras(venv: Venv):
    """Outside a checkout, the install hints name the distribution, not ``pip install -e``."""
    done = _harness(venv, "list", "--json")
    assert done.returncode == 0, done.stderr
    hints = {row["tool"]: row["install"] for row in json.loads(done.stdout)["tools"]}
    assert hints["pytorch"] == "pip install 'dlbench-harness[pytorch]'", hints
    assert not any("-e" in hint.split() for hint in hints.values()), hints
