"""The CPU thread policy (harness.cpu): cores available, the split of --threads over the
devices, the worker's environment, and how the spec and the plan carry it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import cpu, hookimpl
from harness.backend import BackendInfo
from harness.errors import UsageError
from harness.plugins import PluginManager
from harness.run.orchestrator import plan_run
from harness.run.spec import resolve
from harness.spec import RunSpec

# Cores available ---------------------------------------------------------------------------


def fake_tree(root: Path, cgroup: str, mountinfo: str, files: dict[str, str] | None = None) -> Path:
    """A fake /proc/self and cgroup hierarchy under ``root``."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    for path, text in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)
V1_CGROUP = "5:memory:/job\n4:cpu,cpuacct:/job/step\n1:name=systemd:/\n"


def test_cgroup_v2_quota_is_read_from_cpu_max(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        "0::/job.slice/run.scope\n",
        V2_MOUNT,
        {
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/job.slice/run.scope/cpu.max": "250000 100000\n",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 2.5


def test_cgroup_v2_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        "0::/job.slice/run.scope\n",
        V2_MOUNT,
        {
            "sys/fs/cgroup/job.slice/cpu.max": "150000 100000\n",
            "sys/fs/cgroup/job.slice/run.scope/cpu.max": "max 100000\n",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 1.5


def test_cgroup_v2_without_a_quota_is_no_limit(tmp_path: Path) -> None:
    root = fake_tree(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cpu.cgroup_cpu_limit(root) is None


def test_cgroup_v2_in_a_container_reads_the_mount_itself(tmp_path: Path) -> None:
    # The host's path of the container's cgroup is not below the container's mount.
    root = fake_tree(
        tmp_path, "0::/docker/abc123\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "300000 100000\n"}
    )
    assert cpu.cgroup_cpu_limit(root) == 3.0


def test_cgroup_v1_quota_and_period(tmp_path: Path) -> None:
    base = "sys/fs/cgroup/cpu,cpuacct"
    root = fake_tree(
        tmp_path,
        V1_CGROUP,
        V1_MOUNTS,
        {
            f"{base}/cpu.cfs_quota_us": "-1\n",
            f"{base}/cpu.cfs_period_us": "100000\n",
            f"{base}/job/step/cpu.cfs_quota_us": "50000\n",
            f"{base}/job/step/cpu.cfs_period_us": "100000\n",
            # the memory controller's folder has no say in CPUs
            "sys/fs/cgroup/memory/job/cpu.cfs_quota_us": "10000\n",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 0.5


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    base = "sys/fs/cgroup/cpu,cpuacct"
    root = fake_tree(
        tmp_path,
        V1_CGROUP,
        V1_MOUNTS,
        {f"{base}/cpu.cfs_quota_us": "-1\n", f"{base}/cpu.cfs_period_us": "100000\n"},
    )
    assert cpu.cgroup_cpu_limit(root) is None


def test_hybrid_hierarchies_take_the_smaller_quota(tmp_path: Path) -> None:
    base = "sys/fs/cgroup/cpu,cpuacct"
    unified = "40 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    root = fake_tree(
        tmp_path,
        V1_CGROUP + "0::/\n",
        V1_MOUNTS + unified,
        {
            f"{base}/job/step/cpu.cfs_quota_us": "400000\n",
            f"{base}/job/step/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/unified/cpu.max": "200000 100000\n",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 2.0


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    assert cpu.cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        ({0, 1, 2, 3}, None, 4),
        ({0, 1, 2, 3}, "250000 100000", 2),  # floor of 2.5
        ({0, 1}, "800000 100000", 2),  # affinity is the tighter bound
        ({0, 1, 2, 3}, "20000 100000", 1),  # 0.2 CPUs: still one thread
    ],
)
def test_available_cores_intersects_affinity_and_quota(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    affinity: set[int],
    quota: str | None,
    expected: int,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity)
    files = {"sys/fs/cgroup/cpu.max": quota} if quota else {}
    root = fake_tree(tmp_path, "0::/\n", V2_MOUNT, files)
    assert cpu.available_cores(root) == expected


def test_affinity_counts_this_process_cpus() -> None:
    assert cpu.affinity_cores() == len(os.sched_getaffinity(0))
    assert 1 <= cpu.available_cores() <= cpu.affinity_cores()


# The policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threads", "devices", "per_device", "total"),
    [
        (2, 1, 2, 2),
        (2, 2, 1, 2),
        (8, 2, 4, 8),
        (7, 2, 3, 6),  # rounded down to a multiple of the devices
        (1, 2, 1, 2),  # at least one thread per device
        (None, 3, 4, 12),  # default: the cores available (12 here)
    ],
)
def test_threads_split_evenly_over_the_devices(
    threads: int | None, devices: int, per_device: int, total: int
) -> None:
    policy = cpu.policy_for(threads, devices, cores=12)
    assert policy == cpu.ThreadPolicy(
        cores_available=12,
        intra_op_total=total,
        intra_op_per_device=per_device,
        inter_op=cpu.INTER_OP_PER_DEVICE,
        devices=devices,
    )
    assert policy.per_process(devices) == total
    assert policy.expected() == {
        "intra_op_total": total,
        "intra_op_per_device": per_device,
        "inter_op": 1,
        "devices": devices,
    }


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="devices"):
        cpu.policy_for(2, 0, cores=4)
    with pytest.raises(ValueError, match="threads"):
        cpu.policy_for(0, 1, cores=4)


def test_worker_env_is_the_per_device_share() -> None:
    env = cpu.policy_for(6, 2, cores=8).env()
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}


def test_thread_policy_of_a_spec_counts_gpus_or_cpu_devices() -> None:
    gpu = cpu.thread_policy(RunSpec("x", "lenet", "mnist", num_gpus=4, threads=16))
    assert (gpu.devices, gpu.intra_op_per_device, gpu.intra_op_total) == (4, 4, 16)
    two = cpu.thread_policy(RunSpec("x", "lenet", "mnist", cpu_devices=2, threads=2))
    assert (two.devices, two.intra_op_per_device, two.intra_op_total) == (2, 1, 2)


def test_report_has_the_same_keys_everywhere() -> None:
    out = cpu.report(4, 2, 1, 2, "how")
    assert tuple(out) == cpu.REPORT_KEYS


# The spec and the plan ----------------------------------------------------------------------

LOCAL = BackendInfo(name="local-x", framework="X", requires=(), install_hint="-", trainer="x:Y")


class LocalPlugin:
    @hookimpl
    def harness_register_backends(self, register: Callable[[BackendInfo], None]) -> None:
        register(LOCAL)


def test_resolve_fills_threads_with_the_cores_available(monkeypatch) -> None:
    monkeypatch.setattr(cpu, "available_cores", lambda root="/": 5)
    tools = {"local-x": LOCAL}
    assert resolve(RunSpec("local-x", "lenet", "mnist"), tools).threads == 5
    assert resolve(RunSpec("local-x", "lenet", "mnist", threads=3), tools).threads == 3
    with pytest.raises(UsageError, match="--threads must be a positive number"):
        resolve(RunSpec("local-x", "lenet", "mnist", threads=0), tools)


def test_plan_gives_every_worker_the_policy_env(monkeypatch) -> None:
    pm = PluginManager(entry_points=False, plugins=(LocalPlugin(),))
    monkeypatch.setattr(cpu, "available_cores", lambda root="/": 6)
    plan = plan_run(RunSpec("local-x", "lenet", "mnist", cpu_devices=2), pm)
    assert plan.spec.threads == 6
    assert plan.env["OMP_NUM_THREADS"] == plan.env["OPENBLAS_NUM_THREADS"] == "3"
    assert plan.warnings == []
    plan = plan_run(RunSpec("local-x", "lenet", "mnist", threads=2), pm)
    assert plan.env["OMP_NUM_THREADS"] == plan.env["MKL_NUM_THREADS"] == "2"
    plan = plan_run(RunSpec("local-x", "lenet", "mnist", threads=9, cpu_devices=2), pm)
    assert plan.env["OMP_NUM_THREADS"] == "4"
    assert plan.warnings == [
        "--threads 9 over 2 devices: 4 per device, 8 in all",
        "8 intra-op threads on 6 cores available: threads will share cores",
    ]


def test_backends_run_env_carries_the_framework_settings() -> None:
    from harness.backends.jax import run_env as jax_env
    from harness.backends.mxnet import run_env as mxnet_env

    spec = RunSpec("jax", "lenet", "mnist", cpu_devices=2, threads=5)
    assert jax_env(spec)["PJRT_NPROC"] == "4"  # 2 per device x 2 devices
    assert jax_env(RunSpec("jax", "lenet", "mnist", num_gpus=2, threads=8)) == {"PJRT_NPROC": "8"}
    assert mxnet_env(RunSpec("mxnet", "lenet", "mnist", cpu_devices=2, threads=4)) == {
        "MXNET_CPU_WORKER_NTHREADS": "1"
    }


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\n")
    assert cpu.cpu_flags(info) == frozenset({"fpu", "sse2", "avx2", "avx512f"})
    assert cpu.cpu_flags(tmp_path / "missing") is None
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert cpu.cpu_flags(tmp_path / "empty") is None


def test_mxnet_refuses_precisions_its_devices_cannot_run() -> None:
    from harness.backends.mxnet import BF16_CPU_FLAGS, precision_refusal

    spec = RunSpec("mxnet", "lenet", "mnist", precision="bf16")
    reason = precision_refusal(spec, frozenset({"avx2", "avx512f"}))
    assert reason is not None and "avx512bw" in reason and "fp32" in reason
    assert precision_refusal(spec, BF16_CPU_FLAGS | {"avx2"}) is None
    assert precision_refusal(spec, None) is None  # unknown flags: let the run say
    assert precision_refusal(RunSpec("mxnet", "lenet", "mnist"), frozenset()) is None  # fp32
    gpu = RunSpec("mxnet", "lenet", "mnist", precision="bf16", num_gpus=1)
    assert "on the CPU only" in precision_refusal(gpu, BF16_CPU_FLAGS)
    cpu16 = RunSpec("mxnet", "lenet", "mnist", precision="fp16")
    assert "fp16 on GPUs only" in precision_refusal(cpu16, BF16_CPU_FLAGS)
    gpu16 = RunSpec("mxnet", "lenet", "mnist", precision="fp16", num_gpus=2)
    assert precision_refusal(gpu16, frozenset()) is None
