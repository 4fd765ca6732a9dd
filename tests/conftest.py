"""Shared fixtures.

Tests that need a framework carry its marker (pytorch, tensorflow, jax, mxnet) and run
in that framework's tox env (``tox -e pytorch``); there a missing framework fails the
test, it is never skipped. The core env deselects them all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test (nor the workers it starts) reads the machine's cached GEMM peak: MFU
    figures and the report's charts must not depend on whether someone ran `peak`."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _still_proc_stat(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No run of a test (nor of the workers it starts) is marked host-contended by the
    load of the machine running the suite (the other xdist worker): the monitor reads a
    /proc/stat that never moves. Tests of host contention delete the variable."""
    still = tmp_path_factory.getbasetemp() / "proc-stat"
    if not still.exists():
        still.write_text("cpu  0 0 0 100 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0 0 0\n")
    monkeypatch.setenv("HARNESS_PROC_STAT", str(still))
