"""Reports from synthetic store contents: values, layout, speedups, missing data, statuses."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_cli import run_cli
from rich.console import Console
from sweep_helpers import make_result, make_store, study_like_results, with_spec

from harness.report import markdown, render, report_data, terminal
from harness.report.data import METRICS, Row, build, ratio
from harness.report.svg import compact, nice_ticks
from harness.report.text import value_text
from harness.store.schema import RunResult, Stat


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "results.sqlite"
    make_store(path, study_like_results())
    return path


def test_table_values_are_the_stored_means(store_path: Path) -> None:
    data = report_data(store_path)
    assert [c.label for c in data.columns] == ["CPU", "1 GPU", "2 GPUs"]
    assert data.rows == [
        Row("mnist", "lenet", "pytorch"),
        Row("mnist", "lenet", "tensorflow"),
        Row("cifar10", "resnet50", "pytorch"),
        Row("cifar10", "resnet50", "tensorflow"),
    ]
    checked = 0
    for result in study_like_results():  # the same figures as stored
        spec = result.spec
        row = Row(spec.dataset, spec.model, spec.tool)
        column = next(c for c in data.columns if c.label == result.hardware)
        for metric in METRICS:
            value = data.value(metric.key, row, column)
            stored = result.summary.metric(metric.key)
            if result.status != "ok":
                assert value.mean is None and value.status == result.status
            elif stored is None or stored.mean is None:
                assert value.mean is None and value_text(value, metric) == "-"
            else:
                assert value.mean == stored.mean and value.std == stored.std
                checked += 1
    # ips, J/image and execution time on the 11 ok runs, GPU ones on 7
    assert checked == 11 * 3 + 7 * 2
    # the metrics no run has (FLOP/s, MFU, host figures, accuracy) are left out
    assert [m.key for m in data.metrics] == [
        "images_per_sec", "gpu_memory_mib", "gpu_power_w", "joules_per_image",
        "execution_time_s",
    ]  # fmt: skip


def md_row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def test_markdown_layout(store_path: Path) -> None:
    text = markdown(report_data(store_path))
    lines = text.splitlines()
    head = lines.index("| metric | dataset | network | framework | CPU | 1 GPU | 2 GPUs |")
    assert lines[head + 1] == "|---|---|---|---|---:|---:|---:|"
    body = []
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        body.append(line)
    # one row per (metric, dataset, network, framework), for the 5 metrics these runs have
    assert len(body) == 5 * 4
    assert body[0] == md_row(
        "images/sec",
        "MNIST",
        "LeNet",
        "pytorch",
        "2,000.0 ± 40.0",
        "30,000.0 ± 300.0",
        "54,000.0 ± 540.0",
    )
    assert (
        body[3]
        == "| images/sec | CIFAR-10 | ResNet-50 | tensorflow | 80.0 ± 1.6 | 1,200.0 ± 12.0 | oom |"
    )
    assert body[4] == "| GPU memory (MiB) | MNIST | LeNet | pytorch | - | 3,000 ± 10 | 6,100 ± 20 |"
    assert body[8] == "| GPU power (W) | MNIST | LeNet | pytorch | - | 250.0 ± 5.0 | 480.0 ± 8.0 |"
    assert body[12] == md_row(
        "energy per image (J)",
        "MNIST",
        "LeNet",
        "pytorch",
        "0.5 ± 0.01",
        "0.05 ± 0.001",
        "0.045 ± 0.001",
    )
    assert body[19] == md_row(
        "execution time (s)", "CIFAR-10", "ResNet-50", "tensorflow", "12.5 ± 0.5", "12.5 ± 0.5",
        "oom",
    )  # fmt: skip
    assert "TFLOP/s" not in text and "MFU" not in text and "host CPU" not in text
    assert "## Speedup: CPU to 1 GPU" in text
    assert "| MNIST | LeNet | pytorch | 15.00x |" in text
    assert "## Scaling: 1 to N GPUs" in text
    assert "| dataset | network | framework | 2 GPUs / 1 GPU | efficiency |" in text
    assert "| CIFAR-10 | ResNet-50 | pytorch | 1.80x | 90% |" in text
    assert "| CIFAR-10 | ResNet-50 | tensorflow | oom | oom |" in text


def test_speedup_math() -> None:
    results = [
        make_result("pytorch", "lenet", "mnist", ips=(200.0, 10.0)),
        make_result("pytorch", "lenet", "mnist", num_gpus=1, ips=(1000.0, 20.0)),
        make_result("pytorch", "lenet", "mnist", num_gpus=2, ips=(1500.0, 30.0)),
        make_result("pytorch", "lenet", "mnist", num_gpus=4, ips=(2600.0, 0.0)),
        make_result("jax", "lenet", "mnist", ips=(100.0, 1.0)),
        make_result("jax", "lenet", "mnist", num_gpus=1, status="crashed"),
    ]
    data = build(results)
    gpu, scaling = data.speedups()
    (row, speed, eff), (jax_row, jax_speed, _) = gpu.rows[1], gpu.rows[0]
    assert (row.tool, jax_row.tool) == ("pytorch", "jax")
    assert speed[0].value == pytest.approx(5.0)
    # relative errors add in quadrature: 5 * sqrt(0.05^2 + 0.02^2)
    assert speed[0].std == pytest.approx(5.0 * (0.05**2 + 0.02**2) ** 0.5)
    assert eff[0].value == pytest.approx(5.0)  # divisor 1
    assert jax_speed[0].value is None and jax_speed[0].status == "crashed"
    assert scaling.headers == ["2 GPUs / 1 GPU", "4 GPUs / 1 GPU"]
    _, speeds, effs = scaling.rows[1]
    assert [s.value for s in speeds] == pytest.approx([1.5, 2.6])
    assert [e.value for e in effs] == pytest.approx([0.75, 0.65])
    _, speeds, _ = scaling.rows[0]  # jax has no 2- or 4-GPU run
    assert [s.status for s in speeds] == ["crashed", "crashed"]  # its 1-GPU baseline crashed


def test_ratio_without_data_names_the_missing_side() -> None:
    from harness.report.data import Value

    assert ratio(Value(None), Value(10.0, 1.0, 3, "ok")).status == "-"
    assert ratio(Value(10.0, 1.0, 3, "ok"), Value(None, status="oom")).status == "oom"
    assert ratio(Value(0.0, 0.0, 3, "ok"), Value(1.0, 0.0, 3, "ok")).value is None


def test_latest_ok_run_wins_and_statuses_show(tmp_path: Path) -> None:
    results = [
        make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0)),
        make_result("pytorch", "lenet", "mnist", ips=(200.0, 2.0)),
        make_result("pytorch", "lenet", "mnist", status="error"),  # newer but failed
        make_result("tensorflow", "lenet", "mnist", status="timeout"),
        make_result("tensorflow", "lenet", "mnist", status="oom"),
        make_result("jax", "lenet", "mnist", ips=(50.0, 5.0), status="partial"),
        make_result("jax", "lenet", "mnist", status="crashed"),
    ]
    make_store(tmp_path / "results.sqlite", results)
    data = report_data(tmp_path)
    cpu = data.columns[0]
    ips = METRICS[0]
    assert data.value("images_per_sec", Row("mnist", "lenet", "pytorch"), cpu).mean == 200.0
    tf = data.value("images_per_sec", Row("mnist", "lenet", "tensorflow"), cpu)
    assert value_text(tf, ips) == "oom"  # the latest, since none is ok
    jax = data.value("images_per_sec", Row("mnist", "lenet", "jax"), cpu)
    assert value_text(jax, ips) == "50.0 ± 5.0*"  # partial beats a newer crash
    assert any(note.startswith("* partial") for note in data.notes)


def test_cpu_only_runs_without_gpu_figures_render_everywhere(tmp_path: Path) -> None:
    bare = make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0))
    for key in ("gpu_power_w", "gpu_memory_mib", "joules_per_image"):
        assert getattr(bare.summary, key) is None  # not measured
    results = [bare, make_result("mxnet", "alexnet", "cifar10", ips=None)]
    results[1].summary.images_per_sec = Stat()
    make_store(tmp_path / "results.sqlite", results)
    data = report_data(tmp_path)
    text = markdown(data)
    # no run has a GPU figure, energy, FLOP/s or MFU: those rows are left out
    assert "GPU power" not in text and "GPU memory" not in text and "energy" not in text
    assert "| images/sec | CIFAR-10 | AlexNet | mxnet | - |" in text
    assert "| execution time (s) | MNIST | LeNet | pytorch | 12.5 ± 0.5 |" in text
    assert data.speedups() == []
    page = render(data, "html")
    # only AlexNet's images/sec chart is empty (images/sec is always shown: it carries
    # the statuses); before the report left out unmeasured metrics there were 11
    assert page.count("no data (not measured on these runs)") == 1
    console = Console(record=True, width=200)
    terminal(data, console)
    assert "100.0 ± 1.0" in console.export_text()


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.bars = 0
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs += attrs
        if tag == "rect" and ("class", "bar") in attrs:
            self.bars += 1


def test_html_is_self_contained_with_one_chart_per_metric(store_path: Path) -> None:
    page = render(report_data(store_path), "html")
    assert "http:" not in page and "https:" not in page and "url(" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    parser = _Counter()
    parser.feed(page)
    assert "link" not in parser.tags and "img" not in parser.tags and "iframe" not in parser.tags
    assert not [a for a in parser.attrs if a[0] in ("src", "href")]
    # (dataset, network) x the 5 metrics these runs have (no FLOP/s, MFU, host, accuracy)
    assert parser.tags["svg"] == 2 * 5
    assert "no data" not in page and "MFU" not in page
    # bars: every shown value; images/sec, energy and execution time on 3 columns, GPU
    # ones on 2, one oom
    assert parser.bars == 2 * (3 + 3 + 3 + 2 + 2) * 2 - 5
    assert page.count('class="status"') >= 4  # the oom cell, in each metric's chart
    assert "54,000.0 ± 540.0" in page  # the table
    assert "<title>pytorch · 2 GPUs: 54,000.0 ± 540.0 images/s</title>" in page


def test_chart_helpers() -> None:
    assert nice_ticks(54540) == [0, 20000, 40000, 60000]
    assert nice_ticks(480) == [0, 100, 200, 300, 400, 500]
    assert nice_ticks(0.5) == [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5]
    assert nice_ticks(0) == [0.0, 1.0]
    assert [compact(v) for v in (0, 950, 1000, 1234, 12345, 2.5e6, 0.0123)] == [
        "0", "950", "1k", "1.2k", "12.3k", "2.5M", "0.012"
    ]  # fmt: skip


def test_report_cli_formats_and_sweep_filter(tmp_path: Path) -> None:
    make_store(tmp_path / "results.sqlite", [
        *study_like_results(sweep_id="s1"),
        make_result("pytorch", "vgg16", "cifar10", ips=(7.0, 0.5), sweep_id="s2"),
    ])  # fmt: skip
    out = run_cli("report", "--store", str(tmp_path), "--format", "markdown", "--sweep", "s2")
    assert out.returncode == 0, out.stderr
    assert "| images/sec | CIFAR-10 | VGG-16 | pytorch | 7.0 ± 0.5 |" in out.stdout
    assert "LeNet" not in out.stdout
    out = run_cli("report", "--store", str(tmp_path / "results.sqlite"), "--format", "html")
    assert out.returncode == 0, out.stderr
    # LeNet and ResNet-50: 5 metrics each; VGG-16: images/sec and execution time
    assert (tmp_path / "report.html").read_text().count('<svg class="chart"') == 2 * 5 + 2
    out = run_cli("report", "--store", str(tmp_path), "-o", str(tmp_path / "r.txt"))
    assert out.returncode == 0, out.stderr
    assert re.search(r"images/sec .* VGG-16 .* 7\.0 ± 0\.5", (tmp_path / "r.txt").read_text())
    missing = run_cli("report", "--store", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no results store at" in missing.stderr
    unknown = run_cli("report", "--store", str(tmp_path), "--sweep", "nosuch")
    assert unknown.returncode == 2 and "no sweep 'nosuch'" in unknown.stderr


def _config(result: RunResult, **spec: object) -> RunResult:
    return with_spec(result, **({"threads": 2} | spec))


def test_configurations_never_share_a_cell(tmp_path: Path) -> None:
    base = ("pytorch", "lenet", "mnist")
    results = [
        _config(make_result(*base, ips=(100.0, 1.0))),
        _config(make_result(*base, ips=(150.0, 1.0)), batch_size=64),
        _config(make_result(*base, ips=(120.0, 1.0)), precision="bf16"),
        _config(make_result(*base, ips=(130.0, 1.0)), options={"compile": "1"}),
        _config(make_result(*base, ips=(50.0, 1.0)), threads=1),
        _config(make_result("tensorflow", "lenet", "mnist", ips=(90.0, 1.0))),
        _config(make_result(*base, ips=(110.0, 1.0))),  # a newer run of the first one
        _config(make_result(*base, status="crashed"), batch_size=64),  # never started:
    ]
    results[-1].synthetic = None  # its data source is unknown; it joins batch 64
    make_store(tmp_path / "results.sqlite", results)
    data = report_data(tmp_path)
    assert [c.label for c in data.columns] == ["CPU · threads 1", "CPU · threads 2"]
    one, two = data.columns
    rows = {r.label: r for r in data.rows}
    assert list(rows) == [
        "pytorch · batch 32 · options compile=1 · fp32",
        "pytorch · batch 32 · options none · bf16",
        "pytorch · batch 32 · options none · fp32",
        "pytorch · batch 64 · options none · fp32",
        "tensorflow",
    ]
    ips = {
        label: tuple(data.value("images_per_sec", r, c).mean for c in (one, two))
        for label, r in rows.items()
    }
    assert ips == {
        "pytorch · batch 32 · options compile=1 · fp32": (None, 130.0),
        "pytorch · batch 32 · options none · bf16": (None, 120.0),
        "pytorch · batch 32 · options none · fp32": (50.0, 110.0),
        "pytorch · batch 64 · options none · fp32": (None, 150.0),
        "tensorflow": (None, 90.0),
    }
    assert any(note.startswith("Runs are grouped by configuration key") for note in data.notes)
    text = markdown(data)
    row = "| images/sec | MNIST | LeNet | pytorch · batch 64 · options none · fp32 | - |"
    assert row + " 150.0 ± 1.0 |" in text
    page = render(data, "html")
    assert "<td>pytorch · batch 32 · options none · bf16</td>" in page

    out = run_cli("export", "--store", str(tmp_path), "--format", "json", "--latest", "--brief")
    assert out.returncode == 0, out.stderr
    import json

    runs = json.loads(out.stdout)["runs"]
    assert sorted(r["images_per_sec"] for r in runs) == [50.0, 90.0, 110.0, 120.0, 130.0, 150.0]
    assert len({r["config_key"] for r in runs}) == 6


def test_contended_runs_are_marked_in_the_report_and_compare() -> None:
    from harness.results.compare import compare, summary_line, to_csv
    from harness.store.schema import RepeatRecord, Resources

    clean = make_result("pytorch", "lenet", "mnist", num_gpus=1, ips=(100.0, 1.0))
    busy = make_result("pytorch", "lenet", "mnist", num_gpus=1, ips=(80.0, 1.0))
    other = {"gpu": 0, "pid": 4000001, "name": "python", "kind": "compute"}
    busy.repeats = [RepeatRecord(status="ok", resources=Resources(gpu={"contended": [other]}))]
    assert busy.contended == [other] and clean.contended == []
    data = build([busy])
    value = data.value("images_per_sec", data.rows[0], data.columns[0])
    assert value.contended and value_text(value, METRICS[0]) == "80.0 ± 1.0†"
    assert any(
        n.startswith("† contended: 1 run(s)") and "4000001 (python)" in n for n in data.notes
    )
    assert not any("contended" in n for n in build([clean]).notes)
    (row,) = compare([clean], [busy])
    assert row.b.contended and not row.a.contended
    assert "† 1 row(s) have a side measured while another process" in summary_line([row])
    assert to_csv([row]).splitlines()[1].endswith(",0,1")
