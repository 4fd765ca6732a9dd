"""`list` answers on stdout (a table, or JSON), with each tool's state and install command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.run import interpreters


def test_list_json_on_stdout_names_every_tool_its_state_and_how_to_install_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", "--json"]) == 0
    out = capsys.readouterr().out
    listing = json.loads(out)
    tools = {row["tool"]: row for row in listing["tools"]}
    assert {"pytorch", "tensorflow", "jax", "mxnet", "onnxruntime"} <= set(tools)
    for row in tools.values():
        assert isinstance(row["installed"], bool)
        assert (row["version"] is not None) == row["installed"]
        assert row["install"].startswith("pip install")
        assert row["tasks"] and row["precisions"] and row["devices"].startswith("CPU, GPUs")
    assert tools["onnxruntime"]["tasks"] == ["inference"]
    assert "resnet50" in [m["model"] for m in listing["models"]]
    assert {"dataset": "mnist", "title": "MNIST handwritten digits", "shape": [1, 28, 28],
            "classes": 10} in listing["datasets"]  # fmt: skip


def test_list_prints_its_tables_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert "tools" in captured.out and "ImageNet" in captured.out
    assert "pytorch" in captured.out and "installed" in captured.out
    assert captured.err == ""


def test_install_hints_suit_a_checkout_and_an_installed_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hint = "pip install 'dlbench-harness[jax]'"
    monkeypatch.chdir(interpreters.REPO_ROOT)
    assert interpreters.in_checkout()  # the tests run from a checkout
    assert interpreters.install_command(hint) == "pip install -e '.[jax]'"
    monkeypatch.chdir(tmp_path)
    assert interpreters.install_command(hint) == f"pip install -e '{interpreters.REPO_ROOT}[jax]'"
    assert interpreters.install_command("conda install foo") == "conda install foo"
    gpu = "pip install 'dlbench-harness[onnxruntime]' (GPUs: onnxruntime-gpu)"
    assert interpreters.install_command(gpu).endswith("[onnxruntime]' (GPUs: onnxruntime-gpu)")
    monkeypatch.setattr(interpreters, "REPO_ROOT", tmp_path)  # as in site-packages
    assert not interpreters.in_checkout()
    assert interpreters.install_command(hint) == hint
