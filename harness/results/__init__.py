"""Results: what a run records and how results are kept, exported and compared.

``schema`` (the typed, versioned records and their JSON codec), ``records`` (events
into a repeat record, repeats into a run summary), ``stats`` (medians, intervals),
``configkey`` (the configuration key), ``flops`` (FLOP counts and MFU), ``store`` (the
SQLite result store), ``export`` (CSV/JSON/Parquet) and ``compare`` (two sets of results).

``load(store)`` is a store's runs as a pandas DataFrame (pandas: the ``dataframe`` extra)::

    from harness.results import load
    runs = load("logs/results.sqlite", sweep="latest")
    runs.groupby(["model", "tool", "hardware_label"])["images_per_sec"].mean()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.results.store import ResultStore


def load(store: str | Path | ResultStore, sweep: str | None = None) -> Any:
    """The runs of a results store (a results.sqlite file, its folder, or an open
    ResultStore) as a pandas DataFrame: one row per run, oldest first, with the columns
    of the CSV export (harness.results.export.COLUMNS, typed as its DTYPES says).

    ``sweep``: one sweep's runs (an id, or ``"latest"``); None: every run. Raises
    ImportError, with the install command, when pandas is missing; the store is only read.
    """
    from harness.results.export import _pandas, to_frame

    _pandas()  # before opening anything: the missing extra is the first thing said
    from harness.report.source import load_runs, open_store, resolve_sweep
    from harness.results.store import ResultStore

    opened = store if isinstance(store, ResultStore) else open_store(store)
    return to_frame(load_runs(opened, resolve_sweep(opened, sweep)))


__all__ = ["load"]
