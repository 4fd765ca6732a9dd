"""``python -m harness list [--options]``: the installed tools, models and datasets."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

Command = Callable[[argparse.Namespace, Console], int]


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from harness import datasets, models
    from harness.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if getattr(args, "options", False):
        _print_options(pm, console)
        return 0
    console.print("[bold]tools[/bold]")
    for name, info in sorted(pm.backends.items()):
        console.print(f"  {name:12} {info.framework} ({escape(info.install_hint)})")
    for name, error in sorted(pm.load_errors.items()):
        console.print(f"  {name:12} [red]failed to load: {escape(error)}[/red]")
    console.print("[bold]models[/bold]")
    for name, info in models.MODELS.items():
        console.print(f"  {name:12} {info.title}")
    console.print("[bold]datasets[/bold]")
    for name, info in datasets.DATASETS.items():
        c, h, w = info.image_shape
        console.print(f"  {name:14} {info.title}: {c}x{h}x{w}, {info.num_classes} classes")
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
    listing = sub.add_parser("list", help="installed tools, models and datasets")
    listing.add_argument(
        "--options", action="store_true", help="every backend's -o options (type, default, help)"
    )
    handlers["list"] = cmd_list
