"""Which GPUs this machine has (through NVML) and which ones a run uses.

GPUs are numbered by NVML index, which follows the PCI bus order. Workers get
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA (and every framework) numbers them the
same way, and ``CUDA_VISIBLE_DEVICES`` listing exactly the selected indices.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from harness.errors import UsageError
from harness.monitor.nvml import nvml_module_name


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    memory_mib: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...]
    driver: str | None = None
    reason: str | None = None  # why no GPU is listed, when none is


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover(nvml: ModuleType | None = None) -> Inventory:
    """The GPUs NVML sees; an empty inventory with the reason when it sees none."""
    try:
        nvml = nvml or importlib.import_module(nvml_module_name())
    except ImportError:
        return Inventory((), reason="nvidia-ml-py (pynvml) is not installed")
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return Inventory((), reason=f"NVML is not available: {exc}")
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                Gpu(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    memory_mib=int(memory.total // 2**20),
                )
            )
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        return Inventory(tuple(gpus), driver, None if gpus else "NVML reports no GPU")
    except Exception as exc:
        return Inventory((), reason=f"NVML failed while listing GPUs: {exc}")
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def select(num_gpus: int, selector: str | None, inventory: Inventory) -> list[Gpu]:
    """The ``num_gpus`` GPUs a run uses, chosen by ``selector`` (indices or a name match).

    ``selector`` is a comma-separated list of NVML indices ("0,2"), or text matched
    case-insensitively against GPU names ("A100"); None takes the first ones.
    """
    found = inventory.gpus
    where = f" ({inventory.reason})" if inventory.reason else ""
    if not selector:
        if len(found) < num_gpus:
            raise UsageError(
                f"--num-gpus {num_gpus} asks for {num_gpus} GPU(s) but this machine has "
                f"{len(found)}{where}"
            )
        return list(found[:num_gpus])
    parts = [p.strip() for p in selector.split(",") if p.strip()]
    if parts and all(p.isdigit() for p in parts):
        wanted = [int(p) for p in parts]
        if len(wanted) != num_gpus:
            raise UsageError(f"--gpu names {len(wanted)} GPU(s) but --num-gpus is {num_gpus}")
        if len(set(wanted)) != len(wanted):
            raise UsageError(f"--gpu lists a GPU twice: {selector}")
        by_index = {g.index: g for g in found}
        missing = [i for i in wanted if i not in by_index]
        if missing:
            valid = ", ".join(str(g.index) for g in found) or "none"
            raise UsageError(
                f"--gpu {selector}: no GPU with index {missing[0]}; "
                f"this machine has: {valid}{where}"
            )
        return [by_index[i] for i in wanted]
    matching = [g for g in found if selector.lower() in g.name.lower()]
    if len(matching) < num_gpus:
        names = ", ".join(f"{g.index}: {g.name}" for g in found) or "none"
        raise UsageError(
            f"--gpu {selector!r} matches {len(matching)} GPU(s), --num-gpus asks for {num_gpus}; "
            f"GPUs here: {names}{where}"
        )
    return matching[:num_gpus]


def worker_env(selected: list[Gpu]) -> dict[str, str]:
    """Environment that makes CUDA show exactly ``selected`` (none: a CPU run)."""
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in selected),
    }
