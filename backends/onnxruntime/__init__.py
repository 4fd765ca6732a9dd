"""ONNX Runtime backend plugin: inference only. onnx and onnxruntime are imported only
by .network and .session, where a run or the ``onnx`` export command needs them.

- network.py: the harness.models network as an ONNX graph (the ``onnx`` package only),
  canonical weights as initializers, inference mode, a dynamic batch dimension;
- session.py: an InferenceSession on one explicitly chosen execution provider, checked
  to be the one running, with the session options of the harness's CPU thread policy
  and I/O binding (device memory on GPUs).
"""

from __future__ import annotations

from harness.backend import BackendInfo, BackendPlugin, Option

# -o provider=...: the short names; a full execution-provider name is accepted too.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")

INFO = BackendInfo(
    name="onnxruntime",
    framework="ONNX Runtime",
    requires=("onnx", "onnxruntime"),
    install_hint="pip install 'dlbench-harness[onnxruntime]' (GPUs: onnxruntime-gpu)",
    # Inference only (tasks): there is no trainer; a training run is refused in the spec.
    trainer="",
    inferencer="harness.backends.onnxruntime.inference:OrtInferencer",
    tasks=("inference",),
    description="harness.models networks translated to ONNX (opset 17, canonical weights as "
    "initializers); an InferenceSession on one explicit execution provider, I/O binding.",
    options=(
        Option(
            "provider",
            "str",
            "auto",
            "execution provider: auto (cpu on CPU runs, cuda on GPU runs), cpu, cuda, "
            "tensorrt, or a full name such as CUDAExecutionProvider",
            choices=("auto", *PROVIDERS),
            any_value=True,
        ),
        Option(
            "graph_optimization",
            "str",
            "all",
            "SessionOptions.graph_optimization_level (ORT_DISABLE_ALL ... ORT_ENABLE_ALL)",
            choices=GRAPH_OPTIMIZATION,
        ),
        Option(
            "io_binding",
            "bool",
            True,
            "bind inputs and outputs once (device memory on GPUs), run_with_iobinding",
        ),
    ),
)


PLUGIN = BackendPlugin(
    INFO,
    parity=f"{__name__}.parity:OrtProbe",
    # --onnx-file: an ONNX model run by this backend's InferenceSession; `harness onnx`:
    # catalogue networks written as ONNX files (the onnx package)
    loaders={"onnx": f"{__name__}.files:read_input"},
    exporters={"onnx": f"{__name__}.files:export"},
)
