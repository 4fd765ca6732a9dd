"""A run: from a spec to repeated worker processes and their events.

``spec`` (what to run), ``orchestrator`` (plan the run, start the workers through a
launcher, collect and store the results), ``interpreters`` (which Python has the
framework), ``worker`` (``python -m harness.run.worker``: one process of one repeat),
``loop`` (the shared warmup, timing and evaluation loop) and ``events`` (the JSON-lines
channel from worker to orchestrator). Launchers are plugin-facing: ``harness.launchers``.
"""
