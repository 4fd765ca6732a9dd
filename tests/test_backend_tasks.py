"""BackendInfo.tasks: a backend that does not train (onnxruntime: inference only) is
refused for a training run with one line, before any process starts (core env)."""

from __future__ import annotations

import pytest

from harness.backend import BackendInfo
from harness.errors import UsageError
from harness.run.spec import resolve
from harness.spec import RunSpec


def test_an_inference_only_backend_is_refused_for_training() -> None:
    tools = {
        "infer": BackendInfo("infer", "I", (), "-", "", tasks=("inference",)),
        "trains": BackendInfo("trains", "T", (), "-", "x:Y"),
    }
    assert tools["trains"].tasks == ("train",)  # the default: training
    with pytest.raises(UsageError) as info:
        resolve(RunSpec("infer", "lenet", "mnist"), tools)
    assert str(info.value) == (
        "infer runs inference only, it cannot train; tools that train: trains"
    )
    assert resolve(RunSpec("trains", "lenet", "mnist"), tools).tool == "trains"
