"""Strict JSON for everything the harness writes: no NaN or Infinity tokens.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no strict JSON
reader accepts. A non-finite number (a diverged loss, a zero-length window) becomes
``null`` where it is produced, with :func:`finite`; :func:`dumps` then refuses any
that slipped through (``allow_nan=False``) rather than writing invalid JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars
        return finite(value.item()) if getattr(value, "ndim", 0) == 0 else value
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` (``value``), strictly (``allow_nan=False``)."""
    kwargs.setdefault("default", str)
    return json.dumps(finite(value), allow_nan=False, **kwargs)
