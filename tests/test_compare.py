"""compare: ratios, the significance mark (Welch's t-test), both ways of naming A and B."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import make_result, make_store

from harness.compare import compare, significant
from harness.report.data import Value
from harness.stats import t95


def ok(mean: float, std: float, n: int = 3) -> Value:
    return Value(mean, std, n, "ok")


def test_welch_test_by_hand() -> None:
    # s = 1, n = 3 on both sides: standard error sqrt(2/3), Welch df = 4, t crit 2.776
    assert t95(4.0) == 2.776
    assert t95(4.9) == 2.776  # rounded down: conservative
    assert t95(0.5) == 12.706
    assert t95(200) == 1.96
    assert significant(ok(10, 1), ok(12, 1)) is False  # t = 2.449 < 2.776
    assert significant(ok(10, 1), ok(13, 1)) is True  # t = 3.674 > 2.776
    assert significant(ok(10, 0), ok(10, 0)) is False
    assert significant(ok(10, 0), ok(10.5, 0)) is True  # no spread at all
    assert significant(ok(10, 1, n=1), ok(20, 1)) is None  # too few repeats to tell
    # unequal spreads: the noisier side dominates the degrees of freedom
    a, b = ok(100, 1, 5), ok(110, 8, 5)
    se2 = 1 / 5 + 64 / 5
    df = se2**2 / ((1 / 5) ** 2 / 4 + (64 / 5) ** 2 / 4)
    assert 4 < df < 5
    assert significant(a, b) is ((10 / se2**0.5) > 2.776)


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    a = [
        make_result("pytorch", "lenet", "mnist", ips=(1000.0, 10.0)),
        make_result("pytorch", "resnet50", "cifar10", ips=(100.0, 10.0)),
        make_result("jax", "lenet", "mnist", ips=(500.0, 5.0), n=1),
        make_result("jax", "resnet50", "cifar10", ips=(80.0, 1.0)),
        make_result("pytorch", "lenet", "mnist", num_gpus=1, ips=(9000.0, 50.0)),
    ]
    b = [
        make_result("pytorch", "lenet", "mnist", ips=(1200.0, 10.0)),  # faster
        make_result("pytorch", "resnet50", "cifar10", ips=(105.0, 10.0)),  # within noise
        make_result("jax", "lenet", "mnist", ips=(400.0, 5.0)),  # A has one repeat
        make_result("jax", "resnet50", "cifar10", status="oom"),
        make_result("pytorch", "lenet", "mnist", num_gpus=1, ips=(6000.0, 50.0),
                    gpu_name="NVIDIA H100"),  # another GPU model, same configuration
        make_result("mxnet", "lenet", "mnist", ips=(300.0, 3.0)),  # only in B
    ]  # fmt: skip
    make_store(tmp_path / "a" / "results.sqlite", a)
    make_store(tmp_path / "b" / "results.sqlite", b)
    return tmp_path / "a" / "results.sqlite", tmp_path / "b" / "results.sqlite"


def test_rows_ratios_and_marks(tmp_path: Path) -> None:
    from harness.report.source import open_store

    a_path, b_path = _pair(tmp_path)
    rows = compare(open_store(a_path).runs(), open_store(b_path).runs())
    table = {(r.tool, r.model, r.hardware): r for r in rows}
    assert [(r.dataset, r.model, r.tool, r.hardware) for r in rows] == [
        ("mnist", "lenet", "jax", "CPU"),
        ("mnist", "lenet", "mxnet", "CPU"),
        ("mnist", "lenet", "pytorch", "CPU"),
        ("mnist", "lenet", "pytorch", "1 GPU"),
        ("cifar10", "resnet50", "jax", "CPU"),
        ("cifar10", "resnet50", "pytorch", "CPU"),
    ]
    faster = table["pytorch", "lenet", "CPU"]
    assert faster.ratio == pytest.approx(1.2) and faster.verdict == "faster"
    gpu = table["pytorch", "lenet", "1 GPU"]
    assert gpu.ratio == pytest.approx(6000 / 9000) and gpu.verdict == "slower"
    same = table["pytorch", "resnet50", "CPU"]
    assert same.ratio == pytest.approx(1.05) and same.verdict == "same"
    assert table["jax", "lenet", "CPU"].verdict == "?"
    oom = table["jax", "resnet50", "CPU"]
    assert oom.ratio is None and oom.verdict == "-" and oom.b.status == "oom"
    only_b = table["mxnet", "lenet", "CPU"]
    assert only_b.a.status == "-" and only_b.b.mean == 300.0 and only_b.ratio is None


def test_cli_with_two_files_and_with_two_sweeps(tmp_path: Path) -> None:
    a_path, b_path = _pair(tmp_path)
    out = run_cli("compare", str(a_path), str(b_path.parent), "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    first = next(
        r for r in rows if (r["tool"], r["model"], r["hardware"]) == ("pytorch", "lenet", "CPU")
    )
    assert float(first["ratio"]) == pytest.approx(1.2) and first["verdict"] == "faster"
    assert float(first["a_mean"]) == 1000.0 and float(first["b_std"]) == 10.0

    one = tmp_path / "one.sqlite"
    make_store(one, [
        make_result("pytorch", "lenet", "mnist", ips=(50.0, 1.0), sweep_id="old"),
        make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0), sweep_id="new"),
    ])  # fmt: skip
    out = run_cli("compare", "--store", str(one), "old", "new", "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert (
        "| MNIST | LeNet | pytorch | CPU | 50.0 ± 1.0 | 100.0 ± 1.0 | 2.000 | faster |"
        in out.stdout
    )
    assert "- A: sweep old" in out.stdout
    term = run_cli("compare", "--store", str(one), "old", "new")
    assert term.returncode == 0, term.stderr
    assert "2.000" in term.stdout and "faster" in term.stdout
    assert "geometric mean over 1 configurations: 2.000x" in term.stdout
    bad = run_cli("compare", "--store", str(one), "old", "nosuch")
    assert bad.returncode == 2 and "no sweep 'nosuch'" in bad.stderr
    nostore = run_cli("compare", "old", "new")
    assert nostore.returncode == 2 and "give --store" in nostore.stderr
