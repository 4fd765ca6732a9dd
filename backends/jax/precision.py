"""Mixed precision for the JAX backend: compute dtypes and dynamic loss scaling.

Parameters, optimiser state and batch-norm statistics stay float32 in every precision;
``fp16``/``bf16`` set the computation dtype of convolutions, dense layers and batch norm
(flax casts the float32 parameters per call). The loss is computed in float32.

fp16 uses dynamic loss scaling with the values of harness.backends.loss_scale
(torch.amp.GradScaler's defaults): start at 2**16, halve and skip the update when a
gradient is not finite, double after 2000 finite steps. bf16 has float32's exponent
range and needs no scaling.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from harness.backends.loss_scale import GROWTH_INTERVAL, INITIAL_SCALE

__all__ = ["COMPUTE_DTYPES", "GROWTH_INTERVAL", "INITIAL_SCALE", "LossScale", "select"]

COMPUTE_DTYPES: dict[str, Any] = {"fp32": None, "fp16": jnp.float16, "bf16": jnp.bfloat16}


class LossScale(NamedTuple):
    """Dynamic loss-scaling state (a pytree of two scalars)."""

    scale: jax.Array  # float32
    good_steps: jax.Array  # int32: finite steps since the last change

    @classmethod
    def create(cls) -> LossScale:
        return cls(jnp.asarray(INITIAL_SCALE, jnp.float32), jnp.asarray(0, jnp.int32))

    def unscale(self, grads: Any) -> tuple[Any, jax.Array]:
        """Gradients divided by the scale, and whether all of them are finite."""
        grads = jax.tree_util.tree_map(lambda g: g / self.scale, grads)
        finite = jnp.asarray(True)
        for g in jax.tree_util.tree_leaves(grads):
            finite = finite & jnp.all(jnp.isfinite(g))
        return grads, finite

    def adjust(self, finite: jax.Array) -> LossScale:
        """The state after a step whose gradients were (not) finite."""
        grow = finite & (self.good_steps + 1 >= GROWTH_INTERVAL)
        scale = jnp.where(finite, jnp.where(grow, self.scale * 2, self.scale), self.scale / 2)
        good = jnp.where(finite & ~grow, self.good_steps + 1, 0)
        return LossScale(scale.astype(jnp.float32), good.astype(jnp.int32))


def select(condition: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``condition`` holds, else ``old``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)
