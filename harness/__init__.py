"""harness: a multi-framework deep-learning benchmark harness.

The core (this package) imports no deep-learning framework; backends do, lazily,
inside the worker process of a run.
"""

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@hookimpl def harness_register_backends(...)``.
hookimpl = pluggy.HookimplMarker("harness")

__all__ = ["__version__", "hookimpl"]
