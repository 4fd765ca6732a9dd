"""``python -m harness list [--options] [--json]``: tools (installed or not, with which
framework version, what they run, how to install them), networks and datasets, on
stdout: a table, or JSON for scripts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import datasets, models
from harness.cli.commands import SUMMARY
from harness.cli.doctor import ToolStatus, tool_statuses
from harness.plugins import PluginManager, get_plugin_manager
from harness.run.interpreters import install_command

Command = Callable[[argparse.Namespace, Console], int]


def tool_rows(pm: PluginManager, statuses: dict[str, ToolStatus]) -> list[dict[str, Any]]:
    """One row per registered tool: what ``list`` shows of it."""
    rows = []
    for name, info in sorted(pm.backends.items()):
        status = statuses[name]
        versions = [f"{m} {v or '?'}" for m, v in status.versions.items()]
        rows.append(
            {
                "tool": name,
                "framework": info.framework,
                "installed": status.python is not None,
                "version": ", ".join(versions) if status.python else None,
                "python": status.python,
                "tasks": list(info.tasks),
                "precisions": list(info.precisions),
                "devices": _devices(info),
                "install": install_command(info.install_hint),
            }
        )
    return rows


def _devices(info: Any) -> str:  # info: a BackendInfo
    """Which devices a run of the tool can use, as its registration says: a process per
    device (its launcher) or all devices from one process; and several nodes or not."""
    how = "a process each" if info.multi_process_launcher else "one process"
    return f"CPU, GPUs: {how}" + ("; nodes" if info.node_launcher else "")


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    pm = get_plugin_manager()
    if getattr(args, "options", False):
        _print_options(pm, console)
        return 0
    rows = tool_rows(pm, tool_statuses(dict(pm.backends)))
    nets = [{"model": n, "title": i.title} for n, i in models.MODELS.items()]
    data = [
        {
            "dataset": n,
            "title": i.title,
            "shape": list(i.image_shape),
            "classes": i.num_classes,
        }
        for n, i in datasets.DATASETS.items()
    ]
    errors = dict(sorted(pm.load_errors.items()))
    if getattr(args, "json", False):
        print(json.dumps({"tools": rows, "models": nets, "datasets": data, "errors": errors}))
        return 0
    out = Console(highlight=False, soft_wrap=False)  # stdout: the answer, not a diagnostic
    tools = Table(title="tools", title_justify="left", header_style="bold")
    for column in ("tool", "framework", "installed", "tasks", "precisions", "devices"):
        tools.add_column(column, overflow="fold")
    for row in rows:
        installed = f"[green]{escape(row['version'])}[/green]" if row["installed"] else "no"
        tools.add_row(
            row["tool"],
            escape(row["framework"]),
            installed,
            ", ".join(row["tasks"]),
            ", ".join(row["precisions"]),
            row["devices"],
        )
    for name, error in errors.items():
        tools.add_row(name, "", f"[red]failed to load: {escape(error)}[/red]", "", "", "")
    out.print(tools)
    for row in rows:
        if not row["installed"]:
            out.print(f"to install {row['tool']}: {escape(row['install'])}")
    nets_table = Table(title="models", title_justify="left", header_style="bold")
    nets_table.add_column("model")
    nets_table.add_column("network")
    for net in nets:
        nets_table.add_row(net["model"], escape(net["title"]))
    out.print(nets_table)
    data_table = Table(title="datasets", title_justify="left", header_style="bold")
    for column in ("dataset", "title", "images", "classes"):
        data_table.add_column(column)
    for d in data:
        c, h, w = d["shape"]
        data_table.add_row(d["dataset"], escape(d["title"]), f"{c}x{h}x{w}", str(d["classes"]))
    out.print(data_table)
    return 0


def _print_options(pm, console: Console) -> None:  # pm: a PluginManager
    """Every backend's declared ``-o`` options: name, type, default, help."""
    console.print("[bold]backend options[/bold] (-o KEY=VALUE; sweep files: options = {...})")
    for name, info in sorted(pm.backends.items()):
        if info.options is None:
            console.print(f"  {name}: not declared (not checked)")
            continue
        if not info.options:
            console.print(f"  {name}: none")
        for option in info.options:
            kind = option.type
            if option.choices:
                kind += " (" + "|".join(option.choices) + ("|..." if option.any_value else "") + ")"
            console.print(
                f"  {name} {option.name}={escape(kind)}  default {escape(str(option.default))}: "
                f"{escape(option.help)}",
                highlight=False,
                soft_wrap=True,
            )


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    listing = sub.add_parser("list", help=SUMMARY["list"])
    listing.add_argument(
        "--options", action="store_true", help="every backend's -o options (type, default, help)"
    )
    listing.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    handlers["list"] = cmd_list
