"""ONNX Runtime inferencer: imported only inside the worker process.

- ``export``: the network as an ONNX file (.network.build_model: opset 17, canonical
  weights as initializers, a dynamic batch dimension), checked with ``onnx.checker``;
- ``load``: the file's bytes read into memory (an ``--onnx-file`` too);
- ``prepare``: the InferenceSession (.session.OrtSession: the execution provider asked
  for, checked to be the one running; the session options of the harness's CPU thread
  policy) and, with I/O binding (``-o io_binding``, the default), an IOBinding whose
  output lives on the provider's device. Nothing runs the model here, so the first
  inference is the first run;
- ``device_batch`` copies a batch to the provider's device once (an OrtValue), and
  ``infer`` binds it as the input (only when it changes) and runs ``run_with_iobinding``,
  so no timed call copies to or from the host (``session.run`` on NumPy arrays without
  I/O binding). ONNX Runtime returns when its streams are done, so ``synchronize`` has
  nothing left to wait for; ``to_numpy`` copies the bound output to the host.

fp16 and bf16 are not offered (BackendInfo.precisions): the graph is fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness.backend import Inferencer, WorkerContext
from harness.cpu import thread_policy

from .session import OrtSession, settings_from


class OrtInferencer(Inferencer):
    """An ONNX model in an InferenceSession on one explicit execution provider."""

    suffix = ".onnx"
    format = "onnx (opset 17)"
    oom_markers = ("out of memory", "Failed to allocate memory", "MemoryError", "bad_alloc")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.policy = thread_policy(spec)
        self.settings = settings_from(spec.options, self.policy, 1, spec.num_gpus > 0)
        self.model_bytes: bytes | None = None
        self.session: OrtSession | None = None
        self._binding: Any = None  # the IOBinding (io_binding=True)
        self._bound: Any = None  # the OrtValue bound as its input
        if spec.onnx_file:
            self.format = "onnx (a user's file)"

    def framework_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "framework": "onnxruntime",
            "version": ort.__version__,
            "devices": [self.settings.provider if self.session is None else self.session.provider],
            "available_providers": list(ort.get_available_providers()),
        }
        if self.session is not None:
            info["settings"] = self.session.options
            info["threads"] = self.session.threads()
        else:
            info["settings"] = {
                "provider": self.settings.provider,
                "graph_optimization": self.settings.graph_optimization,
                "io_binding": self.settings.io_binding,
                "intra_op_num_threads": self.settings.intra_op_threads,
                "inter_op_num_threads": self.settings.inter_op_threads,
            }
        return info

    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        import onnx

        from .network import build_model

        network = self.ctx.network
        model = build_model(network, weights, doc=f"harness.models {network.name}")
        onnx.save(model, str(path))
        onnx.checker.check_model(str(path), full_check=True)

    def load(self, path: Path) -> None:
        self.model_bytes = Path(path).read_bytes()

    def prepare(self, batch_size: int) -> None:
        """Creates the session (the provider checked) and its I/O binding, output on the
        provider's device; the input is bound by the first ``infer``."""
        assert self.model_bytes is not None, "load() first"
        session = OrtSession(self.model_bytes, self.settings)
        self.session = session
        if self.settings.io_binding:
            self._binding = session.session.io_binding()
            self._binding.bind_output(session.output, session.device, self.settings.device_id)

    def device_batch(self, images: np.ndarray) -> Any:
        images = np.ascontiguousarray(images, np.float32)
        if not self.settings.io_binding:
            return images
        assert self.session is not None
        return ort.OrtValue.ortvalue_from_numpy(
            images, self.session.device, self.settings.device_id
        )

    def infer(self, batch: Any) -> Any:
        session = self.session
        assert session is not None
        if self._binding is None:
            return session.session.run([session.output], {session.input: batch})[0]
        if batch is not self._bound:  # rebind only when the batch changes (no copy)
            self._binding.bind_ortvalue_input(session.input, batch)
            self._bound = batch
        session.session.run_with_iobinding(self._binding)
        return self._binding  # the output stays on the device; to_numpy copies it

    def synchronize(self) -> None:
        return None  # run / run_with_iobinding return once the providers' work is done

    def to_numpy(self, output: Any) -> np.ndarray:
        if isinstance(output, np.ndarray):
            return output
        return output.get_outputs()[0].numpy()

    def close(self) -> None:
        self._binding = self._bound = None
        if self.session is not None:
            self.session.close()
            self.session = None
