"""An ONNX Runtime InferenceSession on one explicitly chosen execution provider.

- Providers: the one asked for (``cpu``, ``cuda``, ``tensorrt`` or a full name such as
  ``CUDAExecutionProvider``) must be in ``onnxruntime.get_available_providers()``, and
  after the session is created it must be the first of ``session.get_providers()``:
  ONNX Runtime falls back to the CPU silently when a GPU provider cannot start (a
  missing CUDA or cuDNN library), and a benchmark must not measure the fallback. Either
  failure is :class:`ProviderError`, one line naming what is available or running.
  TensorRT is given CUDA and the CPU behind it for the nodes it does not take, CUDA the
  CPU; the CPU provider runs alone.
- Session options (the harness's CPU thread policy, harness.cpu): ``intra_op_num_threads``
  = the process's intra-op threads, ``inter_op_num_threads`` = 1 per device with
  sequential execution (one operator at a time); graph optimisation level from
  ``-o graph_optimization``; all of it read back from the session and recorded
  (:attr:`OrtSession.options`).
- I/O binding (``io_binding=True``): the input is copied to the provider's device once
  (:meth:`OrtSession.bind`) and the output is preallocated there, so
  ``run_with_iobinding`` times the model alone, never a host copy; on the CPU the same
  path binds host memory. ``io_binding=False``: plain ``session.run`` with NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnxruntime as ort

from harness.backends.onnxruntime import GRAPH_OPTIMIZATION, PROVIDERS
from harness.errors import UsageError

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
assert set(LEVELS) == set(GRAPH_OPTIMIZATION)
# The device each provider's memory lives on, for OrtValues and I/O binding.
DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}


class ProviderError(UsageError):
    """The execution provider asked for is not available, or not the one running."""


def available_providers() -> list[str]:
    """onnxruntime.get_available_providers(): what this build can run on, in its order."""
    return list(ort.get_available_providers())


def provider_name(asked: str, gpu: bool = False) -> str:
    """The execution provider's full name for ``-o provider=``: a short name (cpu, cuda,
    tensorrt), ``auto`` (cuda on GPU runs, else cpu) or a full name."""
    text = (asked or "auto").strip()
    if text.lower() == "auto":
        text = "cuda" if gpu else "cpu"
    return PROVIDERS.get(text.lower(), text)


def check_available(name: str) -> None:
    """ProviderError unless ``name`` is an execution provider of this onnxruntime build."""
    available = available_providers()
    if name not in available:
        hint = " (GPU providers need onnxruntime-gpu)" if name != "CPUExecutionProvider" else ""
        raise ProviderError(
            f"execution provider {name} is not available in onnxruntime {ort.__version__}"
            f"{hint}; available: {', '.join(available)}"
        )


def providers_for(name: str, device_id: int = 0) -> list[Any]:
    """The providers list for InferenceSession: ``name`` first, then its fallbacks."""
    if name == "CPUExecutionProvider":
        return [name]
    chain = [name, "CUDAExecutionProvider", "CPUExecutionProvider"]
    chain = list(dict.fromkeys(chain))
    return [(p, {"device_id": str(device_id)}) if p != "CPUExecutionProvider" else p for p in chain]


@dataclass(frozen=True)
class Settings:
    """What the session is asked for (the backend's options and the thread policy)."""

    provider: str = "auto"  # -o provider
    graph_optimization: str = "all"  # -o graph_optimization
    io_binding: bool = True  # -o io_binding
    intra_op_threads: int | None = None  # None: ONNX Runtime's default (every core)
    inter_op_threads: int = 1
    gpu: bool = False
    device_id: int = 0


def session_options(settings: Settings) -> ort.SessionOptions:
    if settings.graph_optimization not in LEVELS:
        raise UsageError(
            f"-o graph_optimization={settings.graph_optimization}: choose from: {', '.join(LEVELS)}"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[settings.graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if settings.intra_op_threads is not None:
        options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.log_severity_level = 3  # errors only: fallback warnings are checked below
    return options


def settings_from(options: dict[str, Any], policy: Any, local_devices: int, gpu: bool) -> Settings:
    """Settings from a run's ``-o`` options and its harness.cpu.ThreadPolicy."""
    from harness.backends.onnxruntime import INFO

    declared = {o.name: o for o in INFO.options or ()}
    values = {name: option.default for name, option in declared.items()}
    for name, value in options.items():  # checked against the declarations before the run
        text = str(value).lower() if isinstance(value, bool) else str(value)
        values[name] = declared[name].parse(text)
    return Settings(
        provider=values["provider"],
        graph_optimization=values["graph_optimization"],
        io_binding=values["io_binding"],
        intra_op_threads=policy.per_process(local_devices),
        inter_op_threads=policy.inter_op * local_devices,
        gpu=gpu,
    )


class OrtSession:
    """One InferenceSession of a model (bytes, a path or a ModelProto) on one provider.

    Raises ProviderError when the provider is unavailable or not the one that runs."""

    def __init__(
        self,
        model: Any,
        settings: Settings | None = None,
        *,
        provider: str | None = None,
        io_binding: bool | None = None,
    ) -> None:
        settings = settings or Settings()
        if provider is not None:
            settings = replace(settings, provider=provider)
        if io_binding is not None:
            settings = replace(settings, io_binding=io_binding)
        self.settings = settings
        self.provider = provider_name(settings.provider, settings.gpu)
        check_available(self.provider)
        if hasattr(model, "SerializeToString"):
            model = model.SerializeToString()
        self.session = ort.InferenceSession(
            model,
            sess_options=session_options(settings),
            providers=providers_for(self.provider, settings.device_id),
        )
        running = self.session.get_providers()
        if not running or running[0] != self.provider:
            raise ProviderError(
                f"asked for {self.provider} but the session runs on "
                f"{', '.join(running) or 'nothing'} (ONNX Runtime fell back; check its "
                f"CUDA/cuDNN/TensorRT libraries); available: {', '.join(available_providers())}"
            )
        self.device = DEVICES.get(self.provider, "cpu")
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self._binding: Any = None
        self._input: Any = None
        self._result: Any = None

    @property
    def options(self) -> dict[str, Any]:
        """The session's settings as it runs them (read back), for the result record."""
        read = self.session.get_session_options()
        level = {v: k for k, v in LEVELS.items()}.get(read.graph_optimization_level)
        return {
            "provider": self.provider,
            "providers": list(self.session.get_providers()),
            "available_providers": available_providers(),
            "graph_optimization": level,
            "intra_op_num_threads": read.intra_op_num_threads,
            "inter_op_num_threads": read.inter_op_num_threads,
            "execution_mode": str(read.execution_mode).rsplit(".", 1)[-1],
            "io_binding": self.settings.io_binding,
            "io_device": self.device if self.settings.io_binding else "numpy",
            "onnxruntime": ort.__version__,
        }

    def threads(self, devices: int = 1) -> dict[str, Any]:
        """framework_info()["threads"] of harness.cpu, read back from the session."""
        from harness.cpu import report

        read = self.session.get_session_options()
        intra = read.intra_op_num_threads or None  # 0: ONNX Runtime's own default
        return report(
            intra,
            None if intra is None else max(1, intra // devices),
            max(1, read.inter_op_num_threads // devices) if read.inter_op_num_threads else None,
            devices,
            "SessionOptions.intra_op_num_threads / inter_op_num_threads, execution_mode "
            "ORT_SEQUENTIAL; read back from session.get_session_options()",
        )

    # Running -------------------------------------------------------------------------

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits for NCHW float32 ``images`` (host in, host out)."""
        images = np.ascontiguousarray(images, np.float32)
        if not self.settings.io_binding:
            return self.session.run([self.output], {self.input: images})[0]
        self.bind(images)
        self.run_bound()
        return self.result()

    def bind(self, images: np.ndarray) -> None:
        """Copies ``images`` to the provider's device once and binds them as the input,
        with the output preallocated there (its shape from one run)."""
        images = np.ascontiguousarray(images, np.float32)
        device_id = self.settings.device_id
        value = ort.OrtValue.ortvalue_from_numpy(images, self.device, device_id)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input, value)
        binding.bind_output(self.output, self.device, device_id)
        self.session.run_with_iobinding(binding)  # learns the output's shape
        shape = binding.get_outputs()[0].shape()
        out = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, self.device, device_id)
        binding.clear_binding_outputs()
        binding.bind_ortvalue_output(self.output, out)
        self._binding, self._input, self._result = binding, value, out

    def run_bound(self) -> None:
        """One inference on the bound input into the bound output (no host copies).
        ONNX Runtime synchronises its providers' streams before returning."""
        self.session.run_with_iobinding(self._binding)

    def result(self) -> np.ndarray:
        """The bound output, copied to the host."""
        return self._result.numpy()

    def close(self) -> None:
        self._binding = self._input = self._result = None
        self.session = None  # type: ignore[assignment]
