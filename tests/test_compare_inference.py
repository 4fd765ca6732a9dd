"""compare on inference runs (issue 14, item 5): matched on the configuration key (the
task is part of it), throughput and each latency percentile compared with the training
compare's statistics (95% CI of B/A, ±2% band; a lower latency is faster), pairing only
within a task and a batch size, and the inference rows in their own table and CSV
columns."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from fake_cli import run_cli
from sweep_helpers import make_inference_result, make_result, make_store, with_spec

from harness.results.compare import Side, compare, markdown, ratio_ci, to_csv
from harness.store.stats import verdict_of_ci


def run(batch: int, p50: float, *, std: float = 0.02, **kwargs):
    """An inference run with percentiles p50, 1.2, 1.5 and 2 x p50 (ms)."""
    latency = (p50, 1.2 * p50, 1.5 * p50, 2 * p50)
    return make_inference_result(
        "pytorch", "lenet", "mnist", batch, latency_ms=latency, std_ms=std, **kwargs
    )


def test_latency_and_throughput_compared_with_the_training_statistics() -> None:
    a, b = run(8, 2.0), run(8, 1.6)  # B: latencies 20% lower, throughput 25% higher
    (row,) = compare([a], [b])
    assert row.task == "inference" and row.batch_size == 8 and row.same_configuration
    assert row.ratio == pytest.approx(1.25) and row.verdict == "faster"
    figures = {f.name: f for f in row.figures}
    assert list(figures) == ["mean", "p50", "p90", "p99", "p99.9"]
    p99 = figures["p99"]
    assert p99.a.mean == pytest.approx(3.0) and p99.b.mean == pytest.approx(2.4)  # ms
    assert p99.ratio == pytest.approx(0.8)
    # the same interval as the training compare's, read the other way round
    assert p99.ci == pytest.approx(ratio_ci(p99.a, p99.b))
    assert p99.ci[1] < 1 and p99.verdict == "faster"
    assert verdict_of_ci(p99.ci, higher_is_faster=False) == "faster"
    worse = compare([b], [a])[0]
    assert {f.verdict for f in worse.figures} == {"slower"} and worse.verdict == "slower"


def test_latency_within_the_band_is_the_same_and_wide_repeats_are_inconclusive() -> None:
    (same,) = compare([run(1, 2.0, std=0.001)], [run(1, 2.01, std=0.001)])
    assert {f.verdict for f in same.figures} == {"same"}
    (wide,) = compare([run(1, 2.0, std=0.5)], [run(1, 1.9, std=0.5)])
    assert {f.verdict for f in wide.figures} == {"inconclusive"}
    (single,) = compare([run(1, 2.0, n=1)], [run(1, 1.0, n=1)])
    assert {f.verdict for f in single.figures} == {"inconclusive"}  # no interval


def test_a_failed_side_has_no_latency_verdict() -> None:
    oom = make_inference_result("pytorch", "lenet", "mnist", 8, status="oom", latency_ms=None)
    (row,) = compare([run(8, 2.0)], [oom])
    assert row.verdict == "-" and {f.verdict for f in row.figures} == {"-"}
    assert all(f.b.status == "oom" and f.ratio is None for f in row.figures)


def test_training_and_inference_never_pair_and_batches_pair_only_with_their_own() -> None:
    training = make_result("pytorch", "lenet", "mnist")
    a = [training, run(1, 1.0), run(8, 2.0)]
    b = [
        with_spec(run(8, 1.5), precision="bf16"),  # batch 8, another precision
        run(64, 9.0),
        make_result("tensorflow", "lenet", "mnist"),
    ]
    rows = compare(a, b)
    pairs = {(r.task, r.tool, r.batch_size, r.a.shown, r.b.shown): r for r in rows}
    # batch 8 of A pairs with B's bf16 batch 8, naming what differs
    eight = pairs[("inference", "pytorch", 8, True, True)]
    assert eight.differs == "precision: fp32 vs bf16" and not eight.same_configuration
    assert eight.figures[1].ratio == pytest.approx(0.75)
    # batch 1 and batch 64 stay one-sided, and so does the training run
    assert ("inference", "pytorch", 1, True, False) in pairs
    assert ("inference", "pytorch", 64, False, True) in pairs
    assert ("train", "pytorch", None, True, False) in pairs
    assert len(rows) == 5


def test_terminal_markdown_and_csv(tmp_path: Path) -> None:
    a = [make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0)), run(8, 2.0)]
    b = [make_result("pytorch", "lenet", "mnist", ips=(120.0, 1.0)), run(8, 1.6)]
    rows = compare(Side("A", a), Side("B", b))
    text = markdown(rows, Side("A", a), Side("B", b))
    training, inference = text.split("## Inference")
    assert "| MNIST | LeNet | pytorch | CPU | 100.0 ± 1.0 | 120.0 ± 1.0 | 1.200 |" in training
    assert "p99 B/A" not in training
    header = (
        "| dataset | network | framework | hardware | batch | A images/sec | B images/sec | "
        "B/A | 95% CI | verdict | A p50 (ms) | B p50 (ms) | p50 B/A | p90 B/A | p99 B/A | "
        "p99.9 B/A |"
    )
    assert header in inference
    line = next(x for x in inference.splitlines() if x.startswith("| MNIST"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["MNIST", "LeNet", "pytorch", "CPU", "8"]
    assert cells[9] == "faster" and cells[10:12] == ["2", "1.6"]
    assert all(c.startswith("0.800 (") and c.endswith(") faster") for c in cells[12:])
    assert "p99 latency B/A geometric mean over 1 configurations: 0.800x" in inference

    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    train_row, inference_row = sorted(table, key=lambda r: r["task"], reverse=True)
    assert train_row["task"] == "train" and train_row["latency_p99_ms_ratio"] == ""
    assert inference_row["task"] == "inference" and inference_row["batch_size"] == "8"
    assert float(inference_row["latency_p99_ms_a_mean"]) == pytest.approx(3.0)
    assert float(inference_row["latency_p99_ms_b_mean"]) == pytest.approx(2.4)
    assert float(inference_row["latency_p999_ms_ratio"]) == pytest.approx(0.8)
    assert inference_row["latency_p50_ms_verdict"] == "faster"
    low, high = (
        float(inference_row["latency_p50_ms_ci_low"]),
        float(inference_row["latency_p50_ms_ci_high"]),
    )
    assert low < 0.8 < high < 1 and math.isclose(low * high, 0.64, rel_tol=1e-6)

    # the command: both tables on the terminal
    make_store(tmp_path / "a.sqlite", a)
    make_store(tmp_path / "b.sqlite", b)
    out = run_cli("compare", str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite"))
    assert out.returncode == 0, out.stderr
    assert "Inference" in out.stdout and "p99 latency B/A geometric mean" in out.stdout
    assert "p50 B/A" in out.stdout and "p99 B/A" in out.stdout and "p90 B/A" not in out.stdout
    assert out.stdout.count("0.800 faster") == 2  # p50 and p99, ratio and verdict
    assert "inference throughput: B/A geometric mean over 1 configurations: 1.250x" in out.stdout
