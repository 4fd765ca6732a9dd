"""The results dashboard (issue 29, item 5): ``report --format dashboard`` writes one
offline page with the runs the report shows, filtered in the browser by framework,
network, dataset, hardware and task (kept in the URL's hash)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from sweep_helpers import (
    chromium,
    make_inference_result,
    make_result,
    make_store,
    require_chromium,
    study_like_results,
)

from harness.cli.main import main
from harness.report.dashboard import FILTERS, page, records


def runs() -> list:
    """The study (2 frameworks x 2 networks x CPU/1/2 GPUs, one oom), a rerun that
    replaces a configuration, and inference at batch 1 and 8."""
    out = study_like_results()
    out.append(make_result("pytorch", "lenet", "mnist", ips=(2100.0, 5.0)))  # the rerun
    out += [make_inference_result(t, "lenet", "mnist", b) for t in ("pytorch", "tensorflow")
            for b in (1, 8)]  # fmt: skip
    label = make_result("pytorch</script><b>", "lenet", "mnist")  # markup in a name stays text
    return [*out, label]


def test_records_are_the_shown_runs() -> None:
    found, metrics = records(runs())
    assert len(found) == 12 + 4 + 1  # the rerun replaces its configuration
    rerun = [r for r in found if r["tool"] == "pytorch" and r["model"] == "lenet"
             and r["hardware"] == "CPU" and r["task"] == "train"]  # fmt: skip
    assert [r["values"]["images_per_sec"][0] for r in rerun] == [2100.0]
    oom = [r for r in found if r["status"] == "oom"]
    assert len(oom) == 1 and oom[0]["values"] == {}
    assert {r["task"] for r in found} == {"train", "inference"}
    assert sorted(r["batch"] for r in found if r["task"] == "inference") == [1, 1, 8, 8]
    keys = [m["key"] for m in metrics]
    assert keys[0] == "images_per_sec" and "latency_p50_s" in keys and "gpu_power_w" in keys
    assert all(set(FILTERS) <= set(r) for r in found)


def test_cli_writes_an_offline_page(tmp_path: Path) -> None:
    make_store(tmp_path / "results.sqlite", runs())
    assert main(["report", "--store", str(tmp_path), "--format", "dashboard"]) == 0
    text = (tmp_path / "dashboard.html").read_text()
    assert "default-src 'none'" in text  # no request leaves the page
    assert not re.search(r"(src|href)=", text)  # nothing to fetch
    assert "pytorch</script><b>" not in text and "pytorch<\\/script><b>" in text
    embedded = re.search(r'<script type="application/json" id="runs">(.*?)</script>', text, re.S)
    assert embedded is not None
    assert len(json.loads(embedded.group(1))["runs"]) == 17


def test_dashboard_filters_in_chromium(tmp_path: Path) -> None:
    """Loaded with filters in the URL's hash, the page shows exactly the matching runs
    in its table and a bar per run with a value in its charts."""
    browser = require_chromium()
    every = runs()
    target = tmp_path / "dashboard.html"
    target.write_text(page(every))
    found, _ = records(every)
    wanted = {r["run"] for r in found if r["tool"] == "tensorflow" and r["task"] == "train"}
    url = target.resolve().as_uri() + "#tool=tensorflow&task=train&metric=images_per_sec"
    dom = chromium(browser, tmp_path / "profile", "--dump-dom", url)
    tag = re.search(r"<html([^>]*)>", dom)
    assert (
        tag is not None and "data-errors" not in tag.group(1) and "data-blocked" not in tag.group(1)
    )
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert attrs["rendered"] == "yes" and attrs["rows"] == str(len(wanted)) == "6"
    assert attrs["charts"] == "2" and attrs["bars"] == "5"  # lenet, resnet50; the oom has none
    table = dom[dom.index('id="table-box"') :]
    shown = set(re.findall(r'<tr data-run="([^"]+)"', table))
    assert shown == wanted
    selected = re.search(r'<select name="tool" id="f-tool">(.*?)</select>', dom, re.S)
    assert selected is not None and selected.group(1).count("<option") == 4  # all + 3 tools
    assert html.escape("pytorch</script><b>", quote=False) in selected.group(1)  # as text
