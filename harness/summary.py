"""The summary printed after a run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _num(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.2f} ms"


def print_summary(console: Console, result: dict[str, Any], run_dir: str) -> None:
    spec = result["spec"]
    summary = result["summary"]
    fw = result.get("framework") or {}
    data = result.get("data") or {}
    title = (
        f"{spec['tool']} · {spec['model']} · {spec['dataset']} · {result['hardware']}"
        f" · batch {spec['batch_size']}/device (global {result['global_batch']})"
        f" · {spec['precision']}"
    )
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("repeat")
    table.add_column("status")
    table.add_column("images/sec", justify="right")
    table.add_column("step p50", justify="right")
    table.add_column("step p90", justify="right")
    table.add_column("step p99", justify="right")
    table.add_column("warmup", justify="right")
    table.add_column("execution", justify="right")
    table.add_column("accuracy", justify="right")
    for record in result["repeats"]:
        step = record["timed"]["step_time_s"]
        validation = record.get("validation") or [{}]
        accuracy = validation[-1].get("accuracy")
        table.add_row(
            str(record["repeat"]),
            record["status"] if record["status"] == "ok" else f"[red]{record['status']}[/red]",
            _num(record["timed"]["images_per_sec"]),
            _ms(step["p50"]),
            _ms(step["p90"]),
            _ms(step["p99"]),
            _num(record["warmup"]["seconds"], 2, " s"),
            _num(record.get("execution_time_s"), 2, " s"),
            "-" if accuracy is None else f"{accuracy:.2%}",
        )
    console.print(table)
    speed = summary["images_per_sec"]
    if speed["mean"] is not None:
        ci = f" (95% CI ±{speed['ci95']:,.1f})" if speed.get("ci95") else ""
        console.print(
            f"[bold]images/sec: {speed['mean']:,.1f} ± {speed['std']:,.1f} std{ci}[/bold]"
            f" over {summary['repeats_ok']} of {summary['repeats']} repeats"
        )
    for line in resource_lines(summary):
        console.print(line)
    source = data.get("description") or "-"
    source = escape(source)
    if data.get("synthetic"):
        source = f"[yellow]{source}[/yellow]"
    console.print(f"data: {source}")
    if fw:
        devices = ", ".join(str(d) for d in fw.get("devices", [])) or "-"
        console.print(f"framework: {fw.get('framework', '?')} {fw.get('version', '')} on {devices}")
    env = result["environment"]
    console.print(
        f"host: {env['hostname']} · {env['cpu']} · {env['cpu_logical_cores']} logical cores"
        f" · {env['memory_gib']} GiB · python {env['python']}"
        f" · harness {env['harness_version']} ({env.get('harness_commit') or 'no git'})"
    )
    for cause in summary["causes"]:
        console.print(f"[red]cause:[/red] {escape(cause)}")
    console.print(f"results: {run_dir}/result.json (and the results store)")


def resource_lines(summary: dict[str, Any]) -> list[str]:
    """Power, memory and energy lines, when the monitor measured them."""
    lines = []
    labels = (
        ("gpu_power_w", "GPU power (timed)", 1, " W"),
        ("gpu_memory_mib", "GPU memory used (timed)", 0, " MiB"),
        ("framework_memory_mib", "framework allocator peak", 0, " MiB"),
        ("energy_j", "energy (timed)", 1, " J"),
        ("joules_per_image", "energy per image", 4, " J"),
        ("host_cpu_percent", "process-tree CPU (timed)", 0, " %"),
        ("host_rss_mib", "process-tree memory peak", 0, " MiB"),
    )
    for key, label, digits, unit in labels:
        value = summary.get(key)
        if isinstance(value, dict) and value.get("mean") is not None:
            lines.append(f"{label}: {_num(value['mean'], digits, unit)}")
    for note in summary.get("resource_notes", []):
        lines.append(f"[dim]{note}[/dim]")
    return lines
