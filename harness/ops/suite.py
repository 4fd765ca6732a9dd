"""Operation suites: kernels and their shapes, read from TOML files (one file per suite).

A suite file has one array of tables per kernel kind (``[[gemm]]``, ``[[sparse_gemm]]``,
``[[conv]]``, ``[[rnn]]``, ``[[allreduce]]``); see ``suites/deepbench.toml``. Built-in
suites are named (``deepbench``, ``smoke``); any other value of ``--suite`` is a path.

The work of one call of each kernel (the FLOPs its TFLOP/s figure divides):

- GEMM: ``2 M N K``; sparse GEMM: ``2 nnz(A) N`` with ``nnz = round((1 - sparsity) M K)``,
  the useful work (a dense product of the same shape would be ``2 M N K``);
- convolution (DeepBench's count): ``2 N K P Q C R S``, ``P = (H + 2 pad - R) // stride + 1``
  and ``Q`` likewise from ``W`` and ``S``;
- recurrent layer: ``2 G batch steps hidden (input + hidden)`` with ``G`` = 4 gates for
  LSTM and 3 for GRU (the gate GEMMs; element-wise work is not counted);
- ``backward``: one training pass of the kernel, the forward and the gradients of its
  input and weights: 3 x the forward FLOPs;
- all-reduce: no FLOPs; bandwidth is ``size x bytes per element / time`` (algorithm
  bandwidth) and the bus bandwidth ``x 2 (n - 1) / n`` over ``n`` devices.

No NumPy and no framework here: the orchestrator and ``--help`` stay light.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parent / "suites"
KINDS = ("gemm", "sparse_gemm", "conv", "rnn", "allreduce")
DIRECTIONS = ("forward", "backward")
CELLS = {"lstm": 4, "gru": 3}  # gates per cell
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8}

# Shape fields of each kind: name -> type; every one required unless it has a default.
_MNK: dict[str, tuple[type, Any]] = {"m": (int, None), "n": (int, None), "k": (int, None)}
_FIELDS: dict[str, dict[str, tuple[type, Any]]] = {
    "gemm": {**_MNK, "transpose_a": (bool, False), "transpose_b": (bool, False)},
    "sparse_gemm": {**_MNK, "sparsity": (float, None)},
    "conv": {
        "n": (int, None),
        "c": (int, None),
        "h": (int, None),
        "w": (int, None),
        "k": (int, None),
        "r": (int, None),
        "s": (int, None),
        "pad": (int, 0),
        "stride": (int, 1),
    },
    "rnn": {"cell": (str, None), "hidden": (int, None), "batch": (int, None), "steps": (int, None)},
    "allreduce": {"size": (int, None)},
}
_DIRECTED = ("conv", "rnn")
_NOT_SCALED = {"r", "s", "pad", "stride", "sparsity", "cell", "transpose_a", "transpose_b"}


@dataclass(frozen=True)
class Kernel:
    """One benchmark: a kernel kind, its shape and the direction timed."""

    kind: str
    name: str
    shape: dict[str, Any] = field(default_factory=dict)
    direction: str = "forward"

    @property
    def label(self) -> str:
        return self.name if self.direction == "forward" else f"{self.name} ({self.direction})"

    @property
    def tags(self) -> set[str]:
        """What ``--ops`` matches: the kind, its family, the cell, the name, the label."""
        found = {self.kind, self.name, self.label, self.direction}
        if self.kind == "rnn":
            found.add(str(self.shape["cell"]))
        if self.kind == "allreduce":
            found.add("all-reduce")
        if self.kind == "sparse_gemm":
            found.add("sparse")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "shape": dict(self.shape),
            "direction": self.direction,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Kernel:
        return cls(data["kind"], data["name"], dict(data["shape"]), data["direction"])


@dataclass
class Suite:
    name: str
    description: str
    kernels: list[Kernel]
    source: str


# --- FLOPs ------------------------------------------------------------------------------


def conv_output(size: int, window: int, pad: int, stride: int) -> int:
    return (size + 2 * pad - window) // stride + 1


def nnz(shape: dict[str, Any]) -> int:
    """Non-zeros of a sparse GEMM's A."""
    return round((1.0 - float(shape["sparsity"])) * shape["m"] * shape["k"])


def forward_flops(kind: str, shape: dict[str, Any]) -> float | None:
    """FLOPs of one forward call (None for all-reduce)."""
    if kind == "gemm":
        return 2.0 * shape["m"] * shape["n"] * shape["k"]
    if kind == "sparse_gemm":
        return 2.0 * nnz(shape) * shape["n"]
    if kind == "conv":
        p = conv_output(shape["h"], shape["r"], shape["pad"], shape["stride"])
        q = conv_output(shape["w"], shape["s"], shape["pad"], shape["stride"])
        return 2.0 * shape["n"] * shape["k"] * p * q * shape["c"] * shape["r"] * shape["s"]
    if kind == "rnn":
        hidden = shape["hidden"]
        gates = CELLS[shape["cell"]]
        return 2.0 * gates * shape["batch"] * shape["steps"] * hidden * (hidden + hidden)
    return None


def flops(kernel: Kernel) -> float | None:
    """FLOPs of one call of ``kernel`` (backward: forward + gradients, 3 x forward)."""
    forward = forward_flops(kernel.kind, kernel.shape)
    if forward is None:
        return None
    return forward * (3.0 if kernel.direction == "backward" else 1.0)


def allreduce_bytes(kernel: Kernel, precision: str) -> int:
    return int(kernel.shape["size"]) * BYTES.get(precision, 4)


def bus_factor(devices: int) -> float:
    """Bus bandwidth / algorithm bandwidth of a ring all-reduce over ``devices``."""
    return 2.0 * (devices - 1) / devices if devices > 1 else 1.0


# --- reading ----------------------------------------------------------------------------


def _default_name(kind: str, shape: dict[str, Any]) -> str:
    if kind == "gemm":
        ops = ("T" if shape["transpose_a"] else "N") + ("T" if shape["transpose_b"] else "N")
        return f"gemm-{shape['m']}x{shape['n']}x{shape['k']}-{ops}"
    if kind == "sparse_gemm":
        return f"sparse-{shape['m']}x{shape['n']}x{shape['k']}-{shape['sparsity']:g}"
    if kind == "conv":
        s = shape
        return f"conv-{s['n']}x{s['c']}x{s['h']}x{s['w']}-k{s['k']}-{s['r']}x{s['s']}"
    if kind == "rnn":
        return f"{shape['cell']}-h{shape['hidden']}-b{shape['batch']}-t{shape['steps']}"
    return f"allreduce-{shape['size']}"


def _shape(kind: str, table: dict[str, Any], where: str) -> dict[str, Any]:
    fields = _FIELDS[kind]
    extra = set(table) - set(fields) - {"name", "directions"}
    if extra:
        raise UsageError(
            f"{where}: unknown field {sorted(extra)[0]!r} (fields: {', '.join(fields)})"
        )
    shape: dict[str, Any] = {}
    for key, (kind_of, default) in fields.items():
        if key not in table:
            if default is None:
                raise UsageError(f"{where}: missing {key!r}")
            shape[key] = default
            continue
        value = table[key]
        if kind_of is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
            raise UsageError(f"{where}: {key} = {value!r} is not a {kind_of.__name__}")
        shape[key] = value
    for key, value in shape.items():
        if isinstance(value, int) and not isinstance(value, bool):
            low = 0 if key == "pad" else 1
            if value < low:
                raise UsageError(f"{where}: {key} = {value} must be at least {low}")
    if kind == "sparse_gemm" and not 0.0 <= shape["sparsity"] < 1.0:
        raise UsageError(f"{where}: sparsity {shape['sparsity']} must be in [0, 1)")
    if kind == "rnn" and shape["cell"] not in CELLS:
        raise UsageError(f"{where}: cell {shape['cell']!r} is not one of {', '.join(CELLS)}")
    if kind == "conv":
        for size, window in (("h", "r"), ("w", "s")):
            if shape[size] + 2 * shape["pad"] < shape[window]:
                raise UsageError(f"{where}: the filter is larger than the padded input")
    return shape


def parse(data: dict[str, Any], source: str) -> Suite:
    """A suite from a parsed TOML document (UsageError naming the bad entry)."""
    unknown = set(data) - set(KINDS) - {"name", "description"}
    if unknown:
        raise UsageError(
            f"{source}: unknown table {sorted(unknown)[0]!r} (kinds: {', '.join(KINDS)})"
        )
    kernels: list[Kernel] = []
    seen: set[str] = set()
    for kind in KINDS:
        tables = data.get(kind, [])
        if not isinstance(tables, list):
            raise UsageError(f"{source}: {kind} must be an array of tables ([[{kind}]])")
        for index, table in enumerate(tables):
            where = f"{source}: {kind}[{index}]"
            if not isinstance(table, dict):
                raise UsageError(f"{where}: not a table")
            shape = _shape(kind, table, where)
            name = str(table.get("name") or _default_name(kind, shape))
            if name in seen:
                raise UsageError(f"{where}: the name {name!r} is used twice")
            seen.add(name)
            directions = table.get(
                "directions", list(DIRECTIONS) if kind in _DIRECTED else ["forward"]
            )
            if not isinstance(directions, list) or not directions:
                raise UsageError(f"{where}: directions must be a non-empty list")
            for direction in directions:
                if direction not in DIRECTIONS or (
                    kind not in _DIRECTED and direction != "forward"
                ):
                    raise UsageError(f"{where}: direction {direction!r} is not available")
                kernels.append(Kernel(kind, name, shape, direction))
    if not kernels:
        raise UsageError(f"{source}: the suite lists no kernel")
    return Suite(
        str(data.get("name") or Path(source).stem),
        str(data.get("description", "")),
        kernels,
        source,
    )


def builtin() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file."""
    path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(
                f"no suite {name_or_path!r}: built-in suites are {', '.join(builtin())}, "
                "or give a TOML file"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the suite {path}: {exc}") from None
    return parse(data, str(path))


def select(kernels: list[Kernel], ops: str | None) -> list[Kernel]:
    """The kernels ``--ops`` names (comma-separated kinds, cells, names); all for None."""
    if not ops:
        return list(kernels)
    wanted = [w.strip() for w in ops.split(",") if w.strip()]
    chosen = [k for k in kernels if any(w in k.tags for w in wanted)]
    matched = {w for w in wanted if any(w in k.tags for k in kernels)}
    missing = [w for w in wanted if w not in matched]
    if missing:
        raise UsageError(
            f"--ops {missing[0]!r} matches no kernel of the suite (kinds: {', '.join(KINDS)}, "
            "lstm, gru, or a kernel's name)"
        )
    return chosen


def scaled(kernel: Kernel, factor: float) -> Kernel:
    """``kernel`` with every size multiplied by ``factor`` (at least 1; filters, padding,
    stride and sparsity kept; convolution inputs kept at least as large as the filter)."""
    if factor == 1.0:
        return kernel
    shape = dict(kernel.shape)
    for key, value in shape.items():
        if key in _NOT_SCALED or isinstance(value, bool) or not isinstance(value, int):
            continue
        shape[key] = max(1, math.ceil(value * factor))
    if kernel.kind == "conv":
        shape["h"] = max(shape["h"], shape["r"])
        shape["w"] = max(shape["w"], shape["s"])
    return Kernel(kernel.kind, kernel.name, shape, kernel.direction)


def sets(kernels: list[Kernel]) -> list[tuple[str, list[Kernel]]]:
    """The kernels grouped by kind in suite order: each set runs in one worker process."""
    grouped: dict[str, list[Kernel]] = {}
    for kernel in kernels:
        grouped.setdefault(kernel.kind, []).append(kernel)
    return [(kind, grouped[kind]) for kind in KINDS if kind in grouped]
