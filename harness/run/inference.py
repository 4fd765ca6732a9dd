"""The inference task (``--task inference``): both halves, the orchestrator's and the worker's.

A run of the task, per batch size (``--batch-size 1,8,64`` makes one run of each):

1. the model file: a fresh process (the backend's interpreter, the worker's entry point
   with ``Job.export``) writes the network with the canonical initial weights, or the
   ``--weights FILE.npz`` ones, in the framework's own format into the run folder,
   untimed, once per run (``--onnx-file``: the user's file is used as it is);
2. every repeat is a fresh worker, as for training (same orchestrator, monitor, repeats,
   timeouts, signals, events and recovery), which measures, each on its own clock:
   ``load`` (the file into a ready model on the device), ``prepare`` (session creation,
   compilation or tracing for the batch size), the first inference (one batch already on
   the device: ``infer`` and ``synchronize``), then, with real data, one pass over the
   whole test split (host batches, copies to the device, predictions back to the host:
   ``total_inference_s`` = load + prepare + this pass, and its top-1 accuracy), and last
   the steady-state latency per batch, timed by the training loop itself
   (harness.run.loop: warmup to steady state, windows, adaptive length, ``--steps``,
   ``--warmup-steps``, ``--sync-every``) driving the inferencer through
   :class:`_LoopAdapter`: a "step" is one batch's forward pass.

The steady state runs on a few batches moved to the device once and cycled (for real
data the test split's first batches), so neither the input pipeline nor the copy to the
device is timed there: the latency is the model's. By default each batch
is a request, synchronised and timed on its own (``--sync-every 1``, ``latency_basis``
"batch"), so the percentiles are those of requests. ``--sync-every N`` times windows of N
batches for throughput; then only the mean latency (window time / batches, "window")
is kept, and no percentile. The last, partial batch of the test pass
is padded to the full batch size (the padding's predictions are dropped), so no backend
compiles a second shape.

The orchestrator's half (no framework is imported), called through the task object
``INFERENCE`` (harness.run.task): :func:`check_spec` (the task's rules, from ``resolve``),
:func:`check_before_workers`, :func:`export_model`, :func:`repeat_part` and
:func:`summary_part`; and :func:`probe_onnx_file`. The worker's half: :func:`run_job`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import cpu, datasets, models
from harness.backend import Inferencer, ModelFileError, Trainer, WorkerContext, load_reference
from harness.errors import InvalidValue, UsageError
from harness.plugins import PluginManager, get_plugin_manager
from harness.run import denormals
from harness.run.events import Emitter
from harness.run.loop import run_benchmark
from harness.run.spec import check_values
from harness.run.task import INFERENCE, check_split_files
from harness.run.worker import Held, build_network, guarded, open_split
from harness.spec import ONNX_FILE_MODEL
from harness.store import stats
from harness.store.schema import InferenceRepeat, InferenceSummary, RepeatRecord, Stat

if TYPE_CHECKING:
    import numpy as np

    from harness.run.worker import Job
    from harness.spec import RunSpec

MODEL_STEM = "model"  # the model file in the run folder: model<suffix>
ONNX_FILE_DATASET = "synthetic"  # the dataset name of an --onnx-file run
MODEL_FORMAT = "onnx"  # the format of an --onnx-file, as backends' model loaders name it
_POOL = 4  # device batches cycled in the steady state


# --- the orchestrator's half -----------------------------------------------------------


def check_spec(spec: RunSpec, tools: dict[str, Any]) -> RunSpec:
    """The inference task's rules (UsageError, one line), from ``spec.resolve`` through
    ``INFERENCE.check_spec`` (harness.run.task).

    An ``--onnx-file`` run is resolved here whole (the catalogue does not apply to it);
    any other spec is returned for ``resolve`` to go on with."""
    refusal = INFERENCE.refusal(spec.tool, tools)
    if refusal:
        raise UsageError(refusal)
    for flag, value in (
        ("--epochs", spec.epochs),
        ("--validate", spec.validate),
        ("--dump-weights", spec.dump_weights),
    ):
        if value:
            raise UsageError(
                f"{flag} applies to training; an inference run times batches (--steps or "
                "the adaptive length) and passes over the test split when the data is real"
            )
    if spec.devices > 1 or getattr(spec, "nodes", 1) > 1:
        raise UsageError(
            "inference runs on one device: --num-gpus 1, or the CPU with --cpu-devices 1"
        )
    if spec.input_shape is not None and not spec.onnx_file:
        raise UsageError("--input-shape applies to --onnx-file only")
    if spec.sync_every is None:  # latency is per request: each batch timed on its own
        spec = dataclasses.replace(spec, sync_every=1)
    if not spec.onnx_file:
        return spec
    if model_loader(tools[spec.tool]) is None:
        have = get_plugin_manager().backends_with("harness_model_loader", format=MODEL_FORMAT)
        raise UsageError(
            f"--onnx-file: {spec.tool} cannot run ONNX files; tools that can: "
            f"{', '.join(have) or 'none installed'}"
        )
    if spec.weights:
        raise UsageError("--weights applies to catalogue networks, not to --onnx-file")
    if spec.synthetic is False:
        raise UsageError("--onnx-file runs on synthetic inputs; --real does not apply")
    if not Path(spec.onnx_file).is_file():
        raise UsageError(f"--onnx-file {spec.onnx_file}: no such file")
    if spec.input_shape is not None:
        shape = list(spec.input_shape)
        if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) for d in shape):
            raise InvalidValue(f"--input-shape takes C,H,W (three whole numbers), got {shape}")
        if min(shape) < 1:
            raise InvalidValue(f"--input-shape takes positive dimensions, got {shape}")
    check_values(spec)
    if spec.precision != "fp32":
        raise UsageError("--onnx-file runs the model as its file defines it: --precision fp32")

    out = dataclasses.replace(spec, options=dict(spec.options), tags=dict(spec.tags))
    out.onnx_file = str(Path(spec.onnx_file).resolve())
    out.model = ONNX_FILE_MODEL
    out.dataset = ONNX_FILE_DATASET
    out.synthetic = True
    out.batch_size = spec.batch_size or 1
    out.learning_rate = None
    out.threads = spec.threads or cpu.available_cores()
    return out


def check_before_workers(spec: RunSpec) -> None:
    """What an inference worker would only find out after starting (UsageError)."""
    if spec.weights:
        _read_weights(spec.weights)  # UsageError for a missing or unreadable file
    if spec.onnx_file:
        return
    info = datasets.DATASETS[spec.dataset]
    test_size = info.split_size("test")
    if spec.batch_size and spec.batch_size > test_size:
        raise UsageError(
            f"--batch-size {spec.batch_size} is more than the {test_size} images of "
            f"{spec.dataset}'s test split; give a smaller --batch-size"
        )
    if not spec.synthetic:
        check_split_files(spec, "test", required=spec.synthetic is False)


def _read_weights(path: str) -> dict[str, Any]:
    """A canonical state dict from ``--weights FILE.npz`` (UsageError, one line)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--weights {file}: no such file")
    try:
        with np.load(file, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"--weights {file}: not a readable .npz of weights ({why})") from None


def model_loader(backend: Any) -> str | None:
    """``"module:function"`` with which ``backend`` reads an ``--onnx-file`` (the
    harness_model_loader hook); None when it cannot run ONNX files."""

    return get_plugin_manager().model_loader(backend, MODEL_FORMAT)


def probe_onnx_file(spec: RunSpec, python: str) -> RunSpec:
    """Reads the user's ONNX file's input in the backend's interpreter, with its model
    loader (the core imports no model format's package): the spec with its
    ``input_shape``; UsageError (one line) for a corrupt file or an unsupported input,
    before any worker starts."""

    assert spec.onnx_file is not None
    loader = model_loader(get_plugin_manager().backend(spec.tool))
    assert loader is not None, spec.tool  # check_spec refused the run
    command = [python, "-m", "harness.run.inference", "probe", loader, spec.onnx_file]
    if spec.input_shape:
        command.append(",".join(map(str, spec.input_shape)))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--onnx-file {spec.onnx_file}: could not be read ({exc})") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stdout.strip() or done.stderr.strip()).splitlines()
        raise UsageError(why[-1] if why else f"--onnx-file {spec.onnx_file}: unreadable")
    found = json.loads(lines[-1])
    return dataclasses.replace(spec, input_shape=[int(d) for d in found["shape"]])


def _probe_main(loader: str, path: str, given: str | None) -> int:
    """``python -m harness.run.inference probe LOADER FILE [C,H,W]`` (the backend's
    interpreter): ``LOADER`` is the backend's ``"module:function"`` for the file."""

    shape = None
    if given:
        shape = tuple(int(d) for d in given.split(","))
    try:
        found = load_reference(loader)(path, shape)
    except ModelFileError as exc:
        print(f"--onnx-file {exc}")
        return 2
    print(json.dumps(found))
    return 0


def export_model(plan: Any, run_dir: Path, run_id: str, run_repeat: Any) -> tuple[str, Any]:
    """(model file, the export step's RepeatRecord or None when nothing ran).

    A fresh process (the worker's entry point with ``Job.export``) writes the file into
    the run folder, driven by ``run_repeat`` like a repeat (its folder ``export``, its
    timeout and signals), without the monitor."""
    spec = plan.spec
    if spec.onnx_file:
        return spec.onnx_file, None
    stem = str((run_dir / MODEL_STEM).resolve())  # the worker adds the format's suffix
    record = run_repeat(plan, run_dir, run_id, 0, folder="export", export=True, model_file=stem)
    done = run_dir / "export" / "export.json"
    if record.ok and done.is_file():
        return json.loads(done.read_text())["file"], record
    return "", record


def failed_export(record: RepeatRecord) -> RepeatRecord:
    """The run's repeat record when its model file could not be written."""
    cause = f"writing the model file failed: {record.cause or record.status}"
    return dataclasses.replace(
        record,
        status=record.status if record.status != "ok" else "error",
        cause=cause,
        repeat=1,
    )


def _latency_basis(record: RepeatRecord) -> str | None:
    basis = record.timed.step_time_basis
    return {"step": "batch", "window": "window", "device": "device"}.get(basis or "", basis)


def repeat_part(events: list[dict[str, Any]], record: RepeatRecord) -> InferenceRepeat:
    """An inference repeat's own figures, from its events and the loop's windows."""
    part = InferenceRepeat(batch_size=record.global_batch or None)
    for e in events:
        if e.get("rank", 0) != 0:
            continue
        kind = e["event"]
        if kind == "model":
            part.model_file, part.model_bytes = e.get("file"), e.get("bytes")
            part.model_format = e.get("format")
        elif kind == "inference_setup":
            part.load_s, part.prepare_s = e.get("load_s"), e.get("prepare_s")
        elif kind == "framework":  # read back after prepare: replaces the start's
            record.framework = {
                **(record.framework or {}),
                **{k: v for k, v in e.items() if k not in ("event", "t", "wall", "rank")},
            }
        elif kind == "first_inference":
            part.first_inference_s = e.get("seconds")
        elif kind == "test_pass":
            part.test_images, part.test_pass_s = e.get("images"), e.get("seconds")
            part.accuracy = e.get("accuracy")
    # per batch: the loop's per-step figures (exact per batch with --sync-every 1)
    timed: list[float] = []
    for e in events:
        if e["event"] == "steps" and e.get("phase") == "timed" and e.get("rank", 0) == 0:
            if e.get("device_seconds"):
                timed.extend(float(s) for s in e["device_seconds"])
            else:
                timed.extend(float(s) / int(n) for n, s in e["windows"] if int(n) > 0)
    part.latency_basis = _latency_basis(record)
    if timed:
        part.latency_mean_s = stats.mean(timed)
    if timed and part.latency_basis != "window":  # a window's mean is no request's latency
        part.latency_p50_s = stats.percentile(timed, 50)
        part.latency_p90_s = stats.percentile(timed, 90)
        part.latency_p99_s = stats.percentile(timed, 99)
        part.latency_p999_s = stats.percentile(timed, 99.9)
    part.images_per_sec = record.timed.images_per_sec
    if part.test_pass_s is not None and part.load_s is not None and part.prepare_s is not None:
        part.total_inference_s = part.load_s + part.prepare_s + part.test_pass_s
    return part


def summary_part(repeats: list[RepeatRecord]) -> InferenceSummary | None:
    """The inference figures over the ok repeats (None for a training run)."""
    parts = [r.inference for r in repeats if r.ok and r.inference is not None]
    any_part = next((r.inference for r in repeats if r.inference is not None), None)
    if any_part is None:
        return None

    def over(name: str) -> Stat:
        return Stat.of([float(v) for p in parts if (v := getattr(p, name)) is not None])

    first = parts[0] if parts else any_part
    return InferenceSummary(
        model_file=first.model_file,
        model_bytes=first.model_bytes,
        model_format=first.model_format,
        latency_basis=first.latency_basis,
        load_s=over("load_s"),
        prepare_s=over("prepare_s"),
        first_inference_s=over("first_inference_s"),
        latency_mean_s=over("latency_mean_s"),
        latency_p50_s=over("latency_p50_s"),
        latency_p90_s=over("latency_p90_s"),
        latency_p99_s=over("latency_p99_s"),
        latency_p999_s=over("latency_p999_s"),
        total_inference_s=over("total_inference_s"),
        accuracy=over("accuracy"),
    )


def inference_flops(flops: Any, images_per_sec: float | None) -> Any:
    """The flops summary of an inference run: forward FLOPs per image only (no 3x)."""
    if flops is None or flops.error or not flops.forward_per_image:
        return flops
    total = images_per_sec * flops.forward_per_image if images_per_sec else None
    mfu = total / flops.peak_per_device if total is not None and flops.peak_per_device else None
    return dataclasses.replace(
        flops,
        train_per_image=None,
        achieved_total=total,
        achieved_per_device=total,
        mfu=mfu,
        note=(flops.note + "; " if flops.note else "") + "inference: forward FLOPs per image",
    )


# --- the worker's half -----------------------------------------------------------------


class _Pool:
    """A data source for the loop: a few host batches, cycled (moved to the device once
    by the loop, which treats it as synthetic data)."""

    synthetic = True

    def __init__(self, batches: list[tuple[np.ndarray, np.ndarray]], description: str = "") -> None:
        self._batches = batches
        self.num_images = sum(len(b[0]) for b in batches)
        self.description = description or "batches moved to the device once, cycled"

    def batches(self, batch_size: int, **_: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield from self._batches


class _LoopAdapter(Trainer):
    """The training loop's view of an inferencer: a step is one batch's forward pass."""

    layout = "NCHW"

    def __init__(self, inferencer: Inferencer) -> None:
        super().__init__(inferencer.ctx)
        self.inferencer = inferencer
        self.oom_markers = inferencer.oom_markers

    def framework_info(self) -> dict[str, Any]:
        return self.inferencer.framework_info()

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        return self.inferencer.device_batch(images)

    def train_step(self, batch: Any) -> Any:
        return self.inferencer.infer(batch)

    def synchronize(self, token: Any) -> None:
        self.inferencer.synchronize()

    # no loss in inference: the loop does not check it for divergence (run.loop.Diverged)
    has_loss = False

    def loss_value(self, token: Any) -> float:
        return float("nan")  # written as null

    def evaluate(self, batch: Any) -> tuple[float, int]:
        raise NotImplementedError("inference runs do not validate")

    def memory_peak(self) -> dict[str, Any] | None:
        return self.inferencer.memory_peak()


def file_bytes(path: Path) -> int:
    """The size of a model file, or of all the files in a model folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _context(job: Job) -> tuple[WorkerContext, Any, Any]:
    """(the inferencer's context, the steady state's host source, the test split or None)."""
    spec = job.spec
    if spec.onnx_file:
        c, h, w = spec.input_shape or (0, 0, 0)
        rng = np.random.default_rng(spec.seed)
        host = [
            (
                rng.standard_normal((spec.batch_size or 1, c, h, w), dtype=np.float32),
                np.zeros(spec.batch_size or 1, np.int32),
            )
            for _ in range(_POOL)
        ]
        ctx = WorkerContext(
            spec=spec,
            network=None,  # type: ignore[arg-type]
            train=_Pool(host, f"synthetic inputs {c}x{h}x{w} (--onnx-file)"),  # type: ignore[arg-type]
            test=None,
            initial_weights=dict,
        )
        return ctx, host, None
    network = build_network(spec)
    test = open_split(spec, "test", synthetic=spec.synthetic, seed=spec.seed)

    def weights() -> dict[str, Any]:
        if spec.weights:
            return _read_weights(spec.weights)
        return models.init_weights(network, spec.seed)

    ctx = WorkerContext(
        spec=spec,
        network=network,
        train=test,
        test=None if test.synthetic else test,
        initial_weights=weights,
    )
    host = []
    batches = test.batches(spec.batch_size, layout="NCHW", shuffle=False, drop_last=True, epochs=1)
    for images, labels in batches:
        host.append((images, labels))
        if len(host) == _POOL:
            break
    return ctx, host, ctx.test


def _test_pass(inferencer: Inferencer, test: Any, batch_size: int) -> tuple[int, int, float]:
    """(images, correct, seconds) of one pass over the whole test split."""
    start = time.perf_counter()
    images_done = correct = 0
    for images, labels in test.batches(
        batch_size, layout="NCHW", shuffle=False, drop_last=False, epochs=1
    ):
        real = len(images)
        if real < batch_size:  # pad the last batch to the batch size the model was prepared for
            pad = np.repeat(images[-1:], batch_size - real, axis=0)
            images = np.concatenate([images, pad])
        logits = inferencer.to_numpy(inferencer.infer(inferencer.device_batch(images)))
        predicted = np.asarray(logits)[:real].argmax(axis=1)
        correct += int((predicted == np.asarray(labels)).sum())
        images_done += real
    return images_done, correct, time.perf_counter() - start


def run_job(job: Job) -> int:
    """One inference repeat (or, with ``job.export``, the run's model file)."""
    emitter = Emitter(job.events, rank=0)
    return guarded(emitter, lambda held: _infer(job, emitter, held), Inferencer)


def _infer(job: Job, emitter: Emitter, held: Held) -> None:
    """The body of :func:`run_job` (harness.run.worker.guarded ends it)."""
    clock = time.perf_counter
    emitter.emit("phase", name="setup", state="start")
    spec = job.spec
    backend = PluginManager().backend(spec.tool)
    held.cls = cls = backend.load_inferencer()
    ctx, host, test = _context(job)
    held.runner = inferencer = cls(ctx)
    if job.export:
        path = Path((job.model_file or MODEL_STEM) + cls.suffix)
        start = clock()
        inferencer.export(ctx.initial_weights(), path)
        seconds = clock() - start
        record = {"file": str(path), "bytes": file_bytes(path), "seconds": seconds}
        if job.events:  # beside the events: the orchestrator reads it (export_model)
            (Path(job.events).parent / "export.json").write_text(json.dumps(record))
        emitter.emit("export", **record, format=getattr(inferencer, "format", cls.suffix))
        return
    source = ctx.train
    emitter.emit(
        "data",
        split="test",
        synthetic=bool(getattr(source, "synthetic", True)),
        description=getattr(source, "description", "synthetic inputs"),
        images=getattr(source, "num_images", None),
    )
    info = inferencer.framework_info()
    emitter.emit("start", pid=os.getpid(), world_size=1, denormals=denormals.state(), **info)
    emitter.emit("phase", name="setup", state="end")
    path = Path(job.model_file or "")
    emitter.emit(
        "model",
        file=str(path),
        bytes=file_bytes(path),
        format=getattr(inferencer, "format", cls.suffix),
    )
    emitter.emit("phase", name="load", state="start")
    start = clock()
    inferencer.load(path)
    load_s = clock() - start
    emitter.emit("phase", name="load", state="end")
    emitter.emit("phase", name="session", state="start")
    start = clock()
    inferencer.prepare(spec.batch_size or 1)
    prepare_s = clock() - start
    emitter.emit("phase", name="session", state="end")
    emitter.emit("inference_setup", load_s=load_s, prepare_s=prepare_s)
    # what the session or compiled model runs with, read back now that it exists
    emitter.emit("framework", **inferencer.framework_info())
    first = inferencer.device_batch(host[0][0])
    start = clock()
    inferencer.infer(first)
    inferencer.synchronize()
    emitter.emit("first_inference", seconds=clock() - start)
    if test is not None:
        emitter.emit("phase", name="test_pass", state="start")
        images, correct, seconds = _test_pass(inferencer, test, spec.batch_size or 1)
        emitter.emit("phase", name="test_pass", state="end")
        accuracy = correct / images if images else None
        emitter.emit("test_pass", images=images, seconds=seconds, accuracy=accuracy)
        emitter.emit(
            "validation",
            epoch=None,
            images=images,
            seconds=seconds,
            loss=None,
            accuracy=accuracy,
            synthetic=False,
        )
    loop_ctx = dataclasses.replace(ctx, train=_Pool(host), test=None)
    inferencer.ctx = loop_ctx
    run_benchmark(_LoopAdapter(inferencer), loop_ctx, emitter)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "probe":
        sys.exit(_probe_main(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
    print("usage: python -m harness.run.inference probe LOADER FILE [C,H,W]", file=sys.stderr)
    sys.exit(2)
