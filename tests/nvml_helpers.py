"""What the NVML tests share: tests/fakes/fake_pynvml.py loaded as ``fake_pynvml`` (the
module name ``HARNESS_NVML_MODULE`` points the monitor at) and a manual clock."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FAKE_PATH = Path(__file__).resolve().parent / "fakes" / "fake_pynvml.py"


def load_fake_nvml() -> ModuleType:
    """The fake, imported once per process as ``fake_pynvml``."""
    if "fake_pynvml" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_pynvml"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_pynvml"]


class Clock:
    """A manual clock: the monitor and the fake GPUs read the same time."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
