"""The machine a run measures: its GPUs, its environment, its CPU's peak.

``gpus`` (which GPUs, through NVML), ``environment`` (host, CPU model, library
versions, git commit) and ``peak`` (the CPU's measured GEMM peak, for MFU). The CPU
thread policy that backends apply is plugin-facing and lives at ``harness.cpu``.
"""
