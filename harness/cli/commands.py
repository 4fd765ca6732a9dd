"""The table of subcommands: the module of harness.cli that adds each, and its line in
``--help``. ``python -m harness --help`` needs no more than this table; a command's
module, and the machinery it imports, loads only when that command runs (cli/main.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

EXIT_FAILED_RUN = 1
Command = Callable[[argparse.Namespace, Console], int]

# module of harness.cli -> {subcommand: its --help line}, in --help order
COMMANDS: dict[str, dict[str, str]] = {
    "run": {"run": "benchmark one (tool, model, dataset, hardware) (default)"},
    "listing": {"list": "installed tools, models and datasets"},
    "download": {"download": "download a dataset and verify its checksums"},
    "peak": {"peak": "measure this CPU's dense GEMM peak (for MFU on CPU runs) and cache it"},
    "doctor": {
        "doctor": "check this machine before benchmarking: frameworks, NVML, clocks, power, "
        "governor, RAPL"
    },
    "verify": {
        "verify": "check that every installed backend computes the same network as the reference"
    },
    "ops": {
        "ops": "operation benchmarks after DeepBench: GEMM, sparse GEMM, conv, RNN, all-reduce"
    },
    "onnx_export": {
        "onnx": "write a catalogue network as an ONNX file (canonical or trained weights)"
    },
    "results": {
        "sweep": "run a sweep file: every (tool, model, dataset, hardware), resumable",
        "report": "the results table, speedups and charts",
        "export": "stored runs as CSV, JSON or Parquet",
        "compare": "images/sec of two result sets side by side, matched by configuration key",
    },
    "watch": {
        "watch": "a live view of a sweep from its store (here, in another process or on SLURM)"
    },
}
# subcommand -> its --help line
SUMMARY = {name: line for names in COMMANDS.values() for name, line in names.items()}
