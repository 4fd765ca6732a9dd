"""The worker: one repeat of one run, inside the framework's interpreter.

Started by the orchestrator as ``python -m harness.run.worker JOB.json`` (through a
launcher). Reads the job (a :class:`Job`: exactly what this module reads), builds the
network and the data, loads the backend's trainer (the only place a framework gets
imported), runs the benchmark loop and reports everything as events. Exit codes: 0 ok,
1 error, 3 out of memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import datasets, models
from harness.backend import Inferencer, Trainer, WorkerContext
from harness.cpu import available_cores
from harness.datasets import DatasetError
from harness.plugins import PluginManager
from harness.run import denormals, lifeline
from harness.run.events import Emitter
from harness.run.loop import Diverged, run_benchmark
from harness.run.task import task_for
from harness.spec import RunSpec

if TYPE_CHECKING:
    from harness.models import Network

EXIT_OK, EXIT_ERROR, EXIT_OOM = 0, 1, 3


@dataclass(frozen=True)
class Job:
    """One repeat's orders to its worker processes, as written to ``job.json``.

    It holds exactly what the worker reads, and the worker reads all of it. The GPUs
    reach the worker through its environment (``CUDA_VISIBLE_DEVICES``), the run's
    data-parallel devices in all through ``spec.total_devices`` (every node's),
    a multi-node run's layout through the node process's variables (:func:`node_layout`).
    """

    spec: RunSpec
    local_devices: int = 1  # data-parallel devices each process drives
    events: str | None = None  # the events file; None: events are dropped
    repeat: int = 1  # names the weights dump_weights saves
    model_file: str | None = None  # inference: the model file (harness.run.inference)
    export: bool = False  # inference: write model_file instead of benchmarking it

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "local_devices": self.local_devices,
            "events": self.events,
            "repeat": self.repeat,
            "model_file": self.model_file,
            "export": self.export,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """The job of ``data``; a key the worker would not read is an error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"the job holds keys the worker does not read: {unknown}")
        fields = {k: data[k] for k in names if k in data}
        fields["spec"] = RunSpec.from_dict(data["spec"])
        return cls(**fields)


def _rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (RANK and WORLD_SIZE)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def build_network(spec: RunSpec) -> Network:
    """The spec's network, for its dataset's images (resized by --image-size)."""
    info = datasets.resized_info(datasets.DATASETS[spec.dataset], spec.image_size)
    return models.build(spec.model, info.image_shape, info.num_classes)


def open_split(spec: RunSpec, split: str, *, synthetic: bool | None, seed: int = 0) -> Any:
    """One split of the spec's dataset, as the worker reads it (a ``datasets`` source)."""
    workers = available_cores() if spec.data_workers is None else spec.data_workers
    return datasets.open_source(
        spec.dataset,
        split,
        spec.data_dir,
        synthetic=synthetic,
        seed=seed,
        num_workers=workers,
        image_size=spec.image_size,
    )


def build_context(job: Job, rank: int, world_size: int) -> WorkerContext:
    """A training repeat's context: the network, the train split and, when the run
    validates, the test split."""
    spec = job.spec
    network = build_network(spec)
    # Every process opens the train split with the SAME seed, so all draw the same
    # permutation per epoch; the loop reads this rank's shard of it (strict partition).
    train = open_split(spec, "train", synthetic=spec.synthetic, seed=spec.seed)
    wants_validation = spec.validate or (
        spec.validate is None and spec.epochs and not train.synthetic
    )
    test = open_split(spec, "test", synthetic=train.synthetic) if wants_validation else None
    return WorkerContext(
        spec=spec,
        network=network,
        train=train,
        test=test,
        initial_weights=lambda: models.init_weights(network, spec.seed),
        rank=rank,
        world_size=world_size,
        local_devices=job.local_devices,
        total_devices=spec.total_devices,
        **node_layout(),
    )


def node_layout() -> dict[str, Any]:
    """A multi-node run's layout from the node process's variables (harness.run.node):
    the WorkerContext fields nodes, node_rank, peers and coordinator; empty otherwise."""
    if "HARNESS_NODES" not in os.environ:
        return {}
    peers = os.environ.get("HARNESS_PEERS", "")
    return {
        "nodes": int(os.environ["HARNESS_NODES"]),
        "node_rank": int(os.environ.get("HARNESS_NODE_RANK", "0")),
        "peers": tuple(p for p in peers.split(",") if p),
        "coordinator": os.environ.get("HARNESS_COORDINATOR") or None,
    }


def dump_weights(trainer: Trainer, folder: Path, job: Job, rank: int) -> None:
    """Saves each replica's weights as repeat<R>-rank<r>-replica<i>.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, state in enumerate(trainer.replica_states()):
        name = f"repeat{job.repeat}-rank{rank}-replica{index}.npz"
        np.savez(folder / name, **state)


def _is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, DatasetError)


def report_failure(
    emitter: Emitter, exc: BaseException, is_out_of_memory: Callable[[BaseException], bool]
) -> int:
    """Emits the ``error`` event of a failed worker, prints its traceback to the log and
    returns the worker's exit code (out of memory, error, or 130 for Ctrl-C)."""
    # A malformed data file (even one that made NumPy raise MemoryError) is an
    # error of the data, never the model's out-of-memory.
    oom = not _is_data_error(exc) and is_out_of_memory(exc)
    kind = "diverged" if isinstance(exc, Diverged) else "oom" if oom else "error"
    emitter.emit(
        "error",
        kind=kind,
        type=type(exc).__name__,
        message=str(exc)[:4000],
        traceback=traceback.format_exc()[-8000:],
    )
    traceback.print_exc()
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return EXIT_OOM if oom else EXIT_ERROR


def close_quietly(runner: Trainer | Inferencer | None) -> None:
    """``runner.close()``; a failure to release is printed, never raised."""
    if runner is None:
        return
    try:
        runner.close()
    except Exception:
        traceback.print_exc()


def run_job(job: Job) -> int:
    """One repeat of the job's task (harness.run.task): training or inference."""
    return task_for(job.spec.task).run_job(job)


def train_job(job: Job) -> int:
    """One training repeat: the backend's trainer driven by the loop."""
    rank, world_size = _rank()
    emitter = Emitter(job.events, rank=rank)

    def train(held: Held) -> None:
        emitter.emit("phase", name="setup", state="start")
        ctx = build_context(job, rank, world_size)
        backend = PluginManager().backend(ctx.spec.tool)
        emitter.emit(
            "data",
            split="train",
            synthetic=ctx.train.synthetic,
            description=ctx.train.description,
            images=ctx.train.num_images,
        )
        held.cls = backend.load_trainer()
        held.runner = trainer = held.cls(ctx)
        emitter.emit(
            "start",
            pid=os.getpid(),
            world_size=world_size,
            denormals=denormals.state(),  # what holds once the framework has started
            **trainer.framework_info(),
        )
        emitter.emit("phase", name="setup", state="end")
        run_benchmark(trainer, ctx, emitter)
        if ctx.spec.dump_weights:
            dump_weights(trainer, Path(ctx.spec.dump_weights), job, rank)

    return guarded(emitter, train, Trainer)


@dataclass
class Held:
    """The runner (trainer or inferencer) a repeat's body builds, and its class (for
    telling an out-of-memory failure from another)."""

    cls: type[Trainer] | type[Inferencer]
    runner: Trainer | Inferencer | None = None


def guarded(
    emitter: Emitter,
    body: Callable[[Held], None],
    base: type[Trainer] | type[Inferencer],
) -> int:
    """Runs one repeat's ``body``: the "end" event and EXIT_OK when it returns; the
    failure's event and exit code when it raises; its runner closed and the events
    flushed either way."""
    held = Held(base)
    try:
        body(held)
        emitter.emit("end", status="ok")
        return EXIT_OK
    except BaseException as exc:
        return report_failure(emitter, exc, held.cls.is_out_of_memory)
    finally:
        close_quietly(held.runner)
        emitter.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    lifeline.guard_worker()  # die with the orchestrator, even after its kill -9
    if len(args) != 1:
        print("usage: python -m harness.run.worker JOB.json", file=sys.stderr)
        return 2
    job = Job.from_dict(json.loads(Path(args[0]).read_text()))
    denormals.apply(job.spec.denormals)  # before any framework starts a thread
    return run_job(job)


if __name__ == "__main__":
    sys.exit(main())
