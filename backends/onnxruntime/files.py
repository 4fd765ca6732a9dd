"""ONNX model files: a user's file read for ``--onnx-file`` and a catalogue network
written by ``python -m harness onnx`` (the harness_model_loader and
harness_model_exporter hooks). The onnx package is imported here, only where they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.backend import ModelFileError


def read_input(path: str, shape: tuple[int, int, int] | None) -> dict[str, Any]:
    """The image input of the ONNX file at ``path``: its per-image (C, H, W) (``shape``
    fills the dimensions the graph leaves open), batch dimension and input name."""
    from .network import OnnxFileError
    from .network import read_input as read

    try:
        found = read(path, shape)
    except OnnxFileError as exc:
        raise ModelFileError(str(exc)) from None
    return {"shape": list(found.shape), "batch": found.batch, "input": found.name}


def export(network: Any, weights: dict, path: Path, doc: str) -> str:
    """Writes ``network`` with ``weights`` as an ONNX file at ``path``, checked with
    ``onnx.checker`` (with shape inference); what it wrote, in a few words."""
    import onnx

    from .network import OPSET, build_model

    model = build_model(network, weights, doc=doc)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return f"opset {OPSET}; onnx.checker: ok"
