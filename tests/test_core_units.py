"""Unit tests of the core pieces that need no framework and no worker process."""

from __future__ import annotations

import json
import math
import re

import pytest

from harness.errors import UsageError
from harness.machine.gpus import Gpu, Inventory, select, worker_env
from harness.run.events import Emitter, EventTail, read_events
from harness.spec import RunSpec
from harness.store import stats
from harness.store.records import aggregate, repeat_record
from harness.store.schema import RunResult, Timing
from harness.store.store import ResultStore, StoreError


def test_stats_describe_matches_hand_computation() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    d = stats.describe(values)
    assert d["mean"] == 5.0
    assert d["std"] == pytest.approx(math.sqrt(32 / 7))
    assert d["p50"] == 4.5
    assert d["min"] == 2.0 and d["max"] == 9.0
    # t(7 dof) = 2.365
    assert d["ci95"] == pytest.approx(2.365 * math.sqrt(32 / 7) / math.sqrt(8))
    assert stats.describe([])["mean"] is None
    assert stats.describe([3.0])["std"] == 0.0
    # median absolute deviation: |v - 4.5| = 2.5 .5 .5 .5 .5 .5 2.5 4.5 -> median 0.5
    assert d["median"] == 4.5
    assert d["jitter"] == pytest.approx(1.4826 * 0.5)
    # olympic: 2 and 9 dropped
    assert d["olympic_mean"] == pytest.approx(29 / 6)


def test_median_jitter_and_olympic_mean() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert stats.median([]) is None
    # one outlier moves the mean and the std, not the median or the jitter
    steady = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0]
    outlier = [*steady[:-1], 10.0]
    assert stats.jitter(steady) == pytest.approx(1.4826 * 1.0)
    assert stats.jitter(outlier) == pytest.approx(1.4826 * 1.0)
    assert stats.std(outlier) > 30 * stats.std(steady) / 1.5
    assert stats.jitter([5.0]) == 0.0 and stats.jitter([]) is None
    # olympic mean: needs 5 values; drops one fastest and one slowest only
    assert stats.olympic_mean([1.0, 2.0, 3.0, 4.0]) is None
    assert stats.olympic_mean([10.0, 1.0, 2.0, 3.0, 1000.0]) == 5.0
    assert stats.olympic_mean([7.0, 7.0, 1.0, 7.0, 7.0]) == 7.0


def test_ratio_interval_and_verdicts() -> None:
    a = [100.0, 102.0, 98.0, 100.0, 101.0, 99.0]
    ratio, low, high = stats.ratio_ci95(a, a)
    assert ratio == 1.0 and low < 1.0 < high
    # log-scale delta method: exp(± t(df) * sqrt(cv_a^2/n_a + cv_b^2/n_b))
    cv2 = (stats.std(a) / 100.0) ** 2 / 6
    df = (2 * cv2) ** 2 / (2 * cv2 * cv2 / 5)  # Welch-Satterthwaite: 10
    assert high == pytest.approx(math.exp(stats.t95(df) * math.sqrt(2 * cv2)))
    assert low * high == pytest.approx(1.0)
    assert stats.verdict(a, a) == "same"
    assert stats.verdict([v * 1.1 for v in a], a) == "faster"
    assert stats.verdict([v * 0.9 for v in a], a) == "slower"
    assert stats.verdict([v * 0.9 for v in a], a, higher_is_faster=False) == "faster"
    # a 1% difference measured within ±0.2%: the interval lies within ±2%, "same"
    tight = [100.0, 100.2, 99.8, 100.1, 99.9]
    assert stats.verdict([v * 1.01 for v in tight], tight) == "same"
    # a wide interval around 1: the repeats cannot tell
    noisy = [80.0, 120.0, 95.0, 110.0]
    assert stats.verdict(noisy, [100.0, 101.0, 99.0]) == "inconclusive"
    assert stats.verdict([100.0], a) == "inconclusive"
    assert stats.ratio_ci95([1.0], a) is None
    assert stats.ratio_ci95([2.0, 2.0], [1.0, 1.0]) == (2.0, 2.0, 2.0)


def test_emitter_and_tail_round_trip(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []
    emitter = Emitter(path, rank=1)
    emitter.emit("phase", name="timed", state="start")
    first = tail.poll()
    assert [e["event"] for e in first] == ["phase"]
    assert first[0]["rank"] == 1 and "t" in first[0] and "wall" in first[0]
    emitter.emit("end", status="ok")
    emitter.close()
    # a torn last line (a killed worker) waits in the tail and is skipped by read_events
    with path.open("a") as handle:
        handle.write('{"event": "steps", "seconds": [0.1')
    assert [e["event"] for e in tail.poll()] == ["end"]
    assert tail.poll() == []
    assert [e["event"] for e in read_events(path)] == ["phase", "end"]


def _events(step_seconds: list[float], *, error: dict | None = None) -> list[dict]:
    """Events of a repeat whose timed steps were timed one by one."""
    windows = [[1, s] for s in step_seconds]
    t = 100.0
    events = [
        {"event": "phase", "name": "warmup", "state": "start", "t": t, "rank": 0},
        {
            "event": "steps",
            "phase": "warmup",
            "windows": [[1, 1.5], [1, 0.2]],
            "t": t + 1.7,
            "rank": 0,
        },
        {"event": "phase", "name": "warmup", "state": "end", "t": t + 1.7, "rank": 0},
        {"event": "phase", "name": "timed", "state": "start", "t": t + 2, "rank": 0},
        {"event": "steps", "phase": "timed", "windows": windows, "t": t + 3, "rank": 0},
        # another rank's steps must not be counted twice
        {"event": "steps", "phase": "timed", "windows": windows, "t": t + 3, "rank": 1},
        {
            "event": "phase",
            "name": "timed",
            "state": "end",
            "t": t + 2 + sum(step_seconds),
            "rank": 0,
        },
        {"event": "data_wait", "seconds": 0.05, "t": t + 4, "rank": 0},
    ]
    if error:
        events.append({"event": "error", "t": t + 5, "rank": 0, **error})
    return events


def test_repeat_record_counts_rank0_timed_steps_only() -> None:
    record = repeat_record(_events([0.5, 0.5, 1.0]), status="ok", cause=None, global_batch=64)
    assert record.timed.steps == 3
    assert record.timed.images == 192
    assert record.timed.images_per_sec == pytest.approx(192 / 2.0)
    assert record.warmup.first_step_s == 1.5
    assert record.execution_time_s == pytest.approx(4.0)
    assert record.train_validate_s == pytest.approx(2.0)
    assert record.data_wait_fraction == pytest.approx(0.05 / 2.0)


def test_repeat_record_describes_windows_as_windows() -> None:
    events = _events([])
    for e in events:
        if e["event"] == "steps" and e["phase"] == "timed":
            e["windows"] = [[4, 1.0], [4, 2.0], [2, 0.5]]
    events.append({"event": "timing", "mode": "window", "window_steps": 4, "rank": 0, "t": 0})
    record = repeat_record(events, status="ok", cause=None, global_batch=8)
    timed = record.timed
    assert (timed.steps, timed.images, timed.seconds) == (10, 80, 3.5)
    assert timed.images_per_sec == 80 / 3.5
    assert timed.step_time_basis == "window"
    assert timed.step_time_s.n == 3  # one figure per window: 0.25, 0.5, 0.25
    assert timed.step_time_s.p50 == 0.25 and timed.step_time_s.max == 0.5
    assert timed.window_images_per_sec.mean == pytest.approx((32 + 16 + 32) / 3)
    assert timed.windows == 3 and timed.window_steps == 4
    assert record.timing == Timing(mode="window", window_steps=4)


def test_repeat_record_takes_cause_from_worker_error() -> None:
    record = repeat_record(
        _events(
            [0.5],
            error={"kind": "oom", "type": "OutOfMemoryError", "message": "CUDA out of memory"},
        ),
        status="crashed",
        cause="exit 3",
        global_batch=8,
    )
    assert record.status == "oom"
    assert "CUDA out of memory" in record.cause
    timeout = repeat_record(
        _events([0.5], error={"kind": "error"}), status="timeout", cause="exceeded", global_batch=8
    )
    assert timeout.status == "timeout"


def test_aggregate_over_ok_repeats() -> None:
    ok = [
        repeat_record(_events([s, s]), status="ok", cause=None, global_batch=10) for s in (0.5, 1.0)
    ]
    bad = repeat_record(_events([]), status="crashed", cause="killed", global_batch=10)
    summary = aggregate([*ok, bad])
    assert summary.status == "partial"
    assert summary.repeats_ok == 2
    assert summary.images_per_sec.mean == pytest.approx((20.0 + 10.0) / 2)
    assert summary.causes == ["killed"]
    assert aggregate(ok).status == "ok"
    assert aggregate([bad]).status == "crashed"


def test_store_keeps_repeats_and_runs(tmp_path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    record = repeat_record(_events([0.5]), status="ok", cause=None, global_batch=4)
    store.add_repeat("run-1", 1, record)
    result = RunResult(
        run_id="run-1",
        started_at="2026-01-01T00:00:00+00:00",
        spec=RunSpec("t", "lenet", "mnist", batch_size=4),
        hardware="CPU",
        synthetic=True,
        summary=aggregate([record]),
        environment={"hostname": "h"},
    )
    store.add_run(result)
    again = ResultStore(tmp_path / "r.sqlite")  # reopening keeps everything
    runs = again.runs(tool="t")
    assert runs == [result]
    assert again.repeats("run-1") == [record]
    assert again.repeats("run-1")[0].timed.images == 4
    with pytest.raises(ValueError):
        again.runs(nonsense=1)


GPUS = Inventory(
    (
        Gpu(0, "NVIDIA A100", "GPU-a", 40000),
        Gpu(1, "NVIDIA T4", "GPU-b", 15000),
        Gpu(2, "NVIDIA A100", "GPU-c", 40000),
    ),
    driver="550",
)


def test_gpu_selection_by_count_index_and_name() -> None:
    assert [g.index for g in select(2, None, GPUS)] == [0, 1]
    assert [g.index for g in select(2, "2,0", GPUS)] == [2, 0]
    assert [g.index for g in select(2, "a100", GPUS)] == [0, 2]
    assert worker_env(select(2, "a100", GPUS))["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert worker_env([])["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize(
    ("count", "selector", "message"),
    [
        (4, None, "asks for 4 GPU(s) but this machine has 3"),
        (1, "5", "no GPU with index 5"),
        (2, "0", "names 1 GPU(s) but --num-gpus is 2"),
        (1, "0,0", "names 2 GPU(s)"),
        (2, "0,0", "lists a GPU twice"),
        (2, "T4", "matches 1 GPU(s)"),
    ],
)
def test_gpu_selection_errors(count: int, selector: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        select(count, selector, GPUS)


def test_no_gpu_error_names_the_reason() -> None:
    with pytest.raises(UsageError, match=r"has 0 .*NVML is not available"):
        select(1, None, Inventory((), reason="NVML is not available: no driver"))


def test_store_rejects_newer_schema(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "r.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer harness"):
        ResultStore(path)
    assert json.loads(json.dumps({"ok": True}))  # the store's JSON round trip is plain json
