"""Plugin API 1.2: what a backend supplies beyond training (its parity probe, ops
kernels, model file loader and exporter) is found through hooks, never by a tool name
or a folder convention. Core tests: nothing here imports a framework."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from harness import hookimpl
from harness.backend import BackendInfo
from harness.plugins import PluginManager

BUILTIN = ("jax", "mxnet", "onnxruntime", "pytorch", "tensorflow")


@pytest.fixture(scope="module")
def pm() -> PluginManager:
    return PluginManager()


def test_builtin_backends_declare_their_probes_and_kernels(pm: PluginManager) -> None:
    assert set(BUILTIN) <= set(pm.backends_with("harness_parity_probe"))
    trainers = [n for n in BUILTIN if "train" in pm.backend(n).tasks]
    assert set(pm.backends_with("harness_ops_kernels")) & set(BUILTIN) == set(trainers)
    for name in BUILTIN:
        backend = pm.backend(name)
        reference = pm.pluggy.hook.harness_parity_probe(backend=backend)
        module, _, cls = reference.partition(":")
        assert cls and importlib.util.find_spec(module) is not None, reference
        kernels = pm.ops_kernels(backend)
        assert kernels is None or importlib.util.find_spec(kernels) is not None, kernels


def test_model_files_are_found_by_format(pm: PluginManager) -> None:
    ort = pm.backend("onnxruntime")
    assert pm.model_loader(ort, "onnx") == "harness.backends.onnxruntime.files:read_input"
    assert pm.model_loader(ort, "tflite") is None
    assert pm.model_loader(pm.backend("pytorch"), "onnx") is None
    assert pm.backends_with("harness_model_loader", format="onnx") == ["onnxruntime"]
    found = pm.model_exporter("onnx")
    assert found is not None and found[0] is ort
    assert found[1] == "harness.backends.onnxruntime.files:export"
    assert pm.model_exporter("tflite") is None


class _Outside:
    """A backend from an outside package: it answers for itself only."""

    INFO = BackendInfo("outside", "Outside", (), "-", "outside.trainer:T")

    @hookimpl
    def harness_register_backends(self, register) -> None:
        register(self.INFO)

    @hookimpl
    def harness_ops_kernels(self, backend: BackendInfo) -> str | None:
        return "outside.ops" if backend.name == "outside" else None

    @hookimpl
    def harness_model_loader(self, backend: BackendInfo, format: str) -> str | None:
        return "outside.files:read" if (backend.name, format) == ("outside", "onnx") else None


class _Broken:
    @hookimpl
    def harness_ops_kernels(self, backend: BackendInfo) -> str | None:
        raise RuntimeError("broken")


def test_an_outside_backend_takes_part_and_a_broken_one_is_left_out(capsys) -> None:
    from harness.ops.runner import ops_module

    pm = PluginManager(entry_points=False, plugins=(_Outside(), _Broken()))
    outside = pm.backend("outside")
    assert ops_module(outside, pm) == "outside.ops"
    assert "broken" in capsys.readouterr().err  # reported, left out; the others answer
    assert pm.model_loader(outside, "onnx") == "outside.files:read"
    assert pm.parity_probe(outside) is None and pm.model_exporter("onnx") is None
    assert pm.backends_with("harness_ops_kernels") == ["outside"]


def test_a_backend_without_kernels_is_refused_naming_those_with_them() -> None:
    from harness.errors import UsageError
    from harness.ops.runner import ops_module

    pm = PluginManager(entry_points=False, plugins=(_Outside(),))
    lone = SimpleNamespace(name="lone")
    with pytest.raises(
        UsageError, match=r"'lone' has no operation kernels; tools with them: outside$"
    ):
        ops_module(lone, pm)
