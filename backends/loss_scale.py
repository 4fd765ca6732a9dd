"""Dynamic loss scaling for fp16, the one set of numbers every backend uses.

torch.amp.GradScaler's defaults, which the PyTorch backend gets from torch itself and
MXNet's AMP shares; the backends that scale the loss themselves (TensorFlow, JAX)
import them from here: start at 2**16, halve the scale and skip the update when a
gradient is not finite, double it after GROWTH_INTERVAL finite steps in a row.
"""

from __future__ import annotations

INITIAL_SCALE = 2.0**16
GROWTH_INTERVAL = 2000
