"""Results: the analysis of stored runs: ``export`` (CSV/JSON/Parquet), ``compare`` and
``compare_ops`` (two sets of results), and ``load``. The records themselves and their
store are :mod:`harness.store` (``harness.results.schema`` still names the record types).

``load(store)`` is a store's runs as a pandas DataFrame (pandas: the ``dataframe`` extra)::

    from harness.results import load
    runs = load("logs/results.sqlite", sweep="latest")
    runs.groupby(["model", "tool", "hardware_label"])["images_per_sec"].mean()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report.source import load_runs, open_store, resolve_sweep
from harness.results.export import _pandas, to_frame
from harness.store.store import ResultStore


def load(store: str | Path | ResultStore, sweep: str | None = None) -> Any:
    """The runs of a results store (a results.sqlite file, its folder, or an open
    ResultStore) as a pandas DataFrame: one row per run, oldest first, with the columns
    of the CSV export (harness.results.export.COLUMNS, typed as its DTYPES says).

    ``sweep``: one sweep's runs (an id, or ``"latest"``); None: every run. Raises
    ImportError, with the install command, when pandas is missing; the store is only read.
    """
    _pandas()  # before opening anything: the missing extra is the first thing said

    opened = store if isinstance(store, ResultStore) else open_store(store)
    return to_frame(load_runs(opened, resolve_sweep(opened, sweep)))


__all__ = ["load"]
