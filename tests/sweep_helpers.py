"""Helpers for the sweep, report, export and compare tests: synthetic stored runs, a
and a headless Chromium."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.spec import RunSpec
from harness.store.schema import InferenceSummary, RunResult, RunSummary, Stat
from harness.store.store import ResultStore

_counter = itertools.count(1)


def figure(mean: float | None, std: float | None = None, n: int = 3) -> Stat:
    """Statistics with the given mean and std."""
    if mean is None:
        return Stat.of([])
    s = 0.0 if std is None else std
    return Stat(n=n, mean=mean, std=s, min=mean, max=mean, p50=mean, p90=mean, p99=mean)


def make_result(
    tool: str,
    model: str,
    dataset: str,
    *,
    num_gpus: int = -1,
    ips: tuple[float, float] | None = (100.0, 1.0),
    power: tuple[float, float] | None = None,
    memory: tuple[float, float] | None = None,
    jpi: tuple[float, float] | None = None,
    status: str = "ok",
    n: int = 3,
    gpu_name: str | None = None,
    sweep_id: str | None = None,
    started_at: str | None = None,
    tags: dict[str, str] | None = None,
    host: str = "testhost",
) -> RunResult:
    """A stored-run result as the orchestrator writes it, with chosen figures."""
    number = next(_counter)
    spec = RunSpec(
        tool,
        model,
        dataset,
        num_gpus=num_gpus,
        batch_size=32,
        learning_rate=0.1,
        tags=dict(tags or {}),
    )
    if num_gpus > 0 and gpu_name is None:
        gpu_name = "NVIDIA A100-SXM4-40GB"
    ok = status in ("ok", "partial")
    summary = RunSummary(
        status=status,
        repeats=n,
        repeats_ok=n if status == "ok" else (n - 1 if status == "partial" else 0),
        images_per_sec=figure(*(ips or (None,)), n=n) if ok else Stat.of([]),
        execution_time_s=figure(12.5, 0.5, n=n),
        causes=[] if status == "ok" else [f"RuntimeError: it went {status}"],
    )
    for key, pair in (
        ("gpu_power_w", power),
        ("gpu_memory_mib", memory),
        ("joules_per_image", jpi),
    ):
        setattr(summary, key, figure(*pair, n=n) if pair and ok else None)
    gpus = [
        {"index": i, "name": gpu_name, "uuid": f"GPU-{i}", "memory_mib": 40960}
        for i in range(max(0, num_gpus))
    ]
    return RunResult(
        run_id=f"run-{number:04d}-{tool}-{model}-{dataset}-{num_gpus}",
        started_at=started_at
        or f"2026-01-01T{number // 3600:02d}:{number // 60 % 60:02d}:{number % 60:02d}+00:00",
        finished_at="2026-01-01T01:00:00+00:00",
        spec=spec,
        hardware=spec.hardware,
        gpu_name=gpu_name,
        global_batch=32 * spec.devices,
        environment={
            "hostname": host,
            "cpu": "Test CPU",
            "cpu_logical_cores": 8,
            "harness_commit": "abc123",
            "gpus": gpus,
        },
        sweep_id=sweep_id,
        framework={"framework": tool, "version": "1.0"},
        synthetic=True,
        summary=summary,
    )


def with_spec(result: RunResult, **fields: Any) -> RunResult:
    """``result`` with other spec fields (batch_size, precision, options, ...)."""
    result.spec = dataclasses.replace(result.spec, **fields)
    result.global_batch = (result.spec.batch_size or 0) * result.spec.devices
    return result


def make_inference_result(
    tool: str,
    model: str,
    dataset: str,
    batch: int,
    *,
    latency_ms: tuple[float, float, float, float] | None = (2.0, 2.5, 3.0, 4.0),
    std_ms: float = 0.1,
    ips: tuple[float, float] | None = None,
    load_s: float = 0.5,
    prepare_s: float = 1.5,
    first_ms: float = 20.0,
    total_s: float | None = None,
    accuracy: float | None = None,
    jpi: tuple[float, float] | None = None,
    model_bytes: int = 1_700_000,
    status: str = "ok",
    n: int = 3,
    num_gpus: int = -1,
    **kwargs: Any,
) -> RunResult:
    """A stored inference run (``--task inference``) of one batch size: latency
    percentiles per batch in ms (p50, p90, p99, p99.9; the mean is p50), images/sec
    (default: batch / p50), load, session and first-inference times; ``total_s`` and
    ``accuracy`` as a run on real data has them."""
    ok = status in ("ok", "partial")
    if ips is None and latency_ms is not None:
        speed = batch / (latency_ms[0] / 1e3)
        ips = (speed, speed * 0.01)
    result = make_result(
        tool, model, dataset, num_gpus=num_gpus, ips=ips, jpi=jpi, status=status, n=n, **kwargs
    )
    with_spec(result, task="inference", batch_size=batch, learning_rate=None)
    result.synthetic = total_s is None

    def stat(value: float | None, std: float | None = None) -> Stat:
        return figure(value, std, n=n) if ok and value is not None else Stat.of([])

    p50, p90, p99, p999 = (v / 1e3 for v in latency_ms) if latency_ms else (None,) * 4
    spread = std_ms / 1e3
    result.summary.inference = InferenceSummary(
        model_file=f"/runs/{result.run_id}/model.bin",
        model_bytes=model_bytes,
        model_format=f"{tool} format",
        latency_basis="window",
        load_s=stat(load_s, load_s * 0.05),
        prepare_s=stat(prepare_s, prepare_s * 0.05),
        first_inference_s=stat(first_ms / 1e3, first_ms / 1e4),
        latency_mean_s=stat(p50, spread),
        latency_p50_s=stat(p50, spread),
        latency_p90_s=stat(p90, spread),
        latency_p99_s=stat(p99, spread),
        latency_p999_s=stat(p999, spread),
        total_inference_s=stat(total_s, 0.01 if total_s else None),
        accuracy=stat(accuracy, 0.0 if accuracy is not None else None),
    )
    result.summary.execution_time_s = Stat.of([])
    if accuracy is not None and ok:
        result.summary.accuracy = figure(accuracy, 0.0, n=n)
    return result


def store_from_fixture(name: str, folder: Path) -> Path:
    """``folder/results.sqlite`` made from the SQL dump ``tests/fixtures/NAME``."""
    path = folder / "results.sqlite"
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).resolve().parent / "fixtures" / name).read_text())
    db.close()
    return path


def make_store(path: Path, results: list[RunResult]) -> ResultStore:
    store = ResultStore(path)
    for result in results:
        store.add_run(result)
    return store


def study_like_results(sweep_id: str | None = None) -> list[RunResult]:
    """Two tools, two networks, CPU / 1 GPU / 2 GPUs, with an out-of-memory cell."""
    out = []
    for tool, factor in (("pytorch", 1.0), ("tensorflow", 0.8)):
        for model, dataset, base in (("lenet", "mnist", 2000.0), ("resnet50", "cifar10", 100.0)):
            cpu = base * factor
            out.append(
                make_result(
                    tool, model, dataset, ips=(cpu, cpu * 0.02), jpi=(0.5, 0.01), sweep_id=sweep_id
                )
            )
            one = cpu * 15
            out.append(
                make_result(
                    tool,
                    model,
                    dataset,
                    num_gpus=1,
                    ips=(one, one * 0.01),
                    power=(250.0, 5.0),
                    memory=(3000.0, 10.0),
                    jpi=(0.05, 0.001),
                    sweep_id=sweep_id,
                )
            )
            if tool == "tensorflow" and model == "resnet50":
                out.append(
                    make_result(tool, model, dataset, num_gpus=2, status="oom", sweep_id=sweep_id)
                )
            else:
                two = one * 1.8
                out.append(
                    make_result(
                        tool,
                        model,
                        dataset,
                        num_gpus=2,
                        ips=(two, two * 0.01),
                        power=(480.0, 8.0),
                        memory=(6100.0, 20.0),
                        jpi=(0.045, 0.001),
                        sweep_id=sweep_id,
                    )
                )
    return out


# The fake backend in subprocesses ---------------------------------------------------------


# Headless Chromium ----------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium_path() -> str | None:
    explicit = os.environ.get("HARNESS_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Chromium's path; in CI (env CI set) a missing browser fails the test."""
    path = chromium_path()
    if path is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must check the HTML report in a real browser")
        pytest.skip(message + "; CI is unset, so the browser check is skipped here")
    return path


def chromium(browser: str, profile: Path, *args: str, timeout: float = 180) -> str:
    """Runs headless Chromium with the test flags; returns its stdout."""
    out = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# Okabe-Ito blue and orange: the first two frameworks' bars.
BAR_COLOURS = ((0x00, 0x72, 0xB2), (0xE6, 0x9F, 0x00))


def check_page_in_browser(
    page: Path, tmp_path: Path, *, bars: int | None = None, frameworks: int = 2
) -> Path:
    """Loads ``page`` in headless Chromium: no errors, no blocked requests, every chart's
    bars drawn with a positive size; returns a screenshot checked for the bar colours."""
    browser = require_chromium()
    url = page.resolve().as_uri()
    dom = chromium(browser, tmp_path / "profile-dom", "--dump-dom", url)
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert attrs.get("rendered") == "yes", attrs
    assert int(attrs["charts"]) > 0
    if bars is not None:
        assert int(attrs["bars"]) == bars
    html_tag = re.search(r"<html([^>]*)>", dom)
    assert html_tag is not None
    assert "data-errors" not in html_tag.group(1), html_tag.group(1)
    assert "data-blocked" not in html_tag.group(1), html_tag.group(1)

    shot = tmp_path / "report.png"
    chromium(browser, tmp_path / "profile-shot", f"--screenshot={shot}",
             "--window-size=1300,2600", url)  # fmt: skip
    from PIL import Image

    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1300, 2600)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    counts = {c: n for n, c in colours}
    for colour in BAR_COLOURS[:frameworks]:  # the bars are on screen, in their colours
        assert counts.get(colour, 0) > 500, colour
    return shot


def end_orphan_workers(run_dir: Path) -> None:
    """After SIGKILL the sweep's worker lives on (its own session): end it by its pid."""
    for events in run_dir.glob("repeat-*/events.jsonl"):
        for line in events.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "start":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(event["pid"], signal.SIGKILL)


# Measures, after load, every SVG text's box against its SVG's box and every SVG's right
# edge against the page's: a text outside its SVG is cut off (or spills over the next).
_LAYOUT_PROBE = """<script>
(function () {
  var problems = [], svgs = document.querySelectorAll("svg"), page = document.documentElement;
  svgs.forEach(function (svg, i) {
    var box = svg.getBoundingClientRect();
    if (box.right > page.clientWidth + 0.5) { problems.push("svg " + i + " is too wide"); }
    svg.querySelectorAll("text").forEach(function (t) {
      var r = t.getBoundingClientRect();
      if (r.width === 0) { return; }
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
          r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
        problems.push("svg " + i + ": " + t.textContent);
      }
    });
  });
  var out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({svgs: svgs.length, problems: problems});
  document.body.appendChild(out);
})();
</script>"""


def layout_problems(page: Path, work: Path, width: int) -> dict[str, Any]:
    """Loads ``page`` in headless Chromium ``width`` CSS px wide; the probe's findings:
    ``{"svgs": count, "problems": [text outside its SVG, SVG wider than the page]}``."""
    browser = require_chromium()
    work.mkdir(parents=True, exist_ok=True)
    probed = work / "probed.html"
    text = page.read_text()
    head, _, tail = text.rpartition("</body>")
    probed.write_text(head + _LAYOUT_PROBE + "</body>" + tail)
    dom = chromium(browser, work / "profile", f"--window-size={width},900", "--dump-dom",
                   probed.resolve().as_uri())  # fmt: skip
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-2000:]
    import html

    return json.loads(html.unescape(found.group(1)))
