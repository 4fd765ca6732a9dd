"""What every backend's inference tests check the same way (``--task inference``).

Imported by the framework envs' tests (tests/test_inference_backends.py); it imports no
framework itself. A backend joins by adding its tool to ``INFERENCE_TOOLS`` below with
its pytest marker: every check is parametrised over that list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_checks import run_harness
from dataformats import write_learnable_mnist

from harness import datasets, models
from harness.models import reference

# (tool, its pytest marker); the TensorFlow, JAX and MXNet inferencers add theirs here.
INFERENCE_TOOLS = [
    ("pytorch", pytest.mark.pytorch),
    ("onnxruntime", pytest.mark.onnxruntime),
    ("tensorflow", pytest.mark.tensorflow),
    ("jax", pytest.mark.jax),
    ("mxnet", pytest.mark.mxnet),
]
FORWARD_RTOL = 1e-4  # relative to the logits' largest magnitude


def model_bytes(path: Path) -> int:
    """A model's size: the file's, or the sum of the files in a model folder (a
    TensorFlow SavedModel, MXNet's symbol + params pair)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def tool_params() -> Any:
    """``@tool_params()``: one test per inference tool, each under its env's marker."""
    return pytest.mark.parametrize(
        "tool", [pytest.param(tool, marks=mark, id=tool) for tool, mark in INFERENCE_TOOLS]
    )


def results_of(out: Any) -> list[dict]:
    """Every result JSON line (one per batch size); the command must have exited 0."""
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.strip().splitlines() if line.startswith("{")]


def inference_run(tool: str, output: Path, *args: str) -> list[dict]:
    """A LeNet/MNIST inference run of one repeat, 5 timed batches after 2 warmup ones."""
    common = (
        "--task", "inference", "--model", "lenet", "--dataset", "mnist", "--repeats", "1",
        "--steps", "5", "--warmup-steps", "2", "--output-dir", str(output),
    )  # fmt: skip
    return results_of(run_harness(tool, *common, *args))


def check_inference_part(result: dict, batch: int) -> dict:
    """The figures every ok inference repeat has, and the model file it loaded."""
    assert result["summary"]["status"] == "ok", result["summary"]["causes"]
    assert result["spec"]["task"] == "inference" and result["spec"]["batch_size"] == batch
    assert result["config"]["task"] == "inference"
    (repeat,) = result["repeats"]
    part = repeat["inference"]
    assert part["batch_size"] == batch
    for name in ("load_s", "prepare_s", "first_inference_s", "latency_mean_s"):
        assert part[name] is not None and part[name] >= 0, name
    latencies = [part[f"latency_{p}_s"] for p in ("p50", "p90", "p99", "p999")]
    assert latencies == sorted(latencies) and latencies[0] > 0
    assert repeat["timed"]["images"] == 5 * batch
    assert part["images_per_sec"] == repeat["timed"]["images_per_sec"] > 0
    model = Path(part["model_file"])
    assert model.exists() and model_bytes(model) == part["model_bytes"] > 0, (
        "model_bytes counts every file of a model folder"
    )
    assert model.parent.name == Path(result["repeats"][0]["command"][-1]).parent.parent.name
    summary = result["summary"]["inference"]
    assert summary["load_s"]["n"] == 1 and summary["model_bytes"] == part["model_bytes"]
    assert result["summary"]["flops"]["train_per_image"] is None  # forward FLOPs only
    return part


def check_synthetic_batches(tool: str, tmp_path: Path) -> list[dict]:
    """``--batch-size 1,4``: two runs, two results, each its own configuration."""
    results = inference_run(tool, tmp_path, "--synthetic", "--batch-size", "1,4")
    assert [r["spec"]["batch_size"] for r in results] == [1, 4]
    parts = [check_inference_part(r, b) for r, b in zip(results, (1, 4), strict=True)]
    assert results[0]["config_key"] != results[1]["config_key"]
    assert results[0]["synthetic"] is True
    assert all(p["test_pass_s"] is None and p["accuracy"] is None for p in parts)
    return results


def _write_weights(folder: Path, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    network = models.build("lenet", (1, 28, 28), 10)
    state = models.init_weights(network, seed)
    path = folder / "weights.npz"
    np.savez(path, **state)
    return path, state


def reference_accuracy(data_dir: Path, state: dict[str, np.ndarray]) -> tuple[int, float]:
    """(images, accuracy) of the NumPy reference on the test split as the pipeline reads it."""
    network = models.build("lenet", (1, 28, 28), 10)
    test = datasets.open_source("mnist", "test", data_dir, synthetic=False)
    correct = images = 0
    for x, y in test.batches(64, layout="NCHW", shuffle=False, drop_last=False, epochs=1):
        logits = reference.forward(network, state, x)
        correct += int((logits.argmax(axis=1) == y).sum())
        images += len(y)
    return images, correct / images


def check_real_data(tool: str, tmp_path: Path) -> dict:
    """Real MNIST files (70 test images: a partial last batch of 16), ``--weights``: the
    total inference time is load + session + the pass over the whole test split, and the
    accuracy is the NumPy reference's on the same weights and images."""
    data_dir = write_learnable_mnist(tmp_path / "data", train=128, test=70)
    weights, state = _write_weights(tmp_path, seed=7)
    (result,) = inference_run(
        tool, tmp_path / "out", "--real", "--data-dir", str(data_dir), "--batch-size", "16",
        "--weights", str(weights),
    )  # fmt: skip
    part = check_inference_part(result, 16)
    assert result["synthetic"] is False
    assert part["test_images"] == 70
    total = part["load_s"] + part["prepare_s"] + part["test_pass_s"]
    assert part["total_inference_s"] == pytest.approx(total, rel=1e-9)
    images, accuracy = reference_accuracy(data_dir, state)
    assert images == 70
    assert part["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result["summary"]["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12)
    assert result["config"]["weights"] == "weights.npz"
    return result


def check_exported_file(tool: str, tmp_path: Path) -> None:
    """The file ``export`` writes, loaded and prepared by the same inferencer in this
    process, gives the NumPy reference's logits (batch-norm network: resnet50 on MNIST
    too, so running statistics and residual additions are in the file)."""
    from harness.backend import WorkerContext
    from harness.plugins import PluginManager
    from harness.spec import RunSpec

    cls = PluginManager().backend(tool).load_inferencer()
    for name in ("lenet", "resnet50"):
        network = models.build(name, (1, 28, 28), 10)
        state = models.init_weights(network, 3)
        spec = RunSpec(tool, name, "mnist", batch_size=3, threads=2, task="inference")
        ctx = WorkerContext(spec, network, None, None, lambda s=state: s)  # type: ignore[arg-type]
        path = tmp_path / f"{name}{cls.suffix}"
        cls(ctx).export(state, path)
        assert path.exists() and model_bytes(path) > 0
        fresh = cls(ctx)  # a fresh inferencer reads the file, as a repeat's worker does
        fresh.load(path)
        fresh.prepare(3)
        images = np.random.default_rng(0).standard_normal((3, 1, 28, 28), dtype=np.float32)
        got = fresh.to_numpy(fresh.infer(fresh.device_batch(images)))
        fresh.synchronize()
        want = reference.forward(network, state, images)
        assert got.shape == want.shape == (3, 10)
        scale = float(np.abs(want).max())
        assert float(np.abs(got - want).max()) <= FORWARD_RTOL * scale, name
        fresh.close()
