"""Operation-level benchmarks after Baidu's DeepBench: ``python -m harness ops``.

``suite`` reads the kernels (TOML files in ``suites/``) and counts their FLOPs,
``runner`` starts one worker per kernel set and stores the results, ``worker`` times
the kernels in the framework's interpreter (``timing``) through the backend's ``ops``
module (``kernels`` says what that module provides).
"""
