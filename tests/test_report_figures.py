"""Reports show what was measured: host figures, execution time and accuracy on CPU runs,
no rows for metrics no run has; and the report's charts as PNG, SVG and PDF figures."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fake_cli import FAKES, run_cli
from rich.console import Console
from sweep_helpers import figure, make_result, make_store, study_like_results

from harness.report import markdown, render, report_data, terminal
from harness.report.data import build
from harness.store.schema import RepeatRecord, Resources, ResourceTimed, RunResult

GPU_TITLES = ("GPU memory (MiB)", "GPU power (W)", "achieved TFLOP/s", "MFU (%)")


def cpu_result(tool: str, model: str, dataset: str, **figures: tuple[float, float]) -> RunResult:
    """A CPU run with host figures, execution time, accuracy and RAPL energy per image."""
    result = make_result(tool, model, dataset, ips=figures.pop("ips", (500.0, 5.0)))
    summary = result.summary
    summary.host_cpu_percent = figure(*figures.pop("cpu", (350.0, 10.0)))
    summary.host_rss_mib = figure(*figures.pop("rss", (1200.0, 5.0)))
    summary.accuracy = figure(*figures.pop("accuracy", (0.912, 0.004)))
    summary.joules_per_image = figure(*figures.pop("jpi", (0.02, 0.001)))
    summary.energy_j = figure(300.0, 3.0)
    timed = ResourceTimed(energy_j=300.0, energy_from="cpu", joules_per_image=0.02)
    result.repeats = [RepeatRecord(status="ok", resources=Resources(timed=timed))] * 3
    assert not figures, figures
    return result


def cpu_only_results() -> list[RunResult]:
    return [
        cpu_result("pytorch", "lenet", "mnist"),
        cpu_result("tensorflow", "lenet", "mnist", cpu=(180.0, 4.0), accuracy=(0.905, 0.01)),
        cpu_result("pytorch", "resnet50", "cifar10", ips=(40.0, 1.0)),
        make_result("tensorflow", "resnet50", "cifar10", status="oom"),
    ]


def test_cpu_only_report_has_host_rows_and_no_gpu_rows(tmp_path: Path) -> None:
    make_store(tmp_path / "results.sqlite", cpu_only_results())
    data = report_data(tmp_path)
    assert [m.key for m in data.metrics] == [
        "images_per_sec", "joules_per_image", "host_cpu_percent", "host_rss_mib",
        "execution_time_s", "accuracy",
    ]  # fmt: skip
    text = markdown(data)
    for title in GPU_TITLES:
        assert title not in text
    assert "| host CPU utilisation (%) | MNIST | LeNet | pytorch | 350 ± 10 |" in text
    assert "| host CPU utilisation (%) | MNIST | LeNet | tensorflow | 180 ± 4 |" in text
    assert "| host memory peak (MiB) | MNIST | LeNet | pytorch | 1,200 ± 5 |" in text
    assert "| execution time (s) | CIFAR-10 | ResNet-50 | pytorch | 12.5 ± 0.5 |" in text
    assert "| accuracy (%) | MNIST | LeNet | pytorch | 91.2 ± 0.4 |" in text  # a fraction, in %
    assert "| accuracy (%) | MNIST | LeNet | tensorflow | 90.5 ± 1.0 |" in text
    assert "| accuracy (%) | CIFAR-10 | ResNet-50 | tensorflow | oom |" in text
    assert "| energy per image (J) | MNIST | LeNet | pytorch | 0.02 ± 0.001 |" in text
    notes = " ".join(data.notes)
    assert "RAPL" in notes and "100% = one core" in notes and "Accuracy is the last" in notes
    assert "GPU memory and power" not in notes

    page = render(data, "html")
    for title in GPU_TITLES:
        assert title not in page
    assert "no data" not in page  # every metric shown has data in both (dataset, network)
    assert page.count('<svg class="chart"') == 2 * 6
    assert "<td>host CPU utilisation (%)</td>" in page and "<td>accuracy (%)</td>" in page

    console = Console(record=True, width=250)
    terminal(data, console)
    shown = console.export_text()
    assert "host memory peak (MiB)" in shown and "91.2 ± 0.4" in shown
    assert "GPU power" not in shown


def test_gpu_report_keeps_its_gpu_rows() -> None:
    results = study_like_results()
    results[1].summary.host_cpu_percent = figure(98.0, 1.0)  # a host figure on a GPU run
    data = build(results)
    keys = [m.key for m in data.metrics]
    assert keys == [
        "images_per_sec", "gpu_memory_mib", "gpu_power_w", "joules_per_image",
        "host_cpu_percent", "execution_time_s",
    ]  # fmt: skip
    text = markdown(data)
    assert "| GPU power (W) | MNIST | LeNet | pytorch | - | 250.0 ± 5.0 | 480.0 ± 8.0 |" in text
    assert "| GPU memory (MiB) | CIFAR-10 | ResNet-50 | tensorflow | - | 3,000 ± 10 | oom |" in text
    assert "| host CPU utilisation (%) | MNIST | LeNet | pytorch | - | 98 ± 1 | - |" in text
    assert "| accuracy" not in text and "| host memory" not in text
    assert any(n.startswith("GPU memory and power") for n in data.notes)
    page = render(data, "html")
    # ResNet-50 has no host CPU figure: its chart says so, the others all have data
    assert page.count("no data (not measured on these runs)") == 1


# Figures -------------------------------------------------------------------------------


def _expected_files(fmt: str) -> set[str]:
    """The CPU-only report's figures: every (pair, metric) with data, none empty."""
    keys = ("images_per_sec", "joules_per_image", "host_cpu_percent", "host_rss_mib",
            "execution_time_s", "accuracy")  # fmt: skip
    return {f"{pair}-{key}.{fmt}" for pair in ("mnist-lenet", "cifar10-resnet50") for key in keys}


def _check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 10  # drawn, not blank
        assert image.info.get("Title")  # the figure's title, in the PNG's metadata


def _check_svg(path: Path, title: str, texts: list[str]) -> None:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    raw = path.read_text()
    comments = re.findall(r"<!-- (.*?) -->", raw)  # matplotlib labels each text outline
    assert title in comments and "framework" in comments and "hardware" in comments
    for text in texts:
        assert text in comments, (text, comments)
    assert "<dc:date>" not in raw


def _check_pdf(path: Path) -> None:
    raw = path.read_bytes()
    assert raw.startswith(b"%PDF-1.") and raw.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", raw)) == 1  # one page
    assert b"/CreationDate" not in raw and b"/ModDate" not in raw


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_figures_one_file_per_measured_metric(tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("matplotlib")
    from harness.report.figures import write_figures

    data = build(cpu_only_results())
    paths = write_figures(data, fmt, tmp_path / "a")
    assert {p.name for p in paths} == _expected_files(fmt)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in paths)
    again = write_figures(data, fmt, tmp_path / "b")  # deterministic: the same bytes
    for first, second in zip(paths, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name
    for path in paths:
        if fmt == "png":
            _check_png(path)
        elif fmt == "pdf":
            _check_pdf(path)
    if fmt == "svg":
        folder = tmp_path / "a"
        # the same content as the HTML chart: groups, bars' values, a failed run's status
        _check_svg(
            folder / "cifar10-resnet50-images_per_sec.svg",
            "CIFAR-10 · ResNet-50 · images/sec",
            ["CPU", "pytorch", "tensorflow", "40", "oom", "throughput (images/s)"],
        )
        _check_svg(
            folder / "mnist-lenet-accuracy.svg",
            "MNIST · LeNet · accuracy (%)",
            ["91.2", "90.5", "accuracy (%)"],
        )


def test_figures_of_a_gpu_report_and_unmeasured_pairs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from harness.report.figures import write_figures

    results = [*study_like_results(), make_result("pytorch", "vgg16", "cifar10", ips=(7.0, 0.5))]
    paths = write_figures(build(results), "png", tmp_path)
    names = {p.name for p in paths}
    gpu = ("gpu_memory_mib", "gpu_power_w")
    for key in ("images_per_sec", "joules_per_image", "execution_time_s", *gpu):
        assert {f"mnist-lenet-{key}.png", f"cifar10-resnet50-{key}.png"} <= names
    vgg = {n for n in names if n.startswith("cifar10-vgg16-")}
    assert vgg == {"cifar10-vgg16-images_per_sec.png", "cifar10-vgg16-execution_time_s.png"}
    assert len(names) == 2 * 5 + 2
    for path in paths:
        _check_png(path)


def _blocked(tmp_path: Path, *modules: str) -> str:
    """A PYTHONPATH on which importing ``modules`` fails, as if they were not installed."""
    folder = tmp_path / "blocked"
    for module in modules:
        (folder / module).mkdir(parents=True)
        (folder / module / "__init__.py").write_text(
            f'raise ImportError("No module named {module!r} (blocked by a test)")\n'
        )
    return os.pathsep.join([str(folder), str(FAKES)])


@pytest.mark.slow
def test_report_figures_cli(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    make_store(tmp_path / "results.sqlite", cpu_only_results())
    out = run_cli("report", "--store", str(tmp_path), "--format", "svg", "-o", str(tmp_path / "f"))
    assert out.returncode == 0, out.stderr
    assert "wrote 12 SVG figure(s)" in out.stderr
    assert {p.name for p in (tmp_path / "f").iterdir()} == _expected_files("svg")
    out = run_cli("report", "--store", str(tmp_path), "--format", "pdf")  # beside the store
    assert out.returncode == 0, out.stderr
    assert {p.name for p in (tmp_path / "figures").iterdir()} == _expected_files("pdf")
    (tmp_path / "file").write_text("x")
    file = str(tmp_path / "file")
    taken = run_cli("report", "--store", str(tmp_path), "--format", "png", "-o", file)
    assert taken.returncode == 2 and "is a file, not a folder" in taken.stderr
    missing = run_cli(
        "report", "--store", str(tmp_path), "--format", "png", "-o", str(tmp_path / "g"),
        PYTHONPATH=_blocked(tmp_path, "matplotlib"),
    )  # fmt: skip
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dlbench-harness[figures]'" in lines[0], lines
    assert not (tmp_path / "g").exists()
