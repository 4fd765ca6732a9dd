"""compare: matching on the configuration key, what differs, the ratio's CI and verdicts."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import make_result, make_store, with_spec

from harness.report.data import Value
from harness.results.compare import Side, compare, ratio_ci, verdict
from harness.store import stats
from harness.store.schema import Stat


def ok(mean: float, std: float, n: int = 3) -> Value:
    return Value(mean, std, n, "ok")


def repeats(values: list[float]) -> Value:
    d = Stat.of(values)
    return Value(d.mean, d.std, d.n, "ok")


def test_ratio_ci_by_hand() -> None:
    # s/mean = 0.01 and 0.02, n = 3: SE of log R = sqrt((0.01^2 + 0.02^2) / 3);
    # Welch df = (1 + 4)^2 / ((1 + 16) / 2) = 2.94, rounded down to 2: t = 4.303
    low, high = ratio_ci(ok(100, 1), ok(200, 4))
    half = 4.303 * math.sqrt((0.01**2 + 0.02**2) / 3)
    assert low == pytest.approx(2 * math.exp(-half))
    assert high == pytest.approx(2 * math.exp(half))
    # the same interval as stats.ratio_ci95 on the repeats themselves (which is A/B)
    a, b = [98.0, 100.0, 103.0, 99.0], [120.0, 111.0, 115.0]
    _, lo, hi = stats.ratio_ci95(b, a)
    assert ratio_ci(repeats(a), repeats(b)) == pytest.approx((lo, hi))
    assert ratio_ci(ok(10, 0), ok(12, 0)) == pytest.approx((1.2, 1.2))  # no spread at all
    assert ratio_ci(ok(10, 1, n=1), ok(20, 1)) is None  # too few repeats


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([100.0, 100.4, 99.6, 100.2, 99.8], [100.5, 100.9, 100.1, 100.7, 100.3], "same"),
        ([100.0, 100.4, 99.6], [110.0, 110.5, 109.5], "faster"),
        ([100.0, 100.4, 99.6], [90.0, 90.5, 89.5], "slower"),
        ([100.0, 108.0, 92.0], [101.0, 109.0, 93.0], "inconclusive"),  # wide: straddles both
        ([100.0, 100.2, 99.8], [102.0, 102.2, 101.8], "faster"),  # above 1, across +2%
        ([100.0, 100.2, 99.8], [98.0, 98.2, 97.8], "slower"),  # below 1, across -2%
        ([100.0, 103.0, 97.0], [101.0, 104.0, 98.0], "inconclusive"),  # across 1 and +-2%
        ([100.0], [130.0, 131.0], "inconclusive"),  # one repeat on A: no interval
    ],
)
def test_verdicts_on_constructed_repeats(a: list[float], b: list[float], expected: str) -> None:
    ci = ratio_ci(repeats(a), repeats(b))
    assert verdict(ci) == expected, ci


def test_verdict_band_edges() -> None:
    assert verdict((0.98, 1.02)) == "same"
    assert verdict((0.979, 1.0)) == "inconclusive"  # touches 1: cannot tell slower
    assert verdict((0.979, 1.01)) == "inconclusive"  # straddles 1, not within the band
    assert verdict((1.0201, 1.5)) == "faster"
    assert verdict((1.01, 1.5)) == "faster"  # faster, perhaps by less than 2%
    assert verdict((0.97, 0.999)) == "slower"
    assert verdict((0.5, 0.9799)) == "slower"
    assert verdict(None) == "inconclusive"


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
                    gpu_name="NVIDIA H100"),  # another GPU model: another configuration
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
    assert faster.same_configuration and faster.differences == []
    gpu = table["pytorch", "lenet", "1 GPU"]
    assert gpu.ratio == pytest.approx(6000 / 9000) and gpu.verdict == "slower"
    assert not gpu.same_configuration  # paired by cell, and it says what differs
    assert gpu.differs == "gpus: A100-SXM4-40GB vs H100"
    noisy = table["pytorch", "resnet50", "CPU"]
    assert noisy.ratio == pytest.approx(1.05) and noisy.verdict == "inconclusive"
    assert table["jax", "lenet", "CPU"].verdict == "inconclusive"
    assert noisy.settle.startswith("about ") and "settle a 5.0% difference" in noisy.settle
    assert faster.settle == "" and gpu.settle == ""
    oom = table["jax", "resnet50", "CPU"]
    assert oom.ratio is None and oom.verdict == "-" and oom.b.status == "oom"
    only_b = table["mxnet", "lenet", "CPU"]
    assert only_b.a.status == "-" and only_b.b.mean == 300.0 and only_b.ratio is None
    strict = compare(open_store(a_path).runs(), open_store(b_path).runs(), strict=True)
    gpus = [r for r in strict if r.hardware == "1 GPU"]
    assert [(r.a.mean, r.b.mean) for r in gpus] == [(9000.0, None), (None, 6000.0)]


def test_configurations_are_matched_on_the_key_and_kept_apart() -> None:
    base = ("pytorch", "lenet", "mnist")
    a = [
        with_spec(make_result(*base, ips=(100.0, 0.5)), batch_size=32),
        with_spec(make_result(*base, ips=(180.0, 0.5)), batch_size=64),
        with_spec(make_result(*base, ips=(90.0, 0.5)), precision="bf16"),
    ]
    b = [
        with_spec(make_result(*base, ips=(100.2, 0.5)), batch_size=32),
        with_spec(make_result(*base, ips=(200.0, 0.5)), batch_size=64),
        with_spec(make_result(*base, ips=(95.0, 0.5)), precision="bf16"),
    ]
    rows = compare(a, b)
    assert len(rows) == 3 and all(r.same_configuration for r in rows)
    by_variant = {r.variant: r for r in rows}
    assert set(by_variant) == {
        "batch 32 · fp32",
        "batch 64 · fp32",
        "batch 32 · bf16",
    }
    assert by_variant["batch 32 · fp32"].verdict == "same"
    assert by_variant["batch 64 · fp32"].verdict == "faster"
    assert by_variant["batch 64 · fp32"].ratio == pytest.approx(200 / 180)

    # A has batch 32 only, B batch 64 only: paired, never called the same configuration
    rows = compare(a[:1], b[1:2])
    (row,) = rows
    assert not row.same_configuration and row.key_a != row.key_b
    assert row.differences == [("batch_size", 32, 64)]
    assert row.differs == "batch_size: 32 vs 64"
    # only options differ: listed as such; --strict keeps them apart
    c = with_spec(make_result(*base, ips=(100.0, 0.5)), options={"cudnn": "on"})
    (row,) = compare(a[:1], [c])
    assert row.differs == "options: none vs cudnn=on"
    assert len(compare(a[:1], [c], strict=True)) == 2


def test_two_single_runs_are_compared_whatever_differs(tmp_path: Path) -> None:
    one = with_spec(make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0)), batch_size=16)
    two = with_spec(make_result("jax", "lenet", "mnist", ips=(120.0, 1.0)), precision="bf16")
    rows = compare(Side("A", [one], single_run=True), Side("B", [two], single_run=True))
    assert len(rows) == 1 and rows[0].ratio == pytest.approx(1.2)
    fields = [name for name, _, _ in rows[0].differences]
    assert fields == ["batch_size", "precision", "tool"]

    make_store(tmp_path / "results.sqlite", [one, two])
    out = run_cli("compare", "--store", str(tmp_path), one.run_id, two.run_id,
                  "--format", "markdown")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "| configuration differs |" in out.stdout
    assert "batch_size: 16 vs 32; precision: fp32 vs bf16; tool: pytorch vs jax" in out.stdout
    assert f"- A: run {one.run_id}" in out.stdout


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
    assert first["a_config_key"] == first["b_config_key"] and first["differences"] == ""
    assert 1.0 < float(first["ratio_ci_low"]) < 1.2 < float(first["ratio_ci_high"])
    gpu = next(r for r in rows if r["hardware"] == "1 GPU")
    assert gpu["a_config_key"] != gpu["b_config_key"] and "gpus:" in gpu["differences"]

    one = tmp_path / "one.sqlite"
    make_store(one, [
        make_result("pytorch", "lenet", "mnist", ips=(50.0, 1.0), sweep_id="old"),
        make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0), sweep_id="new"),
    ])  # fmt: skip
    out = run_cli("compare", "--store", str(one), "old", "new", "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert (
        "| MNIST | LeNet | pytorch | CPU | 50.0 ± 1.0 | 100.0 ± 1.0 | 2.000 | 1.892-2.114 "
        "| faster |" in out.stdout
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


def test_compare_csv_cells_are_never_formulas() -> None:
    """The CSV export's rule (harness.results.export.csv_cell) holds for compare too."""
    from harness.results.compare import to_csv

    a = make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0), tags={"hardware_label": "=1+2"})
    b = make_result("pytorch", "lenet", "mnist", ips=(120.0, 1.0), tags={"hardware_label": "=1+2"})
    (row,) = csv.DictReader(io.StringIO(to_csv(compare([a], [b]))))
    assert row["hardware"] == "'=1+2" and row["tool"] == "pytorch"
    assert float(row["ratio"]) == pytest.approx(1.2) and row["a_n"] == "3"


def test_repeats_to_settle_an_inconclusive_ratio_follow_from_the_spread() -> None:
    from harness.store.stats import ratio_ci95_moments, repeats_to_settle, verdict_of_ci

    n = repeats_to_settle(1.05, 0.06, 0.06)  # 5% apart, 6% noise a side
    assert n is not None and n > 3
    # n repeats a side with the same means and spreads do decide; n - 1 do not
    for k, decided in ((n, True), (n - 1, False)):
        ci = ratio_ci95_moments(105.0, 6.3, k, 100.0, 6.0, k)
        assert ci is not None and (verdict_of_ci(ci[1:]) != "inconclusive") == decided
    assert repeats_to_settle(1.001, 0.01, 0.01) is not None  # settles as "same"
    assert repeats_to_settle(1.019, 0.20, 0.20) is None  # below the noise: > 100 repeats


def test_the_settle_text_names_the_repeats_or_the_noise() -> None:
    from harness.report.data import Value
    from harness.results.compare import settle_text

    a, b = Value(100.0, 6.0, 3), Value(105.0, 6.3, 3)
    assert settle_text("inconclusive", 1.05, a, b).startswith("about ")
    assert settle_text("faster", 1.05, a, b) == ""
    assert "1 repeat" in settle_text("inconclusive", 1.05, Value(100.0, None, 1), b)
    noisy = settle_text("inconclusive", 1.01, Value(100.0, 30.0, 3), Value(101.0, 30.0, 3))
    assert noisy == "a 1.0% difference is below the noise of these repeats"


def test_a_spread_is_printed_with_its_unit_and_as_a_share_of_the_mean() -> None:
    from harness.cli.summary import spread_text
    from harness.store.schema import Stat

    three = spread_text(Stat(n=3, mean=7.7, std=1.8, ci95=4.5), "img/s")
    assert three == "7.7 img/s ± 58% (95% CI ±4.5 img/s, 3 repeats)"
    assert "no spread to report" in spread_text(Stat(n=1, mean=7.7, std=None), "img/s")
    assert "wide interval" in spread_text(Stat(n=2, mean=7.7, std=1.0, ci95=9.0), "img/s")
