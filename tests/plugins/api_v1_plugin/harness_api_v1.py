"""A harness plugin written against plugin API 1.0, and never to be updated.

It registers the ``apiv1`` tool with only what the first version offered: a
BackendInfo with the first version's fields, and a Trainer that implements only the
methods the first version's Trainer needed (framework_info, device_batch, train_step,
loss_value, evaluate); it inherits synchronize, memory_peak and close. The trainer fits
a linear softmax classifier to the flattened images (the network's layers are not
used) with the harness's recipe, SGD with momentum. NumPy's calls block, so the
inherited no-op synchronize is right.

tests/test_plugin_api.py loads it through HARNESS_PLUGINS (or install it: ``pip install
tests/plugins/api_v1_plugin``) and trains with it through the command line: a harness
change that breaks it breaks the plugin API 1.x promise (docs/plugins.md). Change
the harness, not this file.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.backend import SGD_MOMENTUM, BackendInfo, Trainer

# The plugin API this plugin was written against.
HARNESS_PLUGIN_API = "1.0"

INFO = BackendInfo(
    name="apiv1",
    framework="Plugin API 1.0 example",
    requires=("numpy",),
    install_hint="pip install tests/plugins/api_v1_plugin",
    trainer="harness_api_v1:LinearTrainer",
    description="A linear softmax classifier in NumPy, written against plugin API 1.0.",
)


class LinearTrainer(Trainer):
    """Softmax regression on the flattened images; only plugin API 1.0's methods."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import numpy as np  # in the worker only: the orchestrator imports no NumPy here

        features = 1
        for size in ctx.network.input_shape:
            features *= size
        classes = ctx.network.num_classes
        self.params = [
            np.zeros((features, classes), np.float32),
            np.zeros(classes, np.float32),
        ]
        self.velocity = [np.zeros_like(p) for p in self.params]
        self.learning_rate = ctx.spec.learning_rate

    def framework_info(self) -> dict[str, Any]:
        import numpy as np

        return {"framework": "numpy", "version": np.__version__, "devices": ["cpu"]}

    def device_batch(self, images: Any, labels: Any) -> Any:
        return images.reshape(images.shape[0], -1), labels

    def _logits(self, x: Any) -> Any:
        return x @ self.params[0] + self.params[1]

    def train_step(self, batch: Any) -> Any:
        import numpy as np

        x, labels = batch
        logits = self._logits(x)
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = float(-np.log(probs[rows, labels] + 1e-12).mean())
        probs[rows, labels] -= 1.0
        probs /= len(labels)
        grads = [x.T @ probs, probs.sum(axis=0)]
        for param, velocity, grad in zip(self.params, self.velocity, grads, strict=True):
            velocity *= SGD_MOMENTUM
            velocity += grad
            param -= self.learning_rate * velocity
        return loss

    def loss_value(self, token: Any) -> float:
        return float(token)

    def evaluate(self, batch: Any) -> tuple[float, int]:
        import numpy as np

        x, labels = batch
        logits = self._logits(x)
        logits = logits - logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        rows = np.arange(len(labels))
        return float(-log_probs[rows, labels].sum()), int((logits.argmax(axis=1) == labels).sum())


@hookimpl
def harness_register_backends(register: Any) -> None:
    register(INFO)
