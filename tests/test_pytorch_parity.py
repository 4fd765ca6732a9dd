"""PyTorch against the NumPy reference: the same canonical weights give the same logits.

Runs in the pytorch tox env (``pytest -m pytorch``). torch is imported inside the tests,
so the core env can collect this module and deselect it.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.models import build, infer, init_weights
from harness.models.layers import BatchNorm
from harness.models.reference import forward

pytestmark = pytest.mark.pytorch

CASES = [
    ("lenet", (1, 28, 28), 10),
    ("alexnet", (3, 32, 32), 10),
    ("resnet50", (3, 32, 32), 10),
    ("googlenet", (3, 32, 32), 10),
    ("vgg16", (3, 32, 32), 10),
    ("vgg16", (1, 28, 28), 10),
    ("alexnet", (3, 224, 224), 1000),
    ("resnet50", (3, 224, 224), 1000),
    ("googlenet", (3, 224, 224), 1000),
]


def _weights(network, seed: int) -> dict[str, np.ndarray]:
    """Canonical initial weights with non-trivial batch-norm statistics and affine terms."""
    rng = np.random.default_rng(seed)
    weights = init_weights(network, seed)
    norms = [row.path for row in infer(network) if isinstance(row.layer, BatchNorm)]
    for path in norms:
        size = weights[f"{path}.weight"].shape
        draws = {
            "weight": 1 + 0.1 * rng.standard_normal(size),
            "bias": 0.1 * rng.standard_normal(size),
            "running_mean": 0.1 * rng.standard_normal(size),
            "running_var": rng.uniform(0.5, 1.5, size),
        }
        for name, value in draws.items():
            weights[f"{path}.{name}"] = value.astype(np.float32)
    return weights


def _torch_logits(network, weights, images, training: bool) -> np.ndarray:
    import torch

    from harness.backends.pytorch.network import build_module, load_canonical_state

    module = build_module(network)
    load_canonical_state(module, weights)
    module.train(training)
    for sub in module.modules():  # the reference's dropout is the identity
        if isinstance(sub, torch.nn.Dropout):
            sub.eval()
    with torch.no_grad():
        return module(torch.from_numpy(images)).numpy()


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize(("name", "shape", "classes"), CASES)
def test_torch_matches_reference(name, shape, classes, training):
    network = build(name, shape, classes)
    weights = _weights(network, 3)
    batch = 1 if shape[1] == 224 and not training else 2  # batch statistics need 2
    images = np.random.default_rng(4).standard_normal((batch, *shape)).astype(np.float32)
    expected = forward(network, weights, images, training=training)
    got = _torch_logits(network, weights, images, training)
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert scale > 0
    # float32 against a float64 reference: relative to the logits' magnitude.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
