"""The tasks a run can be: training and inference. A :class:`Task` owns what differs
per task, so no other module asks ``if spec.task == ...``:

- the options it accepts (:meth:`Task.check_spec`, from ``spec.resolve``) and which
  tools run it (:meth:`Task.tools`: the backend lists the task in ``BackendInfo.tasks``
  and names its class in the task's ``runner`` field, ``trainer`` or ``inferencer``);
- what the orchestrator checks before any worker starts (:meth:`Task.check_before_workers`),
  makes once per run (:meth:`Task.prepare`: inference writes the model file) and adds to
  a repeat's record and the run's summary (:meth:`Task.repeat_part`, :meth:`Task.finish`);
- how the worker runs it (:meth:`Task.run_job`: the training loop, or load, session,
  first inference and latency) and the metrics it reports (``metrics``).

``RunSpec.task`` stays the task's name (stored results read as before); code asks
``task_for(spec.task)``. A task's halves live in its ``module`` (harness.run.worker,
harness.run.inference), imported by name when first used: they import this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness import datasets
from harness.datasets import source
from harness.errors import InvalidValue, UsageError
from harness.run.paths import check_writable_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.run.worker import Job
    from harness.spec import RunSpec
    from harness.store.schema import RepeatRecord, RunSummary

    RunRepeat = Callable[..., RepeatRecord]


@dataclass(frozen=True)
class Task:
    """One task; subclasses say what differs. Instances: :data:`TRAINING`, :data:`INFERENCE`."""

    name: str  # RunSpec.task, --task, a sweep's ``task``
    trains: bool  # updates weights: --lr, --epochs, --validate, --dump-weights apply
    runner: str  # the BackendInfo field naming the class the worker runs
    spans_nodes: bool  # --nodes N applies
    cell_suffix: str  # appended to a sweep cell's key ("": training cells keep theirs)
    metrics: tuple[str, ...]  # the figures it reports (RunSummary / InferenceSummary fields)
    module: str  # where its halves live; they import this registry, so it is loaded by name

    def halves(self) -> ModuleType:
        """The task's module (``module``), imported on first use."""
        return importlib.import_module(self.module)

    def tools(self, tools: dict[str, Any]) -> list[str]:
        """The tools that run this task, sorted (``tools``: name -> BackendInfo)."""
        return sorted(
            name
            for name, info in tools.items()
            if self.name in getattr(info, "tasks", ("train",)) and getattr(info, self.runner, None)
        )

    def refusal(self, tool: str, tools: dict[str, Any]) -> str | None:
        """Why ``tool`` cannot run this task (one line), or None."""
        raise NotImplementedError

    def check_spec(self, spec: RunSpec, tools: dict[str, Any]) -> RunSpec:
        """The task's rules on the options, first thing in ``resolve`` (UsageError); an
        ``--onnx-file`` spec comes back resolved whole."""
        raise NotImplementedError

    def check_applies(self, spec: RunSpec) -> None:
        """Options given where they do nothing (UsageError naming the option): the
        hardware rules every task shares, and the other task's options."""
        if spec.gpu is not None and spec.num_gpus < 1:
            raise UsageError(
                f"--gpu {spec.gpu} picks the GPUs of --num-gpus N; this run is on the CPU "
                "(--num-gpus -1): give --num-gpus N or leave --gpu out"
            )
        if spec.launcher and spec.nodes <= 1:
            raise UsageError(
                f"--launcher {spec.launcher} says how --nodes N starts its nodes; this run "
                "has one node: give --nodes N or leave --launcher out"
            )
        if self.trains and spec.weights:
            raise UsageError(
                "--weights applies to inference (the weights it runs with); training starts "
                "from the initial weights of --seed"
            )
        if not self.trains and spec.learning_rate is not None:
            raise UsageError("--lr applies to training; an inference run updates no weights")
        if not self.trains and spec.compile:
            raise UsageError(
                "--compile applies to training (it compiles the train step); leave it out "
                "of an inference run"
            )

    def check_before_workers(self, spec: RunSpec) -> None:
        """What a worker would only find out after starting (UsageError)."""
        raise NotImplementedError

    def prepare(
        self, plan: Any, run_dir: Path, run_id: str, run_repeat: RunRepeat
    ) -> tuple[str | None, RepeatRecord | None]:
        """Once per run, before the repeats: (the model file the workers use, or None;
        the run's one failed record when nothing can run, else None)."""
        return None, None

    def repeat_part(self, events: list[dict[str, Any]], record: RepeatRecord) -> None:
        """Adds the task's own figures to a repeat's record."""

    def finish(self, summary: RunSummary, repeats: list[RepeatRecord]) -> None:
        """Adds the task's own figures to the run's summary (its FLOPs are counted)."""

    def run_job(self, job: Job) -> int:
        """The worker's part: one repeat; the worker's exit code."""
        raise NotImplementedError


@dataclass(frozen=True)
class Training(Task):
    def refusal(self, tool: str, tools: dict[str, Any]) -> str | None:
        if tool in self.tools(tools):
            return None
        tasks = getattr(tools[tool], "tasks", ("train",))
        return (
            f"{tool} runs {', '.join(tasks)} only, it cannot train; "
            f"tools that train: {', '.join(self.tools(tools)) or 'none installed'}"
        )

    def check_spec(self, spec: RunSpec, tools: dict[str, Any]) -> RunSpec:
        if spec.onnx_file:
            raise UsageError("--onnx-file benchmarks inference: give --task inference")
        self.check_applies(spec)
        return spec

    def check_before_workers(self, spec: RunSpec) -> None:
        info = datasets.DATASETS[spec.dataset]
        if spec.global_batch > info.train_size:
            per = f"--batch-size {spec.batch_size}" + (
                f" x {spec.total_devices} devices" if spec.total_devices > 1 else ""
            )
            raise UsageError(
                f"{per} = {spec.global_batch} images per step, but {spec.dataset}'s train "
                f"split has {info.train_size}; give a smaller --batch-size"
            )
        if not spec.synthetic:
            real = check_split_files(spec, "train", required=spec.synthetic is False)
            # the worker validates on the test split of real data (spec.validate, or by
            # default when training whole epochs): its files must be there too
            if real and (spec.validate or (spec.validate is None and spec.epochs)):
                check_split_files(spec, "test", required=True)
        if spec.dump_weights:
            check_writable_dir(spec.dump_weights, "--dump-weights")

    def run_job(self, job: Job) -> int:
        return self.halves().train_job(job)


@dataclass(frozen=True)
class Inference(Task):
    """The inference task; its two halves live in harness.run.inference."""

    def refusal(self, tool: str, tools: dict[str, Any]) -> str | None:
        if tool in self.tools(tools):
            return None
        have = ", ".join(self.tools(tools)) or "none installed"
        return f"{tool} has no inference task; tools that run inference: {have}"

    def check_spec(self, spec: RunSpec, tools: dict[str, Any]) -> RunSpec:
        self.check_applies(spec)
        return self.halves().check_spec(spec, tools)

    def check_before_workers(self, spec: RunSpec) -> None:
        self.halves().check_before_workers(spec)

    def prepare(
        self, plan: Any, run_dir: Path, run_id: str, run_repeat: RunRepeat
    ) -> tuple[str | None, RepeatRecord | None]:
        model_file, exported = self.halves().export_model(plan, run_dir, run_id, run_repeat)
        if exported is not None and not model_file:
            return None, self.halves().failed_export(exported)
        return model_file, None

    def repeat_part(self, events: list[dict[str, Any]], record: RepeatRecord) -> None:
        record.inference = self.halves().repeat_part(events, record)

    def finish(self, summary: RunSummary, repeats: list[RepeatRecord]) -> None:
        halves = self.halves()
        summary.inference = halves.summary_part(repeats)
        summary.flops = halves.inference_flops(summary.flops, summary.images_per_sec.mean)

    def run_job(self, job: Job) -> int:
        return self.halves().run_job(job)


TRAINING = Training(
    name="train",
    trains=True,
    runner="trainer",
    spans_nodes=True,
    cell_suffix="",
    metrics=("images_per_sec", "execution_time_s", "step_time_p50_s", "accuracy"),
    module="harness.run.worker",
)
INFERENCE = Inference(
    name="inference",
    trains=False,
    runner="inferencer",
    spans_nodes=False,
    cell_suffix="/inference",
    metrics=(
        "images_per_sec",
        "load_s",
        "prepare_s",
        "first_inference_s",
        "latency_mean_s",
        "latency_p50_s",
        "latency_p90_s",
        "latency_p99_s",
        "latency_p999_s",
        "total_inference_s",
        "accuracy",
    ),
    module="harness.run.inference",
)
TASKS: dict[str, Task] = {t.name: t for t in (TRAINING, INFERENCE)}


def task_for(name: str) -> Task:
    """The task named ``name``; InvalidValue (one line) for an unknown name."""
    task = TASKS.get(name)
    if task is None:
        raise InvalidValue(f"unknown task {name!r}; choose from: {', '.join(TASKS)}")
    return task


def check_split_files(spec: RunSpec, split: str, *, required: bool) -> bool:
    """Looks for a split's real files and checks them (:func:`check_split`); True when
    every one is there."""
    info = datasets.DATASETS[spec.dataset]
    folder = datasets.dataset_dir(spec.dataset, spec.data_dir)
    present, missing = source.probe(info, folder, split)
    check_split(spec, folder, split, present, missing, required=required)
    return bool(present) and not missing


def check_split(
    spec: RunSpec,
    folder: Path,
    split: str,
    present: list[Path],
    missing: list[Path],
    *,
    required: bool,
) -> None:
    """UsageError when a split's files are partly there, or required and absent."""
    if not missing or not (present or required):
        return
    info = datasets.DATASETS[spec.dataset]
    if not present:
        raise UsageError(source._missing_message(info, folder, split, missing, str(folder.parent)))
    names = ", ".join(str(p) for p in missing)
    raise UsageError(
        f"{spec.dataset} {split}: incomplete files under {folder}, missing {names}; "
        f"download again: python -m harness download {spec.dataset} --data-dir {folder.parent}"
        if info.downloadable
        else f"{spec.dataset} {split}: incomplete files under {folder}, missing {names}"
    )
