"""``python -m harness download DATASET``: a dataset, its checksums verified."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

from harness import datasets
from harness.cli.commands import SUMMARY
from harness.datasets.download import download
from harness.errors import UsageError
from harness.run.paths import check_writable_dir

Command = Callable[[argparse.Namespace, Console], int]


def cmd_download(args: argparse.Namespace, console: Console) -> int:
    if args.dataset not in datasets.DATASETS:
        names = ", ".join(datasets.DATASETS)
        raise UsageError(f"unknown dataset {args.dataset!r}; choose from: {names}")

    check_writable_dir(datasets.dataset_dir(args.dataset, args.data_dir), "--data-dir")
    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            path = download(args.dataset, args.data_dir, progress=progress)
        except datasets.DatasetError as exc:
            raise UsageError(str(exc)) from None
    console.print(f"{args.dataset}: ready in {path}")
    return 0


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    dl = sub.add_parser("download", help=SUMMARY["download"])
    dl.add_argument("dataset")
    dl.add_argument("--data-dir", help="target folder (default: $HARNESS_DATA_DIR or ./data)")
    handlers["download"] = cmd_download
