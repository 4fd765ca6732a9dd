"""A plugin that fills the disk of the run's output folder after its first repeat, to
test what a full disk mid-run keeps (tests/test_disk_full.py). Active only when
HARNESS_TEST_FILL_DISK is set; the filler file is ``<output>/filler.bin``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness import hookimpl


@hookimpl
def harness_repeat_finished(spec: Any, repeat: Any) -> None:
    if not os.environ.get("HARNESS_TEST_FILL_DISK") or repeat.repeat != 1:
        return
    chunk = b"\0" * 65536
    try:
        with (Path(spec.output_dir) / "filler.bin").open("ab") as handle:
            while True:
                handle.write(chunk)
                handle.flush()
    except OSError:
        pass  # full
