"""What "the same network in every framework" is checked against: parity weights, inputs,
the error measure and the tolerances. Framework-neutral (NumPy only); used by the tests
of every backend and by ``python -m harness verify``.

Parity weights (:func:`parity_weights`) are the canonical initial weights made into a
sharp test. With the initial weights, deep networks give vanishing logits (GoogLeNet at
32x32: below 1e-10) and batch norm runs with mean 0 and variance 1, so a check relative
to the logits' scale cannot fail where it matters. So, on a calibration batch:

- every convolution and dense layer is rescaled (weight and bias by one factor) so its
  output has unit standard deviation: every layer carries signal to the logits;
- every batch norm gets random running statistics near the calibration batch's own
  (mean + 0.5 std x N(0, 1), variance x U(0.5, 2)) and a random affine transform
  (weight U(0.5, 1.5) with random sign flips on a tenth of the channels, bias N(0, 0.25^2)),
  so mixing up mean and variance, or weight and bias, changes the logits;
- the last dense layer is scaled so the logits' standard deviation is 4 (a largest
  |logit| of about 10, always between 1 and 100: :data:`LOGIT_SCALE`).

Errors are measured relative to the logits' scale with no absolute floor:
``max |got - want| / max |want|`` (:func:`relative_error`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from . import layers as L
from .graph import infer
from .init import init_weights, is_buffer
from .reference import apply
from .reference_training import train
from .tree import Forward, walk

# The range every parity check's logits must fall in (max |logit|).
LOGIT_SCALE = (1.0, 100.0)
LOGIT_STD = 4.0  # the logits' standard deviation on the calibration batch

# Tolerances on relative_error, float32 framework against the float64 reference. CPU
# kernels reorder sums only; GPU kernels (cuDNN algorithms, TF32 where enabled) get theirs.
# "train" bounds one float32 SGD step from the parity weights (state_error with
# per_tensor=False, and the loss): float32 backward passes through deep batch-norm
# networks at batch 2 carry noise of a few 1e-3 to 1e-2 of the largest update (PyTorch
# and MXNet in float64 agree with the reference to 1e-7 or better: FLOAT64_TOLERANCE).
TOLERANCES = {
    "cpu": {"forward": 1e-4, "train": 1e-1},
    "gpu": {"forward": 2e-3, "train": 2e-1},
    "gpu-tf32": {"forward": 2e-2, "train": 3e-1},
}
FLOAT64_TOLERANCE = 1e-6  # float64 training parity (three steps), per tensor


def without_dropout(node):
    """The same network (or node) with every Dropout rate 0: the reference's dropout is
    the identity, so training-mode comparisons switch the framework's off."""
    if isinstance(node, L.Dropout):
        return L.Dropout(0.0)
    if isinstance(node, L.Sequential):
        return dataclasses.replace(node, layers=tuple(map(without_dropout, node.layers)))
    if isinstance(node, L.Residual):
        shortcut = None if node.shortcut is None else without_dropout(node.shortcut)
        return L.Residual(without_dropout(node.body), shortcut)
    if isinstance(node, L.Concat):
        return L.Concat(tuple(map(without_dropout, node.branches)))
    if isinstance(node, L.Network):
        return dataclasses.replace(node, body=without_dropout(node.body))
    return node


def images(network: L.Network, batch: int, seed: int = 0) -> np.ndarray:
    """Standard-normal NCHW float32 images for ``network``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *network.input_shape), dtype=np.float32)


def labels(network: L.Network, batch: int, seed: int = 0) -> np.ndarray:
    """Random integer labels (int64) for ``batch`` images."""
    return np.random.default_rng(seed + 1000).integers(0, network.num_classes, batch)


class _Calibrate(Forward[np.ndarray]):
    """The reference's inference forward, rescaling layers and setting batch-norm
    statistics from the batch as it goes (float64)."""

    def __init__(self, weights: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        self.weights, self.rng = weights, rng

    def layer(self, layer: L.Layer, path: str, x: np.ndarray) -> np.ndarray:
        w, rng = self.weights, self.rng
        if isinstance(layer, L.BatchNorm):
            axes = tuple(a for a in range(x.ndim) if a != 1)
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            size = mean.shape
            sign = np.where(rng.random(size) < 0.1, -1.0, 1.0)
            w[f"{path}.running_mean"] = mean + 0.5 * np.sqrt(var) * rng.standard_normal(size)
            w[f"{path}.running_var"] = var * rng.uniform(0.5, 2.0, size)
            w[f"{path}.weight"] = sign * rng.uniform(0.5, 1.5, size)
            w[f"{path}.bias"] = 0.25 * rng.standard_normal(size)
        out = apply(layer, w, x, prefix=path)
        if isinstance(layer, (L.Conv2D, L.Dense)):
            factor = 1.0 / max(float(out.std()), 1e-30)
            for name in ("weight", "bias"):
                if f"{path}.{name}" in w:
                    w[f"{path}.{name}"] = w[f"{path}.{name}"] * factor
            out = out * factor
        return out

    def concatenate(self, path: str, outputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(outputs, axis=1)


def parity_weights(network: L.Network, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical float32 weights for parity checks (see the module docstring)."""
    weights = {k: v.astype(np.float64) for k, v in init_weights(network, seed).items()}
    calibration = images(network, 2 if network.input_shape[1] > 64 else 8, seed + 1)
    rng = np.random.default_rng(seed + 2)
    logits = _Calibrate(weights, rng).run(network.body, calibration.astype(np.float64))
    last = [path for path, layer in walk(network) if isinstance(layer, L.Dense)][-1]
    factor = LOGIT_STD / max(float(logits.std()), 1e-30)
    for name in ("weight", "bias"):
        if f"{last}.{name}" in weights:
            weights[f"{last}.{name}"] = weights[f"{last}.{name}"] * factor
    return {k: v.astype(np.float32) for k, v in weights.items()}


def reference_logits(
    network: L.Network, weights: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool
) -> np.ndarray:
    """The NumPy reference's logits in float64 (weights taken as given, float32 or 64)."""
    return apply(network.body, weights, np.asarray(x, np.float64), training=training)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|; inf for a shape mismatch or a non-finite value."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.isfinite(got).all():
        return float("inf")
    scale = float(np.abs(want).max())
    if scale == 0.0:
        return float("inf")
    return float(np.abs(got - want).max() / scale)


def check_scale(want: np.ndarray) -> float:
    """The logits' scale (max |want|); raises ValueError outside :data:`LOGIT_SCALE`."""
    scale = float(np.abs(want).max())
    low, high = LOGIT_SCALE
    if not low <= scale <= high:
        raise ValueError(f"logits of scale {scale:.3g} are outside [{low}, {high}]")
    return scale


def state_error(
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    initial: Mapping[str, np.ndarray],
    per_tensor: bool = True,
) -> tuple[float, str]:
    """The largest error of a trained state relative to the reference's change (the
    weights themselves would hide a wrong update under their size); (error, key).

    ``per_tensor``: ``max |got - want| / max |want - initial|`` of each tensor (float64
    checks); else parameters are measured against the largest change of any parameter
    (float32 checks: the gradient of a tensor whose own gradient nearly cancels, a deep
    batch norm's bias at batch 2, carries float32 noise of the network's gradient
    scale, not of its own), running statistics still per tensor (they come from the
    forward pass, which float32 computes to its own precision)."""
    missing = sorted(set(want) - set(got))
    if missing:
        return float("inf"), missing[0]
    diffs, changes = {}, {}
    for key, value in want.items():
        want64 = np.asarray(value, np.float64)
        got64 = np.asarray(got[key], np.float64)
        if got64.shape != want64.shape or not np.isfinite(got64).all():
            return float("inf"), key
        changes[key] = float(np.abs(want64 - np.asarray(initial[key], np.float64)).max())
        diffs[key] = float(np.abs(got64 - want64).max())
    scale = dict(changes)
    if not per_tensor:
        params = [k for k in changes if not is_buffer(k)]
        top = max((changes[k] for k in params), default=0.0)
        scale.update(dict.fromkeys(params, top))
    worst, where = 0.0, ""
    for key, diff in diffs.items():
        error = diff / scale[key] if scale[key] > 0 else (0.0 if diff == 0 else float("inf"))
        if error > worst:
            worst, where = error, key
    return worst, where


def batch_norm_paths(network: L.Network) -> list[str]:
    return [row.path for row in infer(network) if isinstance(row.layer, L.BatchNorm)]


# Training ------------------------------------------------------------------------------

LEARNING_RATE = 1e-3  # SGD with momentum; small enough that three steps stay tame
# Whether a framework's batch norm blends the BIASED batch variance into its running
# variance is a documented difference its parity probe declares
# (harness.backend.ParityProbe.biased_running_var): the parity checks compare those
# against the reference run with ``unbiased=False``.


def batches(network: L.Network, batch: int, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` different (images, labels) batches, the same in every framework."""
    return [(images(network, batch, 10 + s), labels(network, batch, 10 + s)) for s in range(steps)]


def reference_case(
    network: L.Network, batch: int = 2, steps: int = 1, lr: float = LEARNING_RATE
) -> dict[str, np.ndarray]:
    """Everything a parity check compares against, as flat arrays (an .npz's worth):
    ``weight/<key>`` (parity weights, float32), ``images``, ``logits`` and
    ``train_logits`` (inference and training-mode forward, float64), ``batch<s>/images``
    and ``batch<s>/labels`` of each training step, ``losses``, ``state<s>/<key>`` after
    each step (running variance from the unbiased batch variance) and
    ``biased<s>/<key>`` (the running variances from the biased one). ``steps=0``: the
    forward passes only (no training step, empty ``losses``)."""
    network = without_dropout(network)
    weights = parity_weights(network)
    x = images(network, batch)
    case = {f"weight/{k}": v for k, v in weights.items()}
    case["images"] = x
    case["logits"] = reference_logits(network, weights, x, training=False)
    # dropout is off: without batch norm the training-mode forward is the inference one
    case["train_logits"] = (
        reference_logits(network, weights, x, training=True)
        if batch_norm_paths(network)
        else case["logits"].copy()
    )
    check_scale(case["logits"])
    check_scale(case["train_logits"])
    data = batches(network, batch, steps)
    for s, (bx, by) in enumerate(data):
        case[f"batch{s}/images"], case[f"batch{s}/labels"] = bx, by
    biased: list[dict[str, np.ndarray]] = []
    losses, states = train(network, weights, data, lr=lr, other_running_var=biased)
    case["losses"] = np.asarray(losses)
    case["lr"] = np.asarray(lr)
    for s, state in enumerate(states):
        case.update({f"state{s}/{k}": v for k, v in state.items()})
        case.update({f"biased{s}/{k}": v for k, v in biased[s].items()})
    return case


def section(case: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under ``prefix/`` with the prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in case.items() if k.startswith(prefix + "/")}


def expected_state(
    case: Mapping[str, np.ndarray], step: int, biased: bool
) -> dict[str, np.ndarray]:
    """The reference state after ``step`` (0-based); ``biased``: running variances blended
    from the biased batch variance (JAX, MXNet)."""
    state = section(case, f"state{step}")
    if biased:
        state.update(section(case, f"biased{step}"))
    return state


def training_errors(
    case: Mapping[str, np.ndarray],
    losses: list[float],
    states: list[Mapping[str, np.ndarray]],
    biased: bool,
    per_tensor: bool = False,
) -> tuple[float, float, str]:
    """(largest relative loss error, largest state error, the worst tensor) over the steps
    given (the first ``len(losses)`` of the case's)."""
    want = np.asarray(case["losses"], np.float64)[: len(losses)]
    got = np.asarray(losses, np.float64)
    loss_error = (
        float(np.max(np.abs(got - want) / np.abs(want))) if len(got) == len(want) else float("inf")
    )
    initial = section(case, "weight")
    worst, where = 0.0, ""
    for step, state in enumerate(states):
        error, key = state_error(state, expected_state(case, step, biased), initial, per_tensor)
        if error > worst or not where:
            worst, where = error, f"step {step + 1}: {key}"
    return loss_error, worst, where
