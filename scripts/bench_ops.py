"""Does the ops harness slow the GEMM it measures? And how far is the CPU from its peak?

1. The harness's figure for one dense GEMM (``python -m harness ops``'s worker, its
   windows and synchronisation) against a bare timing loop of the same call in the same
   framework and interpreter; ratio = harness TFLOP/s / bare TFLOP/s (target >= 0.97).
2. The measured CPU GEMM peak (``python -m harness peak``'s NumPy measurement) against
   the theoretical peak of this CPU (harness.machine.peak.theoretical_peak: physical
   cores x maximum clock x vector lanes x 2 x FMA units), with a note when above it.

    python scripts/bench_ops.py [--tool pytorch] [--size 1024] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_BARE = {
    "pytorch": (
        "import torch,time,sys\nn=int(sys.argv[1]);s=float(sys.argv[2])\n"
        "a=torch.randn(n,n);b=torch.randn(n,n)\nfor _ in range(3): torch.matmul(a,b)\n"
        "c=0;t=time.perf_counter()\nwhile time.perf_counter()-t<s:\n torch.matmul(a,b);c+=1\n"
        "print(2*n**3*c/(time.perf_counter()-t))"
    ),
    "jax": (
        "import jax,jax.numpy as jnp,time,sys\nn=int(sys.argv[1]);s=float(sys.argv[2])\n"
        "a=jnp.ones((n,n));b=jnp.ones((n,n));f=jax.jit(jnp.matmul)\n"
        "for _ in range(3): f(a,b).block_until_ready()\n"
        "c=0;t=time.perf_counter()\nwhile time.perf_counter()-t<s:\n"
        " f(a,b).block_until_ready();c+=1\nprint(2*n**3*c/(time.perf_counter()-t))"
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", default="pytorch", choices=sorted(_BARE))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    from harness.machine import peak
    from harness.ops.runner import OpsSpec, _environment, _run_set
    from harness.ops.suite import Kernel
    from harness.plugins import get_plugin_manager
    from harness.run.interpreters import find_interpreter

    backend = get_plugin_manager().backend(args.tool)
    python = find_interpreter(backend).python
    n = args.size
    kernel = Kernel(
        "gemm", "g", {"m": n, "n": n, "k": n, "transpose_a": False, "transpose_b": False}
    )
    with tempfile.TemporaryDirectory() as folder:
        spec = OpsSpec(
            args.tool,
            min_time_s=args.seconds,
            max_time_s=args.seconds,
            check=False,
            output_dir=folder,
        )
        env = _environment(spec, backend, 1, {})
        lines, cause, _, _ = _run_set(
            "gemm", [kernel], spec, python, env, Path(folder), 1, lambda _: None
        )
    if cause:
        print(f"harness run failed: {cause}")
        return 1
    (line,) = [x for x in lines if x.get("event") == "op"]
    harness_rate = 2.0 * n**3 * line["calls"] / line["seconds"]
    bare = subprocess.run(
        [python, "-c", _BARE[args.tool], str(n), str(args.seconds)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    bare_rate = float(bare.stdout.strip().splitlines()[-1])
    ratio = harness_rate / bare_rate
    print(
        f"{args.tool} GEMM {n}^3: harness {harness_rate / 1e9:.1f} GFLOP/s, bare loop "
        f"{bare_rate / 1e9:.1f} GFLOP/s, ratio {ratio:.3f} (target >= 0.97)"
    )
    measured = peak.measure((n,), ("fp32",), args.seconds)["peaks"]["fp32"]
    theory, how = peak.theoretical_peak("fp32")  # the CPU's flags, cores and maximum clock
    if theory:
        note = peak.above_theory_note(measured, theory)
        print(
            f"CPU fp32: measured (NumPy) {measured / 1e9:.1f} GFLOP/s, theoretical "
            f"{theory / 1e9:.1f} GFLOP/s ({how}), ratio {measured / theory:.3f}"
            + (f"; note: {note}" if note else "")
        )
    print(json.dumps({"ratio": ratio, "measured_peak": measured, "theoretical_peak": theory}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
