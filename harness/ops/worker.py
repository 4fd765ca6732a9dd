"""The ops worker: one set of kernels in one framework, in a fresh process.

Started by harness.ops.runner as ``python -m harness.ops.worker JOB.json`` in the
framework's interpreter. Imports the backend's ``ops`` module (the only place the
framework is imported), times every kernel of the job (harness.ops.timing) and appends
one JSON line per kernel to the job's ``out`` file as soon as it is measured, so a
crash keeps what was done. Exit codes: 0 ok, 1 error.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import Any

from harness.ops.kernels import Unsupported, checkable
from harness.ops.suite import Kernel
from harness.ops.timing import time_kernel
from harness.run import lifeline


def _write(out: Any, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, default=str) + "\n")
    out.flush()


def run_kernel(module: Any, kernel: Kernel, job: dict[str, Any]) -> dict[str, Any]:
    """One kernel's line: status, timing and check (or why there is none)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"event": "op", "kernel": kernel.to_dict()}
    try:
        bench = module.build(kernel, job["precision"], job)
    except Unsupported as exc:
        return {**record, "status": "unsupported", "reason": f"unsupported: {exc}"}
    except Exception as exc:  # a framework error building the case: reported, not fatal
        return {**record, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        timing = time_kernel(
            bench.call,
            bench.sync,
            min_time=job["min_time"],
            max_time=job["max_time"],
            begin=bench.begin,
        )
        error = bench.check() if job.get("check", True) and checkable(kernel) else None
    except Unsupported as exc:
        return {**record, "status": "unsupported", "reason": f"unsupported: {exc}"}
    except Exception as exc:
        traceback.print_exc()
        return {**record, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        bench.close()
    return {
        **record,
        "status": "ok",
        "calls": timing.calls,
        "seconds": timing.seconds,
        "per_call_us": timing.per_call_us,
        "first_call_s": timing.first_call_s,
        "warmup_end": timing.warmup_end,
        "length": timing.length,
        "max_error": error,
        "detail": bench.detail,
        "wall_s": time.perf_counter() - start,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.ops.worker JOB.json", file=sys.stderr)
        return 1
    with open(argv[0], encoding="utf-8") as handle:
        job = json.load(handle)
    lifeline.guard_worker()  # die with the orchestrator, even after its kill -9
    module = importlib.import_module(job["module"])  # the backend's, from harness_ops_kernels
    with open(job["out"], "a", encoding="utf-8") as out:
        info = module.setup(job)
        _write(out, {"event": "framework", "framework": info})
        for data in job["kernels"]:
            kernel = Kernel.from_dict(data)
            print(f"{kernel.label} ...", flush=True)
            line = run_kernel(module, kernel, job)
            print(f"{kernel.label}: {line['status']} {line.get('reason') or ''}", flush=True)
            _write(out, line)
        closing = getattr(module, "close", None)
        if closing is not None:
            closing()  # e.g. the all-reduce's peer processes
        _write(out, {"event": "end"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
