"""The summary printed after a run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.monitor.resources import host_contention_line
from harness.run.repeats import TARGET, bounds
from harness.store import bottleneck, metrics
from harness.store.flops import flops_text
from harness.store.schema import DataSource, Flops, RunResult, Stat
from harness.store.stats import repeats_for


def _num(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.2f} ms"


def print_summary(console: Console, result: RunResult, run_dir: str) -> None:
    spec, summary = result.spec, result.summary
    fw = result.framework or {}
    data = result.data or DataSource()
    title = (
        f"{spec.tool} · {spec.model} · {spec.dataset} · {result.hardware}"
        f" · batch {spec.batch_size}/device (global {result.global_batch})"
        f" · {spec.precision}"
    )
    per_batch = metrics.per_batch(spec.task)  # a task with latencies: a step is a batch
    if per_batch:
        title = title.replace("batch ", f"{spec.task} · batch ", 1)
    step = "latency" if per_batch else "step"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("repeat")
    table.add_column("status")
    table.add_column("images/sec", justify="right")
    table.add_column(f"{step} p50", justify="right")
    table.add_column(f"{step} p90", justify="right")
    table.add_column(f"{step} p99", justify="right")
    table.add_column("warmup", justify="right")
    table.add_column("execution", justify="right")
    table.add_column("accuracy", justify="right")
    for record in result.repeats:
        step = record.timed.step_time_s
        accuracy = record.accuracy
        table.add_row(
            str(record.repeat),
            record.status if record.ok else f"[red]{record.status}[/red]",
            _num(record.timed.images_per_sec),
            _ms(step.p50),
            _ms(step.p90),
            _ms(step.p99),
            _num(record.warmup.seconds, 2, " s"),
            _num(record.execution_time_s, 2, " s"),
            "-" if accuracy is None else f"{accuracy:.2%}",
        )
    console.print(table)
    speed = summary.images_per_sec
    if speed.mean is not None:
        failed = summary.repeats - summary.repeats_ok
        console.print(
            f"[bold]images/sec: {spread_text(speed, 'img/s', bounds(spec))}[/bold]"
            + (f"; {failed} of {summary.repeats} repeats failed" if failed else "")
        )
    if result.host_contended:  # the worst repeat's: who took the run's CPU cores
        worst = max(result.host_contended, key=lambda c: c.get("others_pct") or 0)
        console.print(f"[yellow]{escape(host_contention_line(worst))}[/yellow]", highlight=False)
    for line in timing_lines(result):
        console.print(line, highlight=False)
    for line in inference_lines(result):
        console.print(line, highlight=False)
    for line in flops_lines(result):
        console.print(line, highlight=False)
    for line in metric_lines(result):
        console.print(line)
    if summary.bottleneck is not None:
        console.print(f"bottleneck: {escape(bottleneck.text(summary.bottleneck))}", highlight=False)
    source = escape(data.description or "-")
    if data.synthetic:
        source = f"[yellow]{source}[/yellow]"
    console.print(f"data: {source}")
    if fw:
        devices = ", ".join(str(d) for d in fw.get("devices", [])) or "-"
        flushed = " · denormals flushed" if fw.get("denormals") == "flush" else ""
        console.print(
            f"framework: {fw.get('framework', '?')} {fw.get('version', '')} on {devices}{flushed}"
        )
        threads = fw.get("threads")
        if isinstance(threads, dict):
            inter = threads.get("inter_op")
            console.print(
                f"threads: {threads.get('intra_op_total')} intra-op "
                f"({threads.get('intra_op_per_device')} per device x {threads.get('devices')})"
                f", inter-op {'-' if inter is None else inter}"
            )
    env = result.environment
    console.print(
        f"host: {env.get('hostname')} · {env.get('cpu')} · {env.get('cpu_logical_cores')}"
        f" logical cores ({env.get('cpu_cores_available', '?')} available)"
        f" · {env.get('memory_gib')} GiB · python {env.get('python')}"
        f" · harness {env.get('harness_version')} ({env.get('harness_commit') or 'no git'})"
    )
    for cause in summary.causes:
        console.print(f"[red]cause:[/red] {escape(cause)}")
    console.print(f"results: {run_dir}/result.json (and the results store)")


_MODES = {
    "window": "the device synchronised at the end of each window of {w}; step times"
    " are per-window figures (window time / steps)",
    "per-step": "every step synchronised and timed on its own (--sync-every 1)",
    "device-events": "windows of {w}, step times from the device's own per-step timers",
}
_WARMUP = {
    "steady": "until steady",
    "fixed": "fixed",
    "bound: steps": "stopped at its step bound, not steady",
    "bound: time": "stopped at its time bound, not steady",
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def timing_lines(result: RunResult) -> list[str]:
    """Median, jitter and olympic mean; how steps were timed; how the length was decided."""
    lines = []
    speed = result.summary.images_per_sec
    if speed.median is not None:
        line = f"median {speed.median:,.1f} · jitter {_num(speed.jitter)} (1.4826 x MAD)"
        if speed.olympic_mean is not None:
            line += f" · olympic mean {speed.olympic_mean:,.1f} (fastest and slowest dropped)"
        lines.append(line)
    ok = [r for r in result.repeats if r.timing.mode is not None]
    if not ok:
        return lines
    first = ok[0].timing
    windows = sorted({r.timing.window_steps or 0 for r in ok})
    mode = _MODES.get(first.mode or "", str(first.mode))
    text = "/".join(map(str, windows)) + (" step" if windows == [1] else " steps")
    lines.append("timing: " + mode.format(w=text))
    for r in ok:
        t, timed, warm = r.timing, r.timed, r.warmup
        how = t.length or "?"
        if how.startswith("ci within"):
            how = f"95% CI of the window throughput {how[3:]}"
        elif how == "max time":
            how = f"--max-time {t.max_time_s or 0:g} s reached before the CI was within ±2%"
        ci = f" (±{timed.ci95_rel:.1%})" if timed.ci95_rel is not None else ""
        lines.append(
            f"  repeat {r.repeat if r.repeat is not None else '?'}: warmup "
            f"{_count(warm.steps, 'step')}, {_WARMUP.get(t.warmup_end or '', t.warmup_end)}; "
            f"timed {_count(timed.steps, 'step')} in {timed.seconds:,.1f} s, "
            f"{_count(timed.windows, 'window')}: {how}{ci}"
        )
    return lines


def _bytes(count: int | None) -> str:
    if count is None:
        return "? bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _mean_ms(stat: Stat) -> str:
    return _ms(stat.mean)


def inference_lines(result: RunResult) -> list[str]:
    """An inference run's figures: model file, load, session, first inference, latency
    percentiles per batch, total inference time and accuracy (means over the repeats)."""
    inf = result.summary.inference
    if inf is None:
        return []
    lines = []
    name = escape(inf.model_file or "-")
    lines.append(
        f"model file: {name} ({_bytes(inf.model_bytes)}, {escape(inf.model_format or '?')})"
    )
    lines.append(
        f"load {_mean_ms(inf.load_s)} · session/compile {_mean_ms(inf.prepare_s)}"
        f" · first inference {_mean_ms(inf.first_inference_s)}"
    )
    basis = {
        "batch": "each batch a request, timed alone",
        "device": "device timers",
    }.get(inf.latency_basis or "", inf.latency_basis or "?")
    mean = f"latency per batch of {result.spec.batch_size}: mean {_mean_ms(inf.latency_mean_s)}"
    if inf.latency_basis == "window":  # timed in windows, for throughput: no request's
        lines.append(
            f"{mean} [dim](window time / batches: no percentiles; without --sync-every "
            "each batch is timed alone)[/dim]"
        )
    else:
        lines.append(
            f"{mean} · p50 {_mean_ms(inf.latency_p50_s)} · p90 {_mean_ms(inf.latency_p90_s)}"
            f" · p99 {_mean_ms(inf.latency_p99_s)} · p99.9 {_mean_ms(inf.latency_p999_s)}"
            f" [dim]({basis})[/dim]"
        )
    total = inf.total_inference_s
    if total.mean is not None:
        images = next(
            (r.inference.test_images for r in result.repeats if r.inference is not None), None
        )
        accuracy = inf.accuracy.mean
        lines.append(
            f"total inference time: {total.mean:,.3f} s (load + session + the test split,"
            f" {images if images is not None else '?'} images)"
            + ("" if accuracy is None else f" · top-1 accuracy {accuracy:.2%}")
        )
    return lines


def metric_lines(result: RunResult) -> list[str]:
    """A line per measured metric with a summary label (harness.store.metrics: power,
    memory, energy...), and the monitor's notes."""
    lines = []
    for metric in metrics.registry():
        found = metric.stat(result)
        if metric.summary and found.mean is not None:
            lines.append(f"{metric.summary}: {metric_text(metric, found)}")
    lines += energy_lines(result)
    for note in result.summary.resource_notes:
        lines.append(f"[dim]{note}[/dim]")
    return lines


def metric_text(metric: metrics.Metric, found: Stat) -> str:
    """``12.3 J ± 0.4 (95% CI, 3 repeats)``; the mean alone below 2 repeats."""
    text = f"{_num(metric.shown(found.mean), metric.digits)} {metric.unit}"
    if found.n >= 2 and found.ci95 is not None:
        text += f" ± {_num(metric.shown(found.ci95), metric.digits)} (95% CI, {found.n} repeats)"
    return text


def energy_lines(result: RunResult) -> list[str]:
    """The idle power the dynamic energy is measured above (once, before the first repeat),
    and each GPU's energy where the run used several (means over the ok repeats)."""
    lines = []
    timed = [
        r.resources.timed for r in result.repeats if r.ok and r.resources and r.resources.timed
    ]
    idle = result.summary.idle_power_w
    if idle is not None and idle.mean is not None:
        seconds = next((t.idle_baseline_s for t in timed if t.idle_baseline_s is not None), None)
        source = "GPUs" if any(t.energy_from == "gpu" for t in timed) else "CPU package"
        lines.append(
            f"idle power ({source}): {_num(idle.mean)} W, sampled "
            f"{_num(seconds, 1, ' s')} before the first repeat"
        )
    per_device: dict[str, list[float]] = {}
    for t in timed:
        for index, joules in (t.energy_per_device_j or {}).items():
            per_device.setdefault(index, []).append(joules)
    if per_device:
        parts = [
            f"GPU {index} {_num(sum(v) / len(v))} J"
            for index, v in sorted(per_device.items(), key=lambda kv: int(kv[0]))
        ]
        lines.append("energy per GPU (timed): " + ", ".join(parts))
    return lines


def flops_lines(result: RunResult) -> list[str]:
    """FLOPs per image, achieved FLOP/s, MFU (harness.store.flops) and the configuration key."""
    lines = []
    fl = result.summary.flops or Flops()
    inference = metrics.per_batch(result.spec.task) and fl.forward_per_image
    if fl.train_per_image or inference:
        line = f"FLOPs/image: {(fl.forward_per_image or 0) / 1e9:,.3g} G forward" + (
            f", {fl.train_per_image / 1e9:,.3g} G training (3x forward)"
            if fl.train_per_image
            else " (inference)"
        )
        if fl.achieved_total is not None:
            line += (
                f" · achieved {flops_text(fl.achieved_total)}"
                f" ({flops_text(fl.achieved_per_device)} per device)"
            )
        lines.append(line)
        if fl.mfu is not None:
            lines.append(
                f"MFU: {fl.mfu:.1%} of {flops_text(fl.peak_per_device)} per device"
                f" [dim]({escape(fl.peak_source or '')})[/dim]"
            )
        elif fl.note:
            lines.append(f"MFU: - [dim]({escape(fl.note)})[/dim]")
    if result.config_key:
        lines.append(f"configuration key: {result.config_key}")
    return lines


def spread_text(stat: Stat, unit: str, budget: tuple[int, int] | None = None) -> str:
    """A mean with its spread read right: the 95% interval with its unit and as a share
    of the mean ("7.7 img/s ± 58% (95% CI ±4.5 img/s, 3 repeats)"); one repeat says
    there is no spread, two warn that their interval is wide. ``budget``: the run's
    (repeats at least, at most); when it added repeats (harness.run.repeats) and the
    interval is still wider than ±5%, it says so plainly, with the repeats it would take."""
    mean = f"{stat.mean:,.1f} {unit}"
    if stat.n < 2 or stat.ci95 is None:
        return f"{mean} (1 repeat: no spread to report; --repeats 3 or more give an interval)"
    share = f"{stat.ci95 / stat.mean:.0%}" if stat.mean else "?"
    text = f"{mean} ± {share} (95% CI ±{stat.ci95:,.1f} {unit}, {stat.n} repeats)"
    if stat.n == 2:
        text += "; 2 repeats give a wide interval (t = 12.7): --repeats 3 or more narrow it"
    adaptive = budget is not None and budget[1] > budget[0]
    if adaptive and stat.mean and stat.ci95 > TARGET * stat.mean and stat.n >= 2:
        text += "; " + _noisy_text(stat, budget[1])  # type: ignore[index]
    return text


def _noisy_text(stat: Stat, at_most: int) -> str:
    """Why the interval stayed wider than ±5%: the bound on repeats, or a CV that even
    the bound would not bring within it; the repeats it would take."""
    cv = (stat.std or 0.0) / (stat.mean or 1.0)
    needed = repeats_for(cv, TARGET)
    would = f"about {needed} repeats would (--repeats {needed})" if needed else "no number would"
    stop = f"at most {at_most}" if stat.n >= at_most else f"of at most {at_most}: stopped early"
    return (
        f"not within ±{TARGET:.0%} after {stat.n} repeats ({stop}): this machine is noisy "
        f"(repeats vary by {cv:.1%}); {would}; see docs/user-guide/timing.md"
    )
