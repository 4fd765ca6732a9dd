"""Out-of-memory-aware sweeps: once a cell runs out of memory, the cells certain to fail
as well (a larger batch, the same everything else) are skipped, not run.

Two cells are in the same *memory group* when their RunSpecs are equal but for the batch
size (and the cell's own key tag): the same tool, model, dataset, hardware, precision,
task, options and so on. A cell whose run ended ``oom`` at batch B marks every cell of its
group still to run with a batch above B as skipped, with a reason starting
:data:`REASON_PREFIX` (so a resumed sweep tells these skips from the plan's refusals).
The boundary is recomputed from the finished cells whenever the sweep is planned, so
``--retry-failed`` (the oom cell runs again) and ``--no-skip-oom`` bring the skipped
cells back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from harness.sweep.state import DONE, PENDING, SKIPPED, CellState, SweepState

REASON_PREFIX = "out of memory below this batch"
_OOM = "oom"


def memory_group(spec: Any) -> str:
    """The cell's memory group: its spec without the batch size, the cell's key and the
    output folder."""
    data = spec.to_dict()
    data.pop("batch_size", None)
    data.pop("output_dir", None)  # where the sweep is opened from
    data["tags"] = {k: v for k, v in (data.get("tags") or {}).items() if k != "sweep_cell"}
    return json.dumps(data, sort_keys=True, default=str)


def is_oom_skip(cell: CellState) -> bool:
    """Whether the cell was skipped because a smaller batch of its group ran out of memory."""
    return cell.status == SKIPPED and (cell.reason or "").startswith(REASON_PREFIX)


def boundaries(cells: Iterable[CellState]) -> dict[str, tuple[int, str | None]]:
    """Memory group -> (the smallest batch that ran out of memory, its run id)."""
    out: dict[str, tuple[int, str | None]] = {}
    for cell in cells:
        batch = cell.spec.batch_size
        if cell.status != DONE or cell.run_status != _OOM or batch is None:
            continue
        group = memory_group(cell.spec)
        if group not in out or batch < out[group][0]:
            out[group] = (batch, cell.run_id)
    return out


def reason(batch: int, failed: int, run_id: str | None) -> str:
    run = f" (run {run_id})" if run_id else ""
    return f"{REASON_PREFIX}: batch {failed} ran out of memory{run}; batch {batch} is larger"


def certain_to_fail(cell: CellState, found: dict[str, tuple[int, str | None]]) -> str | None:
    """Why ``cell`` is certain to run out of memory, or None."""
    batch = cell.spec.batch_size
    if batch is None:
        return None
    boundary = found.get(memory_group(cell.spec))
    if boundary is None or batch <= boundary[0]:
        return None
    return reason(batch, *boundary)


def skip_larger(state: SweepState, failed: CellState) -> list[CellState]:
    """After ``failed`` ran out of memory: its group's pending cells with a larger batch
    become skipped; returns them."""
    if failed.run_status != _OOM or failed.spec.batch_size is None:
        return []
    found = {memory_group(failed.spec): (failed.spec.batch_size, failed.run_id)}
    skipped = []
    for cell in state.cells():
        why = certain_to_fail(cell, found) if cell.status == PENDING else None
        if why:
            state.mark_skipped(cell, why)
            skipped.append(cell)
    return skipped


def limits(cells: Iterable[CellState]) -> list[str]:
    """One line per memory group that ran out of memory: the largest batch that ran (ok)
    and the smallest that did not, and how many larger ones were skipped."""
    cells = list(cells)
    lines = []
    for group, (failed, run_id) in boundaries(cells).items():
        mine = [c for c in cells if memory_group(c.spec) == group]
        first = next((c for c in mine if c.status == DONE and c.run_id == run_id), mine[0])
        ran = [
            c.spec.batch_size
            for c in mine
            if c.status == DONE and c.run_status == "ok" and (c.spec.batch_size or 0) < failed
        ]
        skipped = sum(is_oom_skip(c) for c in mine)
        lines.append(
            f"{first.tool} · {first.model} · {first.dataset} · {first.hardware} · "
            f"{first.spec.precision} · {first.spec.task}: largest batch that ran "
            f"{max(ran) if ran else '-'}, smallest that ran out of memory {failed}"
            + (f" ({skipped} larger skipped)" if skipped else "")
        )
    return lines
