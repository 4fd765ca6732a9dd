"""JAX's parity probe (harness.backend.ParityProbe), imported only by ``verify``'s
parity process and the parity tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backend import ParityProbe

from .network import canonical_state, numpy_forward


class JaxProbe(ParityProbe):
    # Flax's BatchNorm blends the biased batch variance into the running variance.
    biased_running_var = True

    def forward(self, network, weights, images, training, gpu):
        import jax

        device = {"device": jax.devices("gpu")[0]} if gpu else {}
        return numpy_forward(network, weights, images, training=training, **device)

    def float64_steps(self, network, steps: int) -> int:
        return steps

    def float64(self, trainer: Any) -> Callable[[], dict]:
        """64-bit mode on (until the trainer closes), its state (weights, batch
        statistics, momentum) widened and its batches too; the fp32 module computes in
        its inputs' dtype, and the loss is taken in the logits' dtype."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        jax.config.update("jax_enable_x64", True)
        close = trainer.close

        def restore() -> None:
            try:
                close()
            finally:
                jax.config.update("jax_enable_x64", False)

        trainer.close = restore
        # widened on the host: an eager astype compiles one XLA kernel per leaf shape
        wide = lambda tree: jax.tree_util.tree_map(  # noqa: E731
            lambda a: np.asarray(a, np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            tree,
        )
        state = trainer.state
        trainer.state = jax.device_put(
            state._replace(
                params=wide(state.params),
                batch_stats=wide(state.batch_stats),
                opt_state=wide(state.opt_state),
            ),
            trainer.replicated,
        )
        return lambda: canonical_state(
            trainer.network, jax.device_get(trainer._variables()), dtype=np.float64
        )

    def tf32(self) -> bool | None:
        import jax

        precision = getattr(jax.config, "jax_default_matmul_precision", None)
        return precision in (None, "default", "bfloat16", "tensorfloat32", "fastest")
