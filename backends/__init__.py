"""Built-in backends, one sub-package per framework (installed as harness.backends).

Each registers itself through the ``harness`` entry-point group exactly as an external
plugin would; its ``__init__`` imports only the standard library and the harness.
"""
