"""One CPU thread policy for every backend (no framework, no numpy).

Cores available = the CPUs this process may run on (its affinity mask) capped by any
cgroup CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
on this process's cgroup and its ancestors): ``floor(quota / period)``, at least 1.

``--threads T`` is the intra-op thread count of the WHOLE run (default: the cores
available), split evenly over the run's data-parallel devices:
``intra_op_per_device = max(1, T // devices)`` and the run then uses
``intra_op_total = intra_op_per_device * devices`` threads (T rounded down to a multiple
of the devices, or up to one thread per device when T < devices).

Inter-op rule: ONE inter-op thread per device (``INTER_OP_PER_DEVICE``). Each device
runs one operator at a time and that operator uses the device's intra-op threads, so at
no moment do more than ``intra_op_total`` threads compute: the devices never
oversubscribe the cores, and the figure means the same in every framework. Our networks
are chains of large operators (GoogLeNet's inception branches are the only parallel
ones), which gain from more intra-op threads, not from running small operators side by
side. A framework that keeps one inter-op pool per process gets one thread per device
it drives; one with a pool per device (engine workers) gets one per device; one that
drives one device per process gets 1. A framework with no inter-op setting (independent
operations share its one intra-op pool, as in XLA:CPU) reports none.

GPU runs apply the same rule to the host-side threads of each process (T split over the
GPUs).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.spec import RunSpec

INTER_OP_PER_DEVICE = 1

# Thread counts every worker gets in its environment: OpenMP, MKL and OpenBLAS read them
# when they start, and each of them sizes the threads of ONE operator, i.e. per device.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# Keys of framework_info["threads"], the same in every backend.
REPORT_KEYS = ("intra_op_total", "intra_op_per_device", "inter_op", "devices", "how")


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where unknown)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(folder: Path) -> float | None:
    """cpu.max: "QUOTA PERIOD" or "max PERIOD" (no limit)."""
    text = _read(folder / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    """cpu.cfs_quota_us (-1: no limit) / cpu.cfs_period_us."""
    quota_text = _read(folder / "cpu.cfs_quota_us")
    period_text = _read(folder / "cpu.cfs_period_us")
    if not quota_text or not period_text:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _mounts(root: Path) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, root inside the hierarchy, mount point, super options) of cgroup mounts."""
    text = _read(root / "proc/self/mountinfo") or ""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 1:
            continue
        fstype = tail[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options = set(tail[2].split(",")) if len(tail) > 2 else set()
        mounts.append((fstype, fields[3], fields[4], options))
    return mounts


def _memberships(root: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in v1's cpu controller."""
    v2 = v1 = None
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _folders(root: Path, mount_root: str, mount_point: str, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors up to the mount point (a quota on any of
    them limits the process). Inside a container the hierarchy may be mounted at the
    container's own cgroup: then the path is not below the mount and the mount point
    itself is the process's cgroup."""
    base = root / mount_point.lstrip("/")
    relative = path
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        relative = path[len(mount_root) :]
    folder = base / relative.strip("/")
    if not folder.is_dir():
        folder = base
    folders = [folder]
    while folder != base and base in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def cgroup_cpu_limit(root: str | os.PathLike[str] = "/") -> float | None:
    """The tightest cgroup CPU quota on this process in CPUs (e.g. 1.5), None if none.

    Reads /proc/self/cgroup and /proc/self/mountinfo under ``root`` (tests pass a fake
    tree) and, for each hierarchy, the quota files of the process's cgroup and every
    ancestor. Without mountinfo the usual mount points are tried.
    """
    base = Path(root)
    v2_path, v1_path = _memberships(base)
    mounts = _mounts(base)
    if not mounts:  # no mountinfo: the usual places
        mounts = [("cgroup2", "/", "/sys/fs/cgroup", set())]
        mounts += [
            ("cgroup", "/", f"/sys/fs/cgroup/{name}", {"cpu"}) for name in ("cpu", "cpu,cpuacct")
        ]
    limits: list[float] = []
    for fstype, mount_root, mount_point, options in mounts:
        if fstype == "cgroup2" and v2_path is not None:
            reader, path = _v2_limit, v2_path
        elif fstype == "cgroup" and "cpu" in options and v1_path is not None:
            reader, path = _v1_limit, v1_path
        else:
            continue
        for folder in _folders(base, mount_root, mount_point, path):
            limit = reader(folder)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def cpu_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> frozenset[str] | None:
    """The instruction-set flags of the first CPU in ``cpuinfo``; None where unreadable."""
    text = _read(Path(cpuinfo))
    if text is None:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def available_cores(root: str | os.PathLike[str] = "/") -> int:
    """CPU affinity intersected with the cgroup quota: min(affinity, floor(quota)), >= 1."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


@dataclass(frozen=True)
class ThreadPolicy:
    """The run's CPU threads, derived from ``--threads`` and its devices."""

    cores_available: int
    intra_op_total: int  # threads all devices of the run use for one operator each
    intra_op_per_device: int
    inter_op: int  # per device: operators a device runs at once (see INTER_OP_PER_DEVICE)
    devices: int  # data-parallel devices of the run (CPU devices, or GPUs)

    def per_process(self, local_devices: int) -> int:
        """Intra-op threads of one process driving ``local_devices`` devices."""
        return self.intra_op_per_device * local_devices

    def env(self) -> dict[str, str]:
        """Variables every worker process gets (per-operator thread counts)."""
        return {name: str(self.intra_op_per_device) for name in THREAD_ENV_VARS}

    def expected(self) -> dict[str, int]:
        """What every backend's framework_info["threads"] must report (bar "how")."""
        return {
            "intra_op_total": self.intra_op_total,
            "intra_op_per_device": self.intra_op_per_device,
            "inter_op": self.inter_op,
            "devices": self.devices,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_for(threads: int | None, devices: int, cores: int | None = None) -> ThreadPolicy:
    """The policy for ``threads`` intra-op threads in all (None: the cores available)."""
    if devices < 1:
        raise ValueError(f"devices must be at least 1, got {devices}")
    cores = available_cores() if cores is None else cores
    total_requested = cores if threads is None else threads
    if total_requested < 1:
        raise ValueError(f"threads must be at least 1, got {total_requested}")
    per_device = max(1, total_requested // devices)
    return ThreadPolicy(
        cores_available=cores,
        intra_op_total=per_device * devices,
        intra_op_per_device=per_device,
        inter_op=INTER_OP_PER_DEVICE,
        devices=devices,
    )


def thread_policy(spec: RunSpec) -> ThreadPolicy:
    """The policy of a run: ``spec.threads`` over ``spec.devices`` data-parallel devices."""
    return policy_for(spec.threads, spec.devices)


def report(
    intra_op_total: int | None,
    intra_op_per_device: int | None,
    inter_op: int | None,
    devices: int,
    how: str,
) -> dict[str, Any]:
    """framework_info["threads"]: the settings a backend read back from its framework
    (None: the framework has no such setting, or it could not be read back)."""
    return {
        "intra_op_total": intra_op_total,
        "intra_op_per_device": intra_op_per_device,
        "inter_op": inter_op,
        "devices": devices,
        "how": how,
    }
