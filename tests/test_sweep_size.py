"""A large sweep is counted before it is expanded: said at once, refused without --yes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.sweep import runner

SWEEP = """
[sweep]
name = "big"
tools = ["pytorch", "tensorflow"]
hardware = ["cpu"]
[[workloads]]
dataset = "mnist"
model = "lenet"
batch_size = [{sizes}]
"""


def _sweep(tmp_path: Path, sizes: int) -> str:
    path = tmp_path / "big.toml"
    path.write_text(SWEEP.format(sizes=", ".join(map(str, range(1, sizes + 1)))))
    return str(path)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "LARGE_SWEEP", 4)
    monkeypatch.setattr(runner, "CONFIRM_SWEEP", 10)
    monkeypatch.setattr(runner, "DRY_RUN_ROWS", 3)


def test_a_very_large_sweep_is_refused_without_yes_before_it_is_expanded(
    tmp_path: Path, small_limits: None, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("expanded before the size was checked")

    monkeypatch.setattr(runner, "select", never)
    logs = tmp_path / "logs"
    code = main(["sweep", _sweep(tmp_path, 6), "--output-dir", str(logs)])
    err = capsys.readouterr().err
    assert code == 2
    assert "this sweep has 12 runs (more than 4)" in err
    assert "12 runs is more than 10: give --yes" in err
    assert not logs.exists()


def test_a_large_dry_run_plans_the_first_rows_and_sums_up_the_rest(
    tmp_path: Path, small_limits: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    code = main(["sweep", _sweep(tmp_path, 6), "--output-dir", str(logs), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "sweep plan: 12 runs; the first 3" in err
    assert "by tool: pytorch 6, tensorflow 6" in err
    assert "batch sizes: 6 from 1 to 6" in err
    assert "the other 9 are planned when the sweep runs" in err
    assert not logs.exists()


def test_a_sweep_under_the_warning_size_says_nothing_of_its_size(
    tmp_path: Path, small_limits: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sweep", _sweep(tmp_path, 2), "--output-dir", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" not in err and "sweep plan: 4 runs" in err
