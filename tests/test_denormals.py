"""``--denormals flush``: denormal floats flushed to zero in the worker, for every
framework's threads.

Each check runs in a fresh process, so the suite's own floating-point environment is
never changed. The core tests use NumPy's arithmetic (it runs on the calling thread, so
it shows the thread's MXCSR); each framework's test runs a multi-threaded operation of
that framework on denormal inputs after :func:`harness.run.denormals.apply`, as the
worker does, and checks that its threads flush (and, with "keep", the default, that they do not
where the framework keeps them).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_cli import run_cli

from harness.errors import InvalidValue
from harness.run import denormals
from harness.run.spec import check_values
from harness.spec import RunSpec
from harness.store.store import ResultStore

X86_LINUX = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")
needs_x86 = pytest.mark.skipif(not X86_LINUX, reason="MXCSR exists on x86-64 CPUs only")

TINY = 1e-39  # a float32 denormal


def in_fresh_process(body: str) -> dict:
    """Runs ``body`` (which sets ``out``) in a new interpreter; returns ``out``."""
    code = "import json\nout = {}\n" + textwrap.dedent(body) + "\nprint(json.dumps(out))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_x86
def test_flush_and_keep_reach_the_thread_and_the_threads_it_starts() -> None:
    out = in_fresh_process(f"""
        import threading
        import numpy as np
        from harness.run import denormals
        x = np.full(8, {TINY}, dtype=np.float32)
        def times_one():
            return float((x * np.float32(1.0))[0])
        out["default"] = [denormals.state(), times_one()]
        out["flush"] = [denormals.apply("flush"), times_one()]
        seen = []
        thread = threading.Thread(target=lambda: seen.append([denormals.state(), times_one()]))
        thread.start(); thread.join()
        out["thread"] = seen[0]
        out["keep"] = [denormals.apply("keep"), times_one()]
    """)
    assert out["default"][0] == "keep" and out["default"][1] > 0
    assert out["flush"] == ["flush", 0.0]
    assert out["thread"] == ["flush", 0.0]  # a thread started afterwards inherits it
    assert out["keep"][0] == "keep" and out["keep"][1] > 0


def test_an_unknown_mode_is_refused_before_any_worker() -> None:
    refusal = "unknown --denormals 'sometimes'; choose from: keep, flush"
    with pytest.raises(InvalidValue, match=re.escape(refusal)):
        check_values(RunSpec(tool="fake", model="lenet", dataset="mnist", denormals="sometimes"))
    with pytest.raises(ValueError, match="keep, flush"):
        denormals.apply("sometimes")


@needs_x86
def test_the_worker_applies_flush_and_records_it(tmp_path: Path) -> None:
    """The default, keep, is checked in tests/test_orchestrator.py's first run."""
    mode = "flush"
    out = run_cli(
        "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--synthetic",
        "--steps", "2", "--warmup-steps", "1", "--repeats", "1", "--idle-baseline", "0",
        "--denormals", mode, "--output-dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    assert printed["spec"]["denormals"] == mode and printed["config"]["denormals"] == mode
    assert printed["repeats"][0]["framework"]["denormals"] == mode  # read in the worker
    assert "· denormals flushed" in out.stderr + out.stdout  # the summary says it
    (stored,) = ResultStore(tmp_path / "results.sqlite", readonly=True).runs()
    assert stored.config_key == printed["config_key"]


# -- every framework's own threads ------------------------------------------------------

# An operation on denormal inputs, large enough to be split over the framework's threads,
# run after apply(MODE): out["value"] is what it gave for TINY * 0.5 (0.0 when flushed;
# a multiplication by 1 could be simplified away by a compiler).
FRAMEWORK_OPS = {
    "pytorch": """
        import torch
        torch.set_num_threads(2)
        y = torch.full((1 << 20,), TINY) * 0.5  # large: split over the OpenMP threads
        out["value"] = float(y.abs().max())
    """,
    "tensorflow": """
        import tensorflow as tf
        y = tf.fill([1 << 20], TINY) * 0.5
        out["value"] = float(tf.reduce_max(tf.abs(y)))
    """,
    "jax": """
        import jax, jax.numpy as jnp
        y = jax.jit(lambda v: v * 0.5)(jnp.full((1 << 20,), TINY, dtype=jnp.float32))
        out["value"] = float(jnp.abs(y).max())
    """,
    "mxnet": """
        import mxnet as mx
        y = mx.nd.full((1 << 20,), TINY) * 0.5
        out["value"] = float(y.abs().max().asscalar())
    """,
}
KEEPS_BY_DEFAULT = {"pytorch": True, "tensorflow": False, "jax": False, "mxnet": True}


def framework_value(tool: str, mode: str) -> float:
    body = (
        f"TINY = {TINY}\nfrom harness.run import denormals\n"
        f"out['state'] = denormals.apply({mode!r})\n" + textwrap.dedent(FRAMEWORK_OPS[tool])
    )
    out = in_fresh_process(body + "\nout['after'] = denormals.state()\n")
    assert out["state"] == mode and out["after"] == mode  # the framework left it alone
    return out["value"]


@needs_x86
@pytest.mark.parametrize(
    "tool", [pytest.param(t, marks=getattr(pytest.mark, t)) for t in FRAMEWORK_OPS]
)
def test_every_framework_flushes_after_apply(tool: str) -> None:
    assert framework_value(tool, "flush") == 0.0
    kept = framework_value(tool, "keep")
    assert (kept > 0) is KEEPS_BY_DEFAULT[tool]  # as the module's docstring says
