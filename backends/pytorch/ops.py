"""PyTorch kernels of the operation benchmarks (harness.ops); imported only in the worker.

GEMM: ``torch.matmul`` on (transposed views of) the stored matrices; sparse GEMM:
``torch.sparse.mm`` of a CSR tensor (``torch.sparse_csr_tensor``) and a dense one;
convolution: ``torch.nn.functional.conv2d``; LSTM/GRU: ``torch.nn.LSTM``/``GRU`` (one
layer, input size = hidden); backward: ``torch.autograd.backward`` after the forward,
gradients of the input and the weights. All-reduce: ``torch.distributed.all_reduce``
over gloo (CPU) or NCCL (GPUs), one process per device, rank 0 in the worker and its
peers started with ``torch.multiprocessing``; rank 0 tells the peers how many calls each
window has before its clock starts.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import torch

from harness.ops import building
from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_state: dict[str, Any] = {}


def setup(job: dict[str, Any]) -> dict[str, Any]:
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    device = "cuda" if job["device"] == "gpu" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available to PyTorch")
    _state["device"] = torch.device(device)
    return {
        "name": "PyTorch",
        "version": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def _sync(_token: Any = None) -> None:
    if _state["device"].type == "cuda":
        torch.cuda.synchronize()


def _to(array: np.ndarray, precision: str, grad: bool = False) -> torch.Tensor:
    tensor = torch.from_numpy(array).to(_state["device"], _DTYPES[precision])
    return tensor.requires_grad_(grad)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.float().cpu().numpy()


_DEVICE = building.Device(_to, _numpy, _sync)


def _gemm(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    def multiply(a: torch.Tensor, b: torch.Tensor, ta: bool, tb: bool) -> Any:
        op_a, op_b = (a.t() if ta else a), (b.t() if tb else b)
        return lambda: torch.matmul(op_a, op_b)

    return building.gemm(kernel, precision, _DEVICE, multiply, "torch.matmul")


def _sparse(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    rows, cols, values, b_np = k.sparse_inputs(kernel)
    s = kernel.shape
    coo = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(values), (s["m"], s["k"])
    ).coalesce()
    a = coo.to_sparse_csr().to(_state["device"], _DTYPES[precision])
    b = _to(b_np, precision)
    building.probe(
        lambda: torch.sparse.mm(a, b),
        (RuntimeError, NotImplementedError),
        f"torch.sparse.mm (CSR, {precision})",
    )

    def call() -> torch.Tensor:
        return torch.sparse.mm(a, b)

    def check() -> float:
        expected = k.sparse_reference(kernel, rows, cols, values, b_np)
        return k.max_error(_numpy(call()), expected)

    detail = {
        "impl": "torch.sparse.mm (sparse CSR x dense)",
        "layout": str(a.layout),
        "nnz": int(a._nnz()),
    }
    return Bench(call, _sync, check=check, detail=detail)


def _conv(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    x_np, w_np = k.conv_inputs(kernel)
    backward = kernel.direction == "backward"
    x, w = _to(x_np, precision, backward), _to(w_np, precision, backward)
    pad, stride = kernel.shape["pad"], kernel.shape["stride"]

    def forward() -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, padding=pad, stride=stride)

    if backward:
        grad = torch.ones_like(forward())

        def call() -> Any:
            return torch.autograd.grad(forward(), (x, w), grad)

    else:

        def call() -> Any:
            with torch.no_grad():
                return forward()

    def check() -> float:
        with torch.no_grad():
            got = forward().float().cpu().numpy()
        return k.max_error(got, k.conv_reference(kernel, x_np, w_np))

    return Bench(call, _sync, check=check, detail={"impl": "torch.nn.functional.conv2d"})


def _rnn(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    s = kernel.shape
    cls = torch.nn.LSTM if s["cell"] == "lstm" else torch.nn.GRU
    torch.manual_seed(0)
    layer = cls(s["hidden"], s["hidden"]).to(_state["device"], _DTYPES[precision])
    backward = kernel.direction == "backward"
    x_np = k.rnn_inputs(kernel)
    x = _to(x_np, precision, backward)
    params = list(layer.parameters())

    def check() -> float:
        with torch.no_grad():
            got = layer(x)[0].float().cpu().numpy()
        p = {n: v.detach().float().cpu().numpy() for n, v in layer.named_parameters()}
        order = "ifgo" if s["cell"] == "lstm" else "rzn"
        expected = k.rnn_reference(
            x_np, p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"], p["bias_hh_l0"], order
        )
        return k.max_error(got, expected)

    if backward:

        def call() -> Any:
            out, _ = layer(x)
            return torch.autograd.grad(out.sum(), [x, *params])

    else:

        def call() -> Any:
            with torch.no_grad():
                return layer(x)[0]

    return Bench(call, _sync, check=check, detail={"impl": f"torch.nn.{cls.__name__}"})


# --- all-reduce ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peer(rank: int, world: int, port: int, backend: str, threads: int) -> None:
    """A peer of the all-reduce: follows rank 0's orders until told to stop."""
    import torch.distributed as dist

    torch.set_num_threads(threads)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    order = torch.zeros(4, dtype=torch.int64, device=device)
    tensor = None
    while True:
        dist.broadcast(order, 0)
        calls, size, code, ones = (int(v) for v in order.tolist())
        if calls < 0:
            break
        dtype = list(_DTYPES.values())[code]
        if tensor is None or tensor.numel() != size or tensor.dtype != dtype:
            tensor = torch.zeros(size, dtype=dtype, device=device)  # sums of zeros stay 0
        if ones:
            tensor.fill_(1.0)  # the check: every rank's ones sum to the world size
        for _ in range(calls):
            dist.all_reduce(tensor)
        if device.type == "cuda":
            torch.cuda.synchronize()
    dist.destroy_process_group()


def _group(devices: int) -> Any:
    """Starts the peers once per worker; rank 0 is this process."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if "group" in _state:
        return _state["group"]
    backend = "nccl" if _state["device"].type == "cuda" else "gloo"
    port = _free_port()
    context = mp.get_context("spawn")
    peers = [
        context.Process(
            target=_peer, args=(r, devices, port, backend, torch.get_num_threads()), daemon=True
        )
        for r in range(1, devices)
    ]
    for p in peers:
        p.start()
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=devices
    )
    _state["group"] = (backend, peers)
    return _state["group"]


def _allreduce(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    import torch.distributed as dist

    devices = int(job["devices"])
    if devices < 2:
        raise Unsupported("all-reduce needs two devices or more")
    backend, _ = _group(devices)
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    size = int(kernel.shape["size"])
    code = list(_DTYPES).index(precision)
    tensor = torch.zeros(size, dtype=_DTYPES[precision], device=device)
    order = torch.zeros(4, dtype=torch.int64, device=device)

    def begin(calls: int, ones: int = 0) -> None:
        order.copy_(torch.tensor([calls, size, code, ones]))
        dist.broadcast(order, 0)

    def call() -> None:
        dist.all_reduce(tensor)

    def check() -> float:
        begin(1, ones=1)
        tensor.fill_(1.0)
        call()
        _sync()
        return k.max_error(
            tensor[:1024].float().cpu().numpy(), np.full(min(size, 1024), float(devices))
        )

    return Bench(
        call,
        _sync,
        check=check,
        begin=begin,
        detail={"impl": f"torch.distributed.all_reduce ({backend})", "devices": devices},
    )


build = building.dispatcher(
    gemm=_gemm, sparse_gemm=_sparse, conv=_conv, rnn=_rnn, allreduce=_allreduce
)


def close() -> None:
    """Tells the peers to stop (called by the worker at the end of the set)."""
    if "group" not in _state:
        return
    import torch.distributed as dist

    backend, peers = _state.pop("group")
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    dist.broadcast(torch.tensor([-1, 0, 0, 0], dtype=torch.int64, device=device), 0)
    for p in peers:
        p.join(timeout=30)
    dist.destroy_process_group()
