"""What a backend plugin provides: a description for the orchestrator, a trainer for the worker.

The orchestrator only ever sees :class:`BackendInfo` (plain data). The worker imports
``BackendInfo.trainer`` (a ``"module:Class"`` reference) inside the framework's
interpreter, and drives it through the methods of :class:`Trainer`.

Everything here is part of the plugin API (harness.hookspecs.PLUGIN_API_VERSION):
within a major version, what a later minor version adds has a default, so a plugin
written against an older minor keeps working. Each class says which of its fields and
methods were added after the first version (1.0); docs/plugins.md lists them all.
"""

from __future__ import annotations

import abc
import difflib
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.errors import UsageError

if TYPE_CHECKING:  # only for type checkers: the core does not import numpy here
    from pathlib import Path

    import numpy as np

    from harness.datasets import Source
    from harness.launchers import Launcher
    from harness.models import Network
    from harness.spec import RunSpec

PRECISIONS = ("fp32", "fp16", "bf16")

# The training recipe every backend implements identically: plain SGD with momentum,
# no weight decay, softmax cross-entropy on integer labels, learning rate from the spec.
SGD_MOMENTUM = 0.9


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
OPTION_TYPES = ("bool", "int", "float", "str")


@dataclass(frozen=True)
class Option:
    """One backend option (``-o NAME=VALUE`` on the command line, ``options`` in sweeps).

    ``type`` is one of bool, int, float, str; ``choices`` limits a str option's values
    (``any_value`` lets one accept other values too, e.g. a path beside on/off).

    Plugin API 1.1 (the whole class; ``name``, ``type``, ``default`` and ``help`` are
    required)."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    any_value: bool = False

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: type must be one of {OPTION_TYPES}")

    def parse(self, value: str) -> Any:
        """``value`` as this option's type; raises UsageError naming what is accepted."""
        text = str(value).strip()
        wrong = f"-o {self.name}={value}: "
        if self.type == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise UsageError(wrong + "expected true or false")
        if self.type == "int":
            try:
                return int(text)
            except ValueError:
                raise UsageError(wrong + "expected a whole number") from None
        if self.type == "float":
            try:
                number = float(text)
            except ValueError:
                raise UsageError(wrong + "expected a number") from None
            if not math.isfinite(number):
                raise UsageError(wrong + "expected a finite number")
            return number
        if self.choices and not self.any_value and text.lower() not in self.choices:
            raise UsageError(wrong + f"choose from: {', '.join(self.choices)}")
        return text


def check_options(info: BackendInfo, options: Mapping[str, Any]) -> None:
    """Checks ``-o`` options against the backend's declarations (UsageError, one line).

    A backend that declares none (``options=None``, e.g. an older plugin) is not checked."""
    if info.options is None:
        return
    declared = {o.name: o for o in info.options}
    for key, value in options.items():
        option = declared.get(key)
        if option is None:
            names = ", ".join(sorted(declared)) or "none"
            near = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(
                f"{info.name} has no option {key!r}{hint}; its options: {names} "
                "(python -m harness list --options)"
            )
        option.parse(str(value).lower() if isinstance(value, bool) else str(value))


def compile_options(info: BackendInfo, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as ``--compile`` asks them of ``info``: its ``compile_option`` turned on
    (a backend that always compiles: unchanged). UsageError, one line, where the backend
    cannot compile or ``options`` turns its compile option off."""
    out = dict(options)
    name = info.compile_option
    if name:
        given = out.get(name)
        if given is not None and str(given).strip().lower() in _FALSE:
            raise UsageError(
                f"--compile turns on -o {name}=true for {info.name}; this run also gives "
                f"-o {name}={str(given).lower()}: keep one"
            )
        out.setdefault(name, "true")
        return out
    if info.always_compiles:
        return out
    raise UsageError(
        f"{info.name} cannot compile its training step (it declares no compile option): "
        "leave --compile out"
    )


def compile_note(info: BackendInfo) -> str:
    """What ``--compile`` does on ``info`` (a backend :func:`compile_options` accepts)."""
    if info.compile_option:
        option = next((o for o in info.options or () if o.name == info.compile_option), None)
        what = f": {option.help}" if option else ""
        return f"--compile: {info.name} -o {info.compile_option}=true{what}"
    return f"--compile: {info.name} compiles every run anyway ({info.always_compiles})"


@dataclass(frozen=True)
class BackendInfo:
    """One tool (``--tool NAME``) as registered by a plugin.

    Plugin API 1.0: ``name``, ``framework``, ``requires``, ``install_hint`` and
    ``trainer`` (required), ``multi_process_launcher``, ``precisions``, ``description``
    and ``worker_env``. Added in 1.1, all with defaults: ``run_env``, ``options``,
    ``tasks``, ``inferencer``, ``node_launcher``, ``node_processes`` and
    ``multi_node_refusal``. Added in 1.2, with defaults: ``compile_option`` and
    ``always_compiles`` (what ``--compile`` means; with neither it is refused).
    """

    name: str  # the --tool value
    framework: str  # human name of the framework
    requires: tuple[str, ...]  # import names the interpreter must have
    install_hint: str  # one command that installs the framework for this backend
    trainer: str  # "module:Class" implementing Trainer, imported only in the worker
    # Launcher used when a run drives more than one process (see harness.launchers).
    multi_process_launcher: str | None = None
    precisions: tuple[str, ...] = ("fp32",)
    description: str = ""
    # Extra environment variables for the worker, e.g. to switch off GPU preallocation.
    worker_env: dict[str, str] = field(default_factory=dict)
    # Variables that depend on the run (e.g. XLA_FLAGS for N host devices), computed in
    # the orchestrator before the worker starts. Must not import the framework.
    run_env: Callable[[RunSpec], dict[str, str]] | None = None
    # The options it reads from ``-o KEY=VALUE``; None: not declared (not checked).
    options: tuple[Option, ...] | None = None
    # What it can run: "train" (the training run) and/or "inference"; an inference-only
    # backend is refused for training with one line.
    tasks: tuple[str, ...] = ("train",)
    # "module:Class" implementing Inferencer, imported only in the worker; a backend
    # with one lists "inference" in ``tasks``.
    inferencer: str | None = None
    # --nodes N: the launcher that starts one node's workers (harness.launchers), e.g.
    # a plugin's, or "local" (the node process starts them with RANK, WORLD_SIZE...);
    # None: the backend cannot train over several nodes (refused with one line).
    node_launcher: str | None = None
    # --nodes N: worker processes per node (None: the run's devices on a node when the
    # backend has a multi_process_launcher, else one); each drives devices / processes.
    node_processes: Callable[[RunSpec], int] | None = None
    # --nodes N refused: why, in a few words (shown after "<tool> cannot train on
    # several nodes: ")
    multi_node_refusal: str = ""
    # --compile (training): the bool option it turns on, for a backend that compiles its
    # train step on request (e.g. "compile"); -o NAME=false beside --compile is refused.
    compile_option: str | None = None
    # A backend that compiles its train step in every run: how, in a few words (--compile
    # is accepted and changes nothing). With neither field, --compile is refused.
    always_compiles: str = ""

    def load_trainer(self) -> type[Trainer]:
        return load_reference(self.trainer)

    def load_inferencer(self) -> type[Inferencer]:
        if not self.inferencer:
            raise UsageError(f"{self.name} has no inference task")
        return load_reference(self.inferencer)


def load_reference(reference: str) -> Any:
    """What a ``"module:attribute"`` reference names (a plain ``"module"``: the module),
    imported now: only in the process that may import the backend's framework."""
    module_name, _, attr = reference.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


@dataclass
class WorkerContext:
    """Everything a trainer needs, prepared by the worker.

    Built by the harness, read by plugins. Plugin API 1.0: ``spec`` to
    ``total_devices``, ``process_batch`` and ``global_batch``; added in 1.1: ``nodes``,
    ``node_rank``, ``peers`` and ``coordinator``.
    """

    spec: RunSpec
    network: Network
    train: Source
    test: Source | None
    initial_weights: Callable[[], dict[str, np.ndarray]]  # canonical state dict, drawn lazily
    rank: int = 0  # this process among the run's processes
    world_size: int = 1  # processes in the run
    local_devices: int = 1  # data-parallel devices this process drives
    total_devices: int = 1  # data-parallel devices in the whole run
    nodes: int = 1  # nodes of the run (harness.run.node starts each node's processes)
    node_rank: int = 0  # the node this process runs on
    # HOST:PORT of each process of a multi-node run (rank order), from HARNESS_PEERS;
    # and the coordinator's HOST:PORT (process 0's host), from HARNESS_COORDINATOR
    peers: tuple[str, ...] = ()
    coordinator: str | None = None

    @property
    def process_batch(self) -> int:
        """Images one step of this process consumes."""
        return self.spec.batch_size * self.local_devices

    @property
    def global_batch(self) -> int:
        """Images one training step consumes across all devices."""
        return self.spec.batch_size * self.total_devices


class _FrameworkSide(abc.ABC):
    """What a backend's :class:`Trainer` and :class:`Inferencer` have in common: the
    worker's context, out-of-memory recognition and ``close``."""

    #: Substrings of an exception's text that mean "out of memory" in this framework.
    oom_markers: Sequence[str] = ("out of memory", "OOM", "RESOURCE_EXHAUSTED", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def framework_info(self) -> dict[str, Any]:
        """Framework name, version and the devices used (an inferencer's: its settings
        too), recorded in the result."""
        raise NotImplementedError

    @classmethod
    def is_out_of_memory(cls, exc: BaseException) -> bool:
        """Whether ``exc`` means the device (or host) ran out of memory."""
        text = f"{type(exc).__name__}: {exc}"
        return isinstance(exc, MemoryError) or any(m in text for m in cls.oom_markers)

    def close(self) -> None:
        """Release framework resources (process groups, sessions)."""
        return None  # optional: nothing to do by default


class Trainer(_FrameworkSide):
    """Base class of every backend's trainer. Subclasses import their framework.

    Required (abstract: a trainer that lacks one cannot be built), the core contract
    since plugin API 1.0: ``framework_info``, ``device_batch``, ``train_step``,
    ``loss_value`` and ``evaluate``.

    With a default, since 1.0: ``synchronize`` (a no-op, for frameworks whose steps
    block; a framework that queues work asynchronously must override it, or queued work
    is timed as done and the throughput inflated), ``memory_peak``, ``state_dict``
    (raises NotImplementedError; only weight dumps and parity checks read it),
    ``is_out_of_memory``, ``oom_markers``, ``layout`` and ``close``. Added in 1.1, all
    with defaults: ``prepare_evaluation``, ``reset_state``, ``all_reduce_sum``,
    ``device_step_times`` and ``replica_states``. Added in 1.2, with a default:
    ``prepare_training``.

    The worker's loop calls, in order: ``framework_info``; ``prepare_evaluation`` in
    setup when the run validates; ``prepare_training`` on the first batch; for every
    step ``device_batch`` and ``train_step``, ``synchronize`` before reading a clock;
    ``reset_state`` after warmup in epochs mode;
    ``evaluate`` during validation, its sums reduced over the processes with
    ``all_reduce_sum``; and ``memory_peak`` at the end.

    Data semantics with several devices: every process reads its shard of the same
    per-epoch permutation (``Source.batches(..., shard=(rank, world_size))``), of
    ``process_batch`` images per step; a trainer driving several devices splits each
    batch (training and evaluation) into contiguous parts of ``batch_size`` images, one
    per device, in device order, and reduces the evaluation sums over its devices.

    Optional methods added in 1.1, with their defaults here:

    - ``prepare_evaluation()``: compile or trace the evaluation step now, for batches
      of ``process_batch`` images, so no validation pays for it (no-op).
    - ``reset_state()``: weights, batch-norm statistics and optimiser state (momentum,
      loss scale, step counters) back to ``ctx.initial_weights()`` and a fresh
      optimiser (raises NotImplementedError: every built-in backend implements it; only
      ``--epochs`` runs call it, so a trainer without it trains in steps mode only).
    - ``all_reduce_sum(values)``: element-wise sums over the run's processes (identity
      for a single process).
    - ``device_step_times()``: per-step device times measured without draining the
      queue (e.g. CUDA events), or None.
    """

    @abc.abstractmethod
    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        """Move one host batch (NCHW or NHWC as ``layout``) to the device(s)."""
        raise NotImplementedError

    @abc.abstractmethod
    def train_step(self, batch: Any) -> Any:
        """Run one optimiser step; return a token (e.g. the loss) to synchronise on."""
        raise NotImplementedError

    def synchronize(self, token: Any) -> None:
        """Block until the work behind ``token`` has finished on the device.

        The default does nothing: right for frameworks whose steps block (they return
        when the work is done). Override it when steps are asynchronous (CUDA, XLA,
        an engine's queue), or the loop times queued work as done. Not abstract, as in
        plugin API 1.0, where it had this default too.
        """
        return None  # steps that block have nothing left to wait for

    @abc.abstractmethod
    def loss_value(self, token: Any) -> float:
        """The loss behind ``token`` as a Python float (synchronises)."""
        raise NotImplementedError

    @abc.abstractmethod
    def evaluate(self, batch: Any) -> tuple[float, int]:
        """Summed loss and number of correct predictions over one batch, in inference mode.

        The batch is split across this process's devices as in training and the sums
        are over all of them. Multi-process backends may synchronise here (e.g. to
        broadcast rank 0's batch-norm statistics once after training), so every rank
        evaluates the same number of batches: the loop reads whole global batches."""
        raise NotImplementedError

    def prepare_evaluation(self) -> None:
        """Compile or trace the evaluation step for ``process_batch`` images, now.

        Called by the loop in setup, before warmup, when the run will validate, and
        timed on its own (the ``eval_compile`` event), so validation time excludes it.
        """
        return None  # optional: nothing to do by default

    def prepare_training(self, batch: Any) -> bool:
        """Compile or trace the training step for ``batch`` (a device batch) now, without
        running it: the trainer's state must not change.

        Called by the loop in setup, before warmup, and timed on its own (the
        ``compile`` event), so compilation is reported apart from warmup and the timed
        phase. Return True when the step was compiled ahead; False (the default) when the
        backend compiles lazily, at its first step: the loop then estimates compilation
        as the first step less a steady step. Optional (plugin API 1.2).
        """
        return False  # optional: nothing compiled ahead by default

    def reset_state(self) -> None:
        """Weights, batch-norm statistics and optimiser state back to their initial values.

        Called after warmup in epochs mode, so "accuracy after E epochs" means E epochs.
        After it, the trainer behaves exactly as a freshly built one (same next step).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot reset its state")

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over the run's processes (every rank calls it)."""
        return list(values)

    def device_step_times(self) -> list[float] | None:
        """Per-step device times in seconds, recorded by device-side timers that do not
        drain the queue (CUDA events), or None where the backend has none.

        The loop calls it after each synchronised window and reads the list as the
        device times of the steps run since the previous call."""
        return None

    def memory_peak(self) -> dict[str, Any] | None:
        """The framework allocator's peak, e.g. {"allocator": "...", "peak_bytes": n}."""
        return None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Current weights in the canonical layout of harness.models.init."""
        raise NotImplementedError

    def replica_states(self) -> list[dict[str, np.ndarray]]:
        """The weights held by each data-parallel replica this process drives.

        Single-device trainers have one; a trainer driving several devices in one
        process (a mirrored strategy, a device mesh, a list of contexts) returns one per device,
        so tests can check that the replicas stayed in sync.
        """
        return [self.state_dict()]

    #: Memory layout of the images the trainer wants from the data source.
    layout: str = "NCHW"


class Inferencer(_FrameworkSide):
    """Runs a backend's inference in the worker. Subclasses import their framework.

    Plugin API 1.1 (the whole class). Required (abstract), the core contract since it
    was added: ``framework_info``, ``export``, ``load``, ``device_batch``, ``infer``,
    ``synchronize`` and ``to_numpy``. With defaults: ``prepare``, ``memory_peak``,
    ``is_out_of_memory``, ``oom_markers``, ``suffix`` and ``close``. (``synchronize``
    stays abstract here: no released Inferencer lacked it.)

    The inference run calls ``export`` once per run, in its own fresh process (untimed);
    then, in every repeat's fresh worker: ``framework_info``; ``load`` (timed: load);
    ``prepare`` (timed: session); then per batch ``device_batch`` (untimed), ``infer``
    and ``synchronize`` before reading a clock; ``to_numpy`` for accuracy; and
    ``memory_peak`` at the end. Images arrive NCHW float32, normalised as for training.
    """

    #: The model file's name ending in the framework's own format, e.g. ".pt".
    suffix: str = ""

    @abc.abstractmethod
    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        """Write the network with these canonical weights to ``path`` in the framework's
        own format (untimed, once per run, in its own fresh process)."""
        raise NotImplementedError

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Read the file into a ready-to-run model on the device (timed: load)."""
        raise NotImplementedError

    def prepare(self, batch_size: int) -> None:
        """Session creation, compilation or tracing for this batch size (timed: session)."""
        return None  # optional: nothing to do by default

    @abc.abstractmethod
    def device_batch(self, images: np.ndarray) -> Any:
        """Host images to the device, untimed (I/O binding on GPUs)."""
        raise NotImplementedError

    @abc.abstractmethod
    def infer(self, batch: Any) -> Any:
        """One forward pass in inference mode; the output may stay on the device."""
        raise NotImplementedError

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Block until the queued device work has finished."""

    @abc.abstractmethod
    def to_numpy(self, output: Any) -> np.ndarray:
        """The logits on the host, shape (batch, classes)."""
        raise NotImplementedError

    def memory_peak(self) -> dict[str, Any] | None:
        """The framework allocator's peak, e.g. {"allocator": "...", "peak_bytes": n}."""
        return None


class ModelFileError(Exception):
    """A user's model file a backend cannot run (corrupt, or an input it does not
    support); the message is one line for the user. Plugin API 1.2."""


class ParityProbe:
    """What ``verify`` (harness.run.parity) asks a backend beyond its Trainer, in the
    parity process (the backend's interpreter): named by the harness_parity_probe hook
    and built without arguments. Plugin API 1.2; only :meth:`forward` is required.

    The float64 test mode runs the backend's own Trainer in float64, so that its steps
    can be compared with the NumPy reference much more tightly than float32 allows.
    """

    #: Batch norm blends the biased batch variance into its running variance (the
    #: reference is then run with ``unbiased=False``); False: the unbiased one.
    biased_running_var: bool = False
    #: Relative tolerance of the float64 steps, per tensor (models.parity.FLOAT64_TOLERANCE
    #: unless the framework's float64 kernels fall short of it).
    float64_tolerance: float = 1e-6

    def forward(
        self, network: Network, weights: dict, images: np.ndarray, training: bool, gpu: bool
    ) -> np.ndarray:
        """The logits of the backend's network for NCHW ``images`` with the canonical
        ``weights`` (``training``: dropout aside, training-mode batch norm), on the
        first GPU when ``gpu``, as a NumPy array."""
        raise NotImplementedError

    def float64_steps(self, network: Network, steps: int) -> int:
        """How many of a reference case's ``steps`` the float64 test mode runs for
        ``network`` (0: none, the default: the backend has no float64 test mode, or not
        for this network)."""
        return 0

    def float64(self, trainer: Trainer) -> Callable[[], dict]:
        """Turns a freshly built ``trainer`` to float64 in place (its weights, buffers
        and the batches of ``device_batch``) and returns a function that reads its
        canonical state in float64. Called only where :meth:`float64_steps` is positive."""
        raise NotImplementedError

    def tf32(self) -> bool | None:
        """Whether the framework may compute float32 matmuls or convolutions in TF32 on
        the GPU (None: unknown)."""
        return None


class BackendPlugin:
    """The hooks of a plugin that provides one backend, from a declaration of its parts:
    register an instance (an entry point may name it, ``mytool = my_package:PLUGIN``)
    instead of writing each hook. Each part is optional and named the way its hook
    returns it (harness.hookspecs): ``parity`` ``"module:Class"``, ``ops`` a module,
    ``loaders`` and ``exporters`` ``{format: "module:function"}``, ``launchers`` the
    Launchers it registers, ``refuse(spec, network)`` why it cannot run a spec (or
    None). Plugin API 1.2."""

    def __init__(
        self,
        info: BackendInfo,
        *,
        parity: str | None = None,
        ops: str | None = None,
        loaders: Mapping[str, str] | None = None,
        exporters: Mapping[str, str] | None = None,
        launchers: Sequence[Launcher] = (),
        refuse: Callable[[RunSpec, Network], str | None] | None = None,
    ) -> None:
        self.info = info
        self.parity, self.ops = parity, ops
        self.loaders, self.exporters = dict(loaders or {}), dict(exporters or {})
        self.launchers, self.refuse = tuple(launchers), refuse

    def _mine(self, backend: BackendInfo) -> bool:
        return backend.name == self.info.name

    @hookimpl
    def harness_register_backends(self, register: Callable[[BackendInfo], None]) -> None:
        register(self.info)

    @hookimpl
    def harness_register_launchers(self, register: Callable[[Launcher], None]) -> None:
        for launcher in self.launchers:
            register(launcher)

    @hookimpl
    def harness_refuse_run(
        self, spec: RunSpec, backend: BackendInfo, network: Network
    ) -> str | None:
        return self.refuse(spec, network) if self.refuse and self._mine(backend) else None

    @hookimpl
    def harness_parity_probe(self, backend: BackendInfo) -> str | None:
        return self.parity if self._mine(backend) else None

    @hookimpl
    def harness_ops_kernels(self, backend: BackendInfo) -> str | None:
        return self.ops if self._mine(backend) else None

    @hookimpl
    def harness_model_loader(self, backend: BackendInfo, format: str) -> str | None:
        return self.loaders.get(format) if self._mine(backend) else None

    @hookimpl
    def harness_model_exporter(self, backend: BackendInfo, format: str) -> str | None:
        return self.exporters.get(format) if self._mine(backend) else None
