"""The parity matrix every backend's tests run the same way: forward (inference and
training mode) for the 13 (model, input) pairs of the study's five networks and ResNet-18
at 3x32x32 (FORWARD_PAIRS), the mutations that
must make the check fail, and training (see harness.models.parity for the weights,
inputs and tolerances; harness.models.reference_training for the NumPy training step).

A backend's test module gives a ``Forward`` function (network, canonical weights, NCHW
images, training) -> logits and calls the checks here; nothing here imports a framework.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from backend_checks import PAIRS

from harness import models
from harness.models import layers as L
from harness.models import parity as P

Forward = Callable[[L.Network, dict, np.ndarray, bool], np.ndarray]

BATCH = 2  # batch statistics need two images; CI time wants no more
FORWARD_TOL = P.TOLERANCES["cpu"]["forward"]
# ResNet-18 and VGG-19 add no layer kind: ResNet-18's small forward (about a second per
# framework) proves its basic blocks translate; its 224x224 forward and VGG-19's (minutes
# of NumPy reference) run in `python -m harness verify --models resnet18,vgg19 --inputs
# all`, not in CI.
FORWARD_PAIRS = [*PAIRS, ("resnet18", (3, 32, 32), 10)]


def _ids(pairs: list) -> list[str]:
    return [f"{name}-{'x'.join(map(str, shape))}" for name, shape, _ in pairs]


PAIR_IDS = _ids(PAIRS)


def pair_params():
    """pytest parameters (name, shape, classes) over FORWARD_PAIRS, with readable ids."""
    return pytest.mark.parametrize(
        ("name", "shape", "classes"), FORWARD_PAIRS, ids=_ids(FORWARD_PAIRS)
    )


# Training parity runs once per network, at the size the study trained it on CIFAR-10
# (LeNet: MNIST). What it proves (the loss, SGD with momentum, the batch-norm running
# statistics, the layouts, the framework's gradients of each layer kind) does not depend on
# the input size; the 28x28 and 224x224 variants differ in sizes, kernels and strides,
# which their forward checks prove. A 224x224 training step costs the NumPy reference
# minutes (VGG-16: about 300 s of one CI run); its forward, seconds.
TRAINED_PAIRS = [pair for pair in PAIRS if pair[0] == "lenet" or pair[1] == (3, 32, 32)]


def training_pair_params():
    """pytest parameters (name, shape, classes) over the pairs whose training is checked."""
    ids = [i for i, pair in zip(PAIR_IDS, PAIRS, strict=True) if pair in TRAINED_PAIRS]
    return pytest.mark.parametrize(("name", "shape", "classes"), TRAINED_PAIRS, ids=ids)


@dataclass(frozen=True)
class Case:
    network: L.Network  # dropout off
    weights: dict[str, np.ndarray]  # parity weights, float32
    images: np.ndarray  # NCHW float32
    inference: np.ndarray  # reference logits, float64
    training: np.ndarray  # reference logits with batch statistics, float64


def case(request: pytest.FixtureRequest, name: str, shape, classes: int) -> Case:
    """The parity case of one pair (from :func:`reference`: computed once per checkout)."""
    data = reference(request, name, tuple(shape), classes)
    network = P.without_dropout(models.build(name, tuple(shape), classes))
    weights = P.section(data, "weight")
    return Case(network, weights, data["images"], data["logits"], data["train_logits"])


def forward_error(run: Forward, c: Case, training: bool, **changes) -> float:
    """relative_error of the backend's logits; ``changes`` replace the case's network or
    weights on the backend's side only (the mutations)."""
    network = changes.get("network", c.network)
    weights = changes.get("weights", c.weights)
    got = run(network, weights, c.images, training)
    return P.relative_error(got, c.training if training else c.inference)


def check_forward(run: Forward, request, name, shape, classes, training: bool) -> None:
    c = case(request, name, shape, classes)
    error = forward_error(run, c, training)
    mode = "training" if training else "inference"
    assert error <= FORWARD_TOL, f"{name} {shape} {mode}: relative error {error:.3g}"


# Mutations: each must make the forward check fail ----------------------------------------


def _first(network: L.Network, kind: type) -> str:
    return next(path for path, layer in models.walk(network) if isinstance(layer, kind))


def perturbed_weight(c: Case) -> dict:
    """One element of the first convolution moved by a tenth of the kernel's largest."""
    key = f"{_first(c.network, L.Conv2D)}.weight"
    weights = dict(c.weights)
    value = weights[key].copy()
    value.flat[0] += 0.1 * float(np.abs(value).max())
    weights[key] = value
    return {"weights": weights}


def swapped_statistics(c: Case) -> dict:
    """The first batch norm's running mean and variance swapped (the variance made
    positive: |mean|), as a translator mixing up the two names would load them."""
    path = _first(c.network, L.BatchNorm)
    weights = dict(c.weights)
    mean, var = weights[f"{path}.running_mean"], weights[f"{path}.running_var"]
    weights[f"{path}.running_mean"], weights[f"{path}.running_var"] = var, np.abs(mean)
    return {"weights": weights}


def _repad(node):
    """Every strided MaxPool(k, s, p) with p > 0 becomes MaxPool(k, s, 0, ceil_mode=True):
    the same output size where the catalogue uses it, the windows shifted by the padding."""
    if isinstance(node, L.MaxPool) and node.padding and node.stride not in (None, 1):
        return replace(node, padding=0, ceil_mode=True)
    if isinstance(node, L.Sequential):
        return replace(node, layers=tuple(map(_repad, node.layers)))
    if isinstance(node, L.Residual):
        return L.Residual(
            _repad(node.body), None if node.shortcut is None else _repad(node.shortcut)
        )
    if isinstance(node, L.Concat):
        return L.Concat(tuple(map(_repad, node.branches)))
    return node


def wrong_padding(c: Case) -> dict:
    """Max pools padded on the wrong side (after instead of before and after)."""
    network = replace(c.network, body=_repad(c.network.body))
    assert models.infer(network)[-1].out_shape == models.infer(c.network)[-1].out_shape
    return {"network": network}


MUTATIONS = {
    "perturbed-weight": (("resnet50", (3, 32, 32), 10), perturbed_weight),
    "swapped-running-stats": (("resnet50", (3, 32, 32), 10), swapped_statistics),
    "wrong-padding": (("googlenet", (3, 32, 32), 10), wrong_padding),
}


def mutation_params():
    return pytest.mark.parametrize("mutation", list(MUTATIONS))


def check_mutation_fails(run: Forward, request, mutation: str) -> None:
    """The mutated backend fails the forward check, by far; the intact one passes."""
    pair, mutate = MUTATIONS[mutation]
    c = case(request, *pair)
    assert forward_error(run, c, False) <= FORWARD_TOL
    error = forward_error(run, c, False, **mutate(c))
    assert error > 10 * FORWARD_TOL, f"{mutation}: relative error only {error:.3g}"


# Training: the backend's own Trainer against the NumPy reference step --------------------

TRAIN_TOL = P.TOLERANCES["cpu"]["train"]
# Three steps (momentum at work) for these; the first step for every other trained pair
# (TRAINED_PAIRS); none (the forward passes only) for the others.
THREE_STEPS = {
    ("lenet", (1, 28, 28), 10),
    ("resnet50", (3, 32, 32), 10),
    ("googlenet", (3, 32, 32), 10),
}
_MODELS = Path(models.__file__).resolve().parent
_cases: dict[str, dict[str, np.ndarray]] = {}


def _key(name: str, shape: tuple[int, int, int], classes: int, steps: int) -> str:
    digest = hashlib.sha256(repr((name, shape, classes, steps, BATCH, P.LEARNING_RATE)).encode())
    for source in sorted(_MODELS.glob("*.py")):
        digest.update(source.read_bytes())
    return f"{name}-{'x'.join(map(str, shape))}-{digest.hexdigest()[:16]}"


def reference(request: pytest.FixtureRequest, name: str, shape, classes: int) -> dict:
    """models.parity.reference_case of one pair, computed by the reference in this test
    session or an earlier one: kept in pytest's cache folder (pyproject's cache_dir:
    shared by the tox envs of one checkout), keyed by the pair and the source of models/,
    so a change to the reference or the models recomputes it."""
    shape = tuple(shape)
    pair = (name, shape, classes)
    steps = 3 if pair in THREE_STEPS else 1 if pair in TRAINED_PAIRS else 0
    key = _key(name, shape, classes, steps)
    if key in _cases:
        return _cases[key]
    cache = getattr(request.config, "cache", None)
    path = cache.mkdir("parity-reference") / f"{key}.npz" if cache is not None else None
    if path is not None and path.exists():
        case = dict(np.load(path))
    else:
        case = P.reference_case(models.build(name, shape, classes), BATCH, steps)
        if path is not None:
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # envs run at once
            with open(partial, "wb") as handle:
                np.savez(handle, **case)
            partial.replace(path)
    _cases[key] = case
    return case


def _running_var_error(case, states, biased: bool) -> float:
    """The largest per-tensor error of the running variances after the first step."""
    want = P.expected_state(case, 0, biased)
    keys = [k for k in want if k.endswith(".running_var")]
    pick = lambda state: {k: state[k] for k in keys}  # noqa: E731
    initial = pick(P.section(case, "weight"))
    return P.state_error(pick(states[0]), pick(want), initial)[0]


def check_training(tool: str, request: pytest.FixtureRequest, name, shape, classes) -> None:
    """The tool's Trainer, from the parity weights on the reference's batches (dropout
    off): its first float32 step (LeNet: all three) gives the reference's loss and
    state (TRAIN_TOL); where the tool has a float64 test mode and the pair takes three
    steps, the three float64 steps give the reference's losses and every tensor within
    FLOAT64_TOLERANCE.
    Running variances follow the tool's documented convention
    (the probe's biased_running_var) and measurably not the other one."""
    from harness.run.parity import probe, trainer_steps

    case = reference(request, name, shape, classes)
    network = P.without_dropout(models.build(name, tuple(shape), classes))
    steps = len(case["losses"])
    data = [(case[f"batch{s}/images"], case[f"batch{s}/labels"]) for s in range(steps)]
    weights, lr = P.section(case, "weight"), float(case["lr"])
    found = probe(tool)
    biased = found.biased_running_var
    # float32: every step where no batch norm amplifies float32 noise (LeNet's three
    # test the momentum), else the first
    first = data if not P.batch_norm_paths(network) else data[:1]
    losses, states = trainer_steps(tool, network, weights, first, lr)
    loss_error, state_error, where = P.training_errors(case, losses, states, biased)
    assert loss_error <= FORWARD_TOL, f"loss {losses} vs {case['losses']}: {loss_error:.3g}"
    assert state_error <= TRAIN_TOL, f"{where}: relative error {state_error:.3g}"
    if P.batch_norm_paths(network):
        assert _running_var_error(case, states, biased) <= 1e-3
        other = _running_var_error(case, states, not biased)
        assert other > 5e-3, f"biased={not biased} running variances fit too ({other:.3g})"
    count = found.float64_steps(network, steps)
    if steps > 1 and count:
        losses, states = trainer_steps(tool, network, weights, data[:count], lr, float64=True)
        loss_error, state_error, where = P.training_errors(
            case, losses, states, biased, per_tensor=True
        )
        tolerance = found.float64_tolerance
        assert len(losses) == count >= 2
        assert loss_error <= tolerance, f"float64 losses {losses}: {loss_error:.3g}"
        assert state_error <= tolerance, f"float64 {where}: {state_error:.3g}"
        print(f"{tool} {name} float64: losses {loss_error:.2g}, state {state_error:.2g}")
