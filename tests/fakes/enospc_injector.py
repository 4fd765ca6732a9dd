"""A plugin that makes the orchestrator's Nth write fail with ENOSPC, as a full disk
would (tests/test_disk_full.py). Active only when HARNESS_TEST_ENOSPC_AT=N is set, and
only in the ``python -m harness`` process (never in a worker). Counts every file opened
for writing (open, Path.open, Path.write_text) and every folder made; prints
``injected ENOSPC at write N: PATH`` to stderr when it strikes."""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from typing import Any

_AT = int(os.environ.get("HARNESS_TEST_ENOSPC_AT") or 0)
_count = 0


def _strike(path: Any) -> None:
    global _count
    _count += 1
    if _count == _AT:
        print(f"injected ENOSPC at write {_count}: {path}", file=sys.stderr)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _wrap_open(real: Any) -> Any:
    def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            _strike(file)
        return real(file, mode, *args, **kwargs)

    return opener


def _wrap_mkdir(real: Any) -> Any:
    def mkdir(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not os.path.isdir(path):
            _strike(path)
        return real(path, *args, **kwargs)

    return mkdir


if _AT and sys.argv[0].endswith("__main__.py"):
    builtins.open = io.open = _wrap_open(io.open)
    os.mkdir = _wrap_mkdir(os.mkdir)
