"""Operation benchmarks, core side: suites, FLOP formulas, timing, records, store, report."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import store_from_fixture

from harness.errors import UsageError
from harness.ops import suite as suites
from harness.ops.runner import OpsSpec, op_result
from harness.ops.suite import Kernel
from harness.ops.timing import time_kernel
from harness.report import ops as report_ops
from harness.store.schema import OpResult, OpSet, OpsResult, SchemaError, Stat, dumps, load
from harness.store.store import SCHEMA_VERSION, ResultStore


def parse(text: str) -> suites.Suite:
    import tomllib

    return suites.parse(tomllib.loads(text), "test.toml")


# --- suites -----------------------------------------------------------------------------


def test_deepbench_suite_has_the_issue_shapes() -> None:
    suite = suites.load("deepbench")
    gemm = {(k.shape["m"], k.shape["n"], k.shape["k"]) for k in suite.kernels if k.kind == "gemm"}
    assert {
        (3072, 128, 1024),
        (5124, 9124, 2560),
        (2560, 64, 2560),
        (7860, 64, 2560),
        (1760, 128, 1760),
    } <= gemm
    # DeepBench's training set transposes A (never B), for these shapes only
    transposed = {
        (k.shape["m"], k.shape["n"], k.shape["k"], k.shape["transpose_a"], k.shape["transpose_b"])
        for k in suite.kernels
        if k.kind == "gemm" and (k.shape["transpose_a"] or k.shape["transpose_b"])
    }
    assert transposed == {
        (1760, 128, 1760, True, False),
        (2560, 64, 2560, True, False),
        (3072, 128, 1024, True, False),
        (5124, 9124, 2560, True, False),
    }
    rnns = {tuple(k.shape[f] for f in ("cell", "hidden", "batch", "steps")) for k in suite.kernels
            if k.kind == "rnn"}  # fmt: skip
    assert {("lstm", 1536, 8, 50), ("gru", 1536, 32, 375), ("gru", 1024, 32, 1500)} <= rnns
    sparse = {tuple(k.shape.values()) for k in suite.kernels if k.kind == "sparse_gemm"}
    assert sparse == {
        (10752, 1, 3584, 0.9),
        (7680, 1500, 2560, 0.95),
        (7680, 2, 2560, 0.95),
        (7680, 1, 2560, 0.95),
    }
    convs = [k for k in suite.kernels if k.kind == "conv"]
    assert {k.direction for k in convs} == {"forward", "backward"} and len(convs) >= 10
    cells = {k.shape["cell"] for k in suite.kernels if k.kind == "rnn"}
    assert cells == {"lstm", "gru"}
    assert {k.direction for k in suite.kernels if k.kind == "rnn"} == {"forward", "backward"}
    assert len([k for k in suite.kernels if k.kind == "allreduce"]) >= 5
    assert [kind for kind, _ in suites.sets(suite.kernels)] == list(suites.KINDS)


def test_smoke_suite_is_tiny() -> None:
    suite = suites.load("smoke")
    assert {k.kind for k in suite.kernels} == set(suites.KINDS)
    assert all((suites.flops(k) or 0) < 1e7 for k in suite.kernels)


def test_a_suite_file_by_path_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        "[[gemm]]\nm = 8\nn = 4\nk = 2\n[[conv]]\nn=1\nc=1\nh=5\nw=5\nk=2\nr=3\ns=3\n"
        'directions = ["forward"]\n[[rnn]]\ncell = "gru"\nhidden = 4\nbatch = 2\nsteps = 3\n'
    )
    suite = suites.load(str(path))
    assert suite.name == "mine"
    gemm, conv, *rnn = suite.kernels
    assert gemm.name == "gemm-8x4x2-NN" and gemm.shape["transpose_a"] is False
    assert conv.shape["pad"] == 0 and conv.shape["stride"] == 1 and conv.direction == "forward"
    assert [k.direction for k in rnn] == ["forward", "backward"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[gemm]]\nm = 1\nn = 2\n", "missing 'k'"),
        ("[[gemm]]\nm = 1\nn = 2\nk = 0\n", "at least 1"),
        ("[[gemm]]\nm = 1\nn = 2\nk = 3\nq = 1\n", "unknown field 'q'"),
        ("[[gemm]]\nm = 1.5\nn = 2\nk = 3\n", "is not a int"),
        ("[[matmul]]\nm = 1\n", "unknown table 'matmul'"),
        ("[[sparse_gemm]]\nm = 1\nn = 2\nk = 3\nsparsity = 1.0\n", "sparsity"),
        ('[[rnn]]\ncell = "rnn"\nhidden = 1\nbatch = 1\nsteps = 1\n', "cell 'rnn'"),
        ("[[conv]]\nn=1\nc=1\nh=2\nw=2\nk=1\nr=5\ns=5\n", "larger than the padded input"),
        ('[[gemm]]\nm = 1\nn = 2\nk = 3\ndirections = ["backward"]\n', "not available"),
        ('[[gemm]]\nname="a"\nm=1\nn=1\nk=1\n[[gemm]]\nname="a"\nm=2\nn=1\nk=1\n', "used twice"),
        ("name = 'empty'\n", "lists no kernel"),
    ],
)
def test_bad_suites_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(text)


def test_unknown_suite_names_the_builtins() -> None:
    with pytest.raises(UsageError, match="deepbench, smoke"):
        suites.load("no-such-suite")


def test_ops_selects_by_kind_cell_and_name() -> None:
    kernels = suites.load("deepbench").kernels
    assert {k.kind for k in suites.select(kernels, "gemm,conv")} == {"gemm", "conv"}
    lstm = suites.select(kernels, "lstm")
    assert lstm and {k.shape["cell"] for k in lstm} == {"lstm"}
    assert {k.name for k in suites.select(kernels, "resnet-conv1")} == {"resnet-conv1"}
    assert {k.kind for k in suites.select(kernels, "sparse")} == {"sparse_gemm"}
    with pytest.raises(UsageError, match="'nope'"):
        suites.select(kernels, "gemm,nope")


def test_scale_shrinks_sizes_but_keeps_filters() -> None:
    conv = next(k for k in suites.load("deepbench").kernels if k.name == "resnet-conv1")
    small = suites.scaled(conv, 0.05)
    assert (small.shape["r"], small.shape["s"], small.shape["pad"], small.shape["stride"]) == (
        7,
        7,
        3,
        2,
    )
    assert small.shape["h"] == 12 and small.shape["n"] == 1 and small.shape["c"] == 1
    tiny = suites.scaled(conv, 0.001)
    assert tiny.shape["h"] >= tiny.shape["r"]
    sparse = Kernel("sparse_gemm", "s", {"m": 100, "n": 10, "k": 50, "sparsity": 0.9})
    assert suites.scaled(sparse, 0.5).shape == {"m": 50, "n": 5, "k": 25, "sparsity": 0.9}


# --- FLOPs ------------------------------------------------------------------------------


def test_flop_formulas() -> None:
    gemm = Kernel(
        "gemm", "g", {"m": 5124, "n": 9124, "k": 2560, "transpose_a": False, "transpose_b": False}
    )
    assert suites.flops(gemm) == 2 * 5124 * 9124 * 2560
    sparse = Kernel("sparse_gemm", "s", {"m": 7680, "n": 1500, "k": 2560, "sparsity": 0.95})
    assert suites.nnz(sparse.shape) == round(0.05 * 7680 * 2560)
    assert suites.flops(sparse) == 2 * suites.nnz(sparse.shape) * 1500
    # DeepBench's 2 N K P Q C R S: resnet conv1, 224 -> 112 with 7x7, pad 3, stride 2
    shape = {"n": 16, "c": 3, "h": 224, "w": 224, "k": 64, "r": 7, "s": 7, "pad": 3, "stride": 2}
    conv = Kernel("conv", "c", shape)
    assert suites.flops(conv) == 2 * 16 * 64 * 112 * 112 * 3 * 7 * 7
    assert suites.flops(Kernel("conv", "c", shape, "backward")) == 3 * suites.flops(conv)
    lstm = Kernel("rnn", "l", {"cell": "lstm", "hidden": 512, "batch": 16, "steps": 25})
    assert suites.flops(lstm) == 2 * 4 * 16 * 25 * 512 * (512 + 512)
    gru = Kernel("rnn", "g", {"cell": "gru", "hidden": 512, "batch": 16, "steps": 25})
    assert suites.flops(gru) == 2 * 3 * 16 * 25 * 512 * 1024
    reduce = Kernel("allreduce", "a", {"size": 1000})
    assert suites.flops(reduce) is None
    assert suites.allreduce_bytes(reduce, "fp32") == 4000
    assert suites.allreduce_bytes(reduce, "fp16") == 2000
    assert suites.bus_factor(2) == 1.0 and suites.bus_factor(4) == 1.5


def test_op_result_rates_and_peak() -> None:
    gemm = Kernel(
        "gemm", "g", {"m": 100, "n": 100, "k": 100, "transpose_a": False, "transpose_b": False}
    )
    line = {
        "kernel": gemm.to_dict(),
        "status": "ok",
        "calls": 10,
        "seconds": 0.01,
        "per_call_us": [1000.0, 1000.0],
        "max_error": 1e-7,
        "detail": {"impl": "x"},
    }
    op = op_result(line, OpsSpec("t", precision="fp32"), (4e9, "measured"), 1)
    assert op.tflops == pytest.approx(2e6 / 1e-3 / 1e12)
    assert op.percent_of_peak == pytest.approx(50.0)
    assert op.time_us.mean == 1000.0 and op.calls == 10 and op.max_error == 1e-7
    reduce = Kernel("allreduce", "a", {"size": 1_000_000})
    line = {
        "kernel": reduce.to_dict(),
        "status": "ok",
        "calls": 4,
        "seconds": 0.004,
        "per_call_us": [1000.0],
    }
    op = op_result(line, OpsSpec("t", precision="fp32"), (None, "none"), 4)
    assert op.gb_per_s == pytest.approx(4.0) and op.bus_gb_per_s == pytest.approx(6.0)
    assert op.tflops is None and op.percent_of_peak is None
    line = {"kernel": gemm.to_dict(), "status": "unsupported", "reason": "unsupported: no kernel"}
    op = op_result(line, OpsSpec("t"), (1e9, "x"), 1)
    assert (
        op.status == "unsupported" and op.reason == "unsupported: no kernel" and op.tflops is None
    )


# --- timing -----------------------------------------------------------------------------


def test_time_kernel_warms_up_and_stops_on_its_bounds() -> None:
    now = [0.0]
    synced = []

    def call() -> int:
        now[0] += 1e-3  # every call takes 1 ms of the fake clock
        return 1

    timing = time_kernel(call, synced.append, min_time=0.05, max_time=0.2, clock=lambda: now[0])
    assert timing.warmup_end == "steady"
    assert timing.length.startswith("ci within")  # constant time: the CI is zero at once
    assert timing.calls >= 5 * timing.window_calls
    assert timing.mean_s == pytest.approx(1e-3)
    assert all(us == pytest.approx(1000.0) for us in timing.per_call_us)
    assert len(synced) == len(timing.per_call_us) + 1 + 1  # one per window (first call, warmup)


def test_time_kernel_stops_at_max_time() -> None:
    now, count = [0.0], [0]

    def call() -> None:
        count[0] += 1
        now[0] += 1e-3 * (1 + (count[0] % 7))  # noisy: the CI never closes

    timing = time_kernel(call, lambda _: None, min_time=0.05, max_time=0.1, clock=lambda: now[0])
    assert timing.length in ("max time", "ci within 2%")
    assert timing.seconds >= 0.05


# --- records and store --------------------------------------------------------------------


def sample_result(
    ops_id: str = "ops-1", tool: str = "pytorch", started: str = "2026-01-01T00:00:00"
) -> OpsResult:
    ok = OpResult(
        kernel="gemm",
        name="gemm-a",
        shape={"m": 2, "n": 2, "k": 2, "transpose_a": False},
        calls=4,
        time_us=Stat.of([10.0, 11.0]),
        flops=16.0,
        tflops=1.5,
        percent_of_peak=25.0,
        peak_tflops=6.0,
        detail={"impl": "torch.matmul"},
    )
    unsupported = OpResult(
        kernel="sparse_gemm", name="s", status="unsupported", reason="unsupported: no fp16"
    )
    return OpsResult(
        ops_id=ops_id,
        started_at=started,
        tool=tool,
        suite="smoke",
        sets=[
            OpSet(kind="gemm", ops=[ok], total_us=10.5, wall_s=3.0),
            OpSet(kind="sparse_gemm", ops=[unsupported]),
        ],
    )


def test_ops_result_round_trip() -> None:
    result = sample_result()
    again = OpsResult.from_json(result.to_json())
    assert again == result
    assert load(OpsResult, dumps(result)) == result
    assert again.status == "ok"  # unsupported is not a failure
    assert json.loads(result.to_json())["schema_version"] == result.schema_version
    doc = json.loads(result.to_json())
    doc["sets"][0]["ops"][0]["surprise"] = 1
    with pytest.raises(SchemaError, match="surprise"):
        OpsResult.from_json(doc)
    failed = sample_result()
    failed.sets[0].ops[0].status = "failed"
    assert failed.status == "failed"


def test_store_keeps_ops_results(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.sqlite")
    store.add_ops(sample_result("ops-1", "pytorch", "2026-01-01T00:00:00"))
    store.add_ops(sample_result("ops-2", "jax", "2026-01-02T00:00:00"))
    assert [r.ops_id for r in store.ops()] == ["ops-1", "ops-2"]
    assert [r.tool for r in store.ops(tool="jax")] == ["jax"]
    readonly = ResultStore(tmp_path / "results.sqlite", readonly=True)
    assert readonly.ops(suite="smoke")[0] == sample_result(
        "ops-1", "pytorch", "2026-01-01T00:00:00"
    )
    with pytest.raises(ValueError, match="unknown column"):
        store.ops(model="x")


def test_old_store_gains_the_ops_table(tmp_path: Path) -> None:
    path = store_from_fixture("store-schema3.sql", tmp_path)
    assert ResultStore(path, readonly=True).ops() == []  # read-only: nothing created
    db = sqlite3.connect(path)
    assert "ops" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    store = ResultStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    db.close()
    store.add_ops(sample_result())
    assert len(store.ops()) == 1 and store.runs()  # the old runs are still there


# --- report -------------------------------------------------------------------------------


def test_report_section_puts_frameworks_side_by_side(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.sqlite")
    store.add_ops(sample_result("ops-1", "pytorch", "2026-01-01T00:00:00"))
    store.add_ops(sample_result("ops-2", "jax", "2026-01-02T00:00:00"))
    store.add_ops(sample_result("ops-3", "jax", "2026-01-03T00:00:00"))  # jax again: both shown
    text = report_ops.markdown(tmp_path)
    assert "## Operations" in text and "### smoke · fp32 · cpu · 1 device" in text
    assert "| kernel | pytorch | jax (2026-01-02 00:00) | jax (2026-01-03 00:00) |" in text
    assert "| gemm-a | 1.5 TFLOP/s (25%) | 1.5 TFLOP/s (25%) | 1.5 TFLOP/s (25%) |" in text
    assert "| s | unsupported | unsupported | unsupported |" in text
    assert "gemm 0.0 ms" in text
    page = report_ops.add_to("<html><body><p>x</p></body></html>", "html", tmp_path)
    assert page.index("<h2>Operations</h2>") < page.index("</body>")
    assert page.count("<svg") == 1 and page.count("<rect") == 3  # gemm-a: one bar a run
    empty = tmp_path / "empty"
    ResultStore(empty / "results.sqlite")
    assert report_ops.markdown(empty) == ""


def test_report_has_a_table_per_hardware_and_device_count(tmp_path: Path) -> None:
    """Runs on one and two CPU devices and on a GPU are never mixed in one table, every
    run is a column, and in HTML the section comes before the page's footer."""
    store = ResultStore(tmp_path / "results.sqlite")
    runs = [
        ("ops-1", "pytorch", "cpu", 1),
        ("ops-2", "pytorch", "cpu", 2),
        ("ops-3", "jax", "cpu", 2),
        ("ops-4", "jax", "1xNVIDIA H100 80GB HBM3", 1),
        ("ops-5", "pytorch", "1xNVIDIA H100 80GB HBM3", 1),
        ("ops-6", "pytorch", "cpu", 1),
    ]
    for number, (ops_id, tool, hardware, devices) in enumerate(runs, 1):
        result = sample_result(ops_id, tool, f"2026-01-0{number}T00:00:00")
        result.hardware, result.devices = hardware, devices
        store.add_ops(result)
    found = {title: header[1:] for title, header, _ in report_ops.tables(report_ops.load(tmp_path))}
    assert found == {
        "smoke · fp32 · cpu · 1 device": [
            "pytorch (2026-01-01 00:00)",
            "pytorch (2026-01-06 00:00)",
        ],
        "smoke · fp32 · cpu · 2 devices": ["pytorch", "jax"],
        "smoke · fp32 · 1xNVIDIA H100 80GB HBM3 · 1 device": ["jax", "pytorch"],
    }
    assert sum(map(len, found.values())) == len(runs)  # every run shown
    page = "<html><body><h2>Notes</h2><footer>harness</footer><script>x</script></body></html>"
    page = report_ops.add_to(page, "html", tmp_path)
    assert page.index("<h2>Notes</h2>") < page.index("<h2>Operations</h2>") < page.index("<footer")
    assert page.count("<h3>") == 3 and page.count("<table>") == 3


def test_ops_help_imports_no_framework() -> None:
    code = (
        "import sys; from harness.cli.main import main\ntry:\n    main(['ops', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'jax', "
        "'mxnet') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--suite" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_framework_peak_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.machine import peak as numpy_peak
    from harness.ops import peak

    info = {"hostname": "h", "cpu": "c", "cores": 2, "blas": "b"}
    monkeypatch.setattr(numpy_peak, "machine", lambda: info)
    path = tmp_path / "peak.json"
    assert peak.lookup("jax", "fp32", path)[0] is None
    entry = {"key": peak.framework_key("jax", info), "peaks": {"fp32": 5e10}, "measured_at": "t"}
    numpy_peak.save(entry, path)
    value, source = peak.lookup("jax", "fp32", path)
    assert value == 5e10 and "jax GEMM peak" in source
    assert peak.lookup("jax", "fp16", path)[0] is None
    assert peak.lookup("pytorch", "fp32", path)[0] is None
    assert numpy_peak.cached(path) is None  # NumPy's entry is another key


def test_a_tool_without_kernels_is_refused(tmp_path: Path) -> None:
    from harness.ops.runner import execute, ops_module
    from harness.plugins import PluginManager

    pm = PluginManager()
    with pytest.raises(UsageError, match=r"'onnxruntime' has no operation kernels; tools with "):
        ops_module(pm.backend("onnxruntime"), pm)
    assert ops_module(pm.backend("pytorch"), pm) == "harness.backends.pytorch.ops"
    with pytest.raises(UsageError, match="--scale"):
        execute(OpsSpec("pytorch", suite="smoke", scale=0, output_dir=str(tmp_path)))
    assert not (tmp_path / "results.sqlite").exists()


def _with_time(result: OpsResult, times: list[float]) -> OpsResult:
    result.sets[0].ops[0].time_us = Stat.of(times)
    return result


def test_compare_ops_pairs_kernels_and_gives_a_verdict(tmp_path: Path) -> None:
    from harness.results import compare_ops

    a = [_with_time(sample_result("a-1"), [10.0, 10.1, 9.9, 10.0])]
    b = [_with_time(sample_result("b-1"), [5.0, 5.05, 4.95, 5.0])]
    b[0].devices = 2  # other hardware: the row says so
    rows = compare_ops.compare(a, b)
    gemm, sparse = rows
    assert (gemm.kind, gemm.name, gemm.verdict) == ("gemm", "gemm-a", "faster")
    assert gemm.ratio == pytest.approx(2.0) and gemm.ci[0] < 2.0 < gemm.ci[1]
    assert gemm.differs == "hardware: cpu x1 vs cpu x2"
    assert (sparse.verdict, sparse.ratio) == ("-", None)  # unsupported on both sides
    same = compare_ops.compare(a, [_with_time(sample_result("b-2"), [10.0, 10.1, 9.9, 10.0])])
    assert same[0].verdict == "same" and same[0].differs == ""
    # a kernel of another shape (another --scale) is another row, never paired
    other = sample_result("b-3")
    other.sets[0].ops[0].shape = {"m": 4, "n": 4, "k": 4, "transpose_a": False}
    assert [r.verdict for r in compare_ops.compare(a, [other])][:2] == ["-", "-"]
    assert "1 of 2 kernels measured on both sides: B faster in 1" in compare_ops.summary_line(rows)
    lines = compare_ops.to_csv(rows).splitlines()
    assert lines[0].startswith("tool,precision,kind,kernel") and len(lines) == 3

    for name, results in (("a", a), ("b", b)):
        store = ResultStore(tmp_path / name / "results.sqlite")
        for result in results:
            store.add_ops(result)
    command = [sys.executable, "-m", "harness", "compare", "--ops"]
    out = subprocess.run(
        [*command, str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (
        "| pytorch | fp32 | gemm | gemm-a | forward | 10.0 ± 0.1 µs | 5.0 ± 0.0 µs |" in out.stdout
    )
    by_id = subprocess.run(
        [*command, "a-1", "nope", "--store", str(tmp_path / "a")], capture_output=True, text=True
    )
    assert by_id.returncode == 2 and "no ops run 'nope'" in by_id.stderr
