"""RunSpec: one benchmark, as the user asked for it (harness.run.spec.resolve validates it
and fills in the defaults)."""

from __future__ import annotations

import dataclasses
import json
import reprlib
from dataclasses import dataclass, field
from typing import Any

from harness.errors import InvalidValue

# The study's training parameters (shared/brief.md): batch size and learning rate
# per (dataset family, model). Used when --batch-size / --lr are not given.
STUDY_DEFAULTS: dict[tuple[str, str], tuple[int, float]] = {
    ("mnist", "lenet"): (64, 0.01),
    ("cifar", "alexnet"): (128, 0.01),
    ("cifar", "resnet50"): (128, 0.1),
    ("cifar", "googlenet"): (128, 0.1),
    ("cifar", "vgg16"): (128, 0.01),
    ("imagenet", "alexnet"): (128, 0.01),
    ("imagenet", "resnet50"): (8, 0.1),
    ("imagenet", "googlenet"): (8, 0.1),
    ("imagenet", "vgg16"): (8, 0.01),
}
# Models the study did not run on a family use the family's usual batch and the
# model's usual learning rate.
FAMILY_BATCH = {"mnist": 64, "cifar": 128, "imagenet": 8}
# ResNet-18 and VGG-19 (not in the study) take their siblings' rates.
MODEL_LR = {
    "lenet": 0.01,
    "alexnet": 0.01,
    "resnet50": 0.1,
    "googlenet": 0.1,
    "vgg16": 0.01,
    "resnet18": 0.1,
    "vgg19": 0.01,
}


REQUIRE_QUIET_WAIT_S = 60.0
"""``--require-quiet`` without a value: seconds to wait for a quiet machine."""


def cli(*flags: str, group: str, **settings: Any) -> dict[str, Any]:
    """The metadata of a RunSpec field that is a ``run`` option (harness.cli.run builds the
    parser from them).

    ``flags``: its option strings; ``group``: its ``--help`` section; ``settings``: the
    rest of ``add_argument`` (help, metavar, choices, required, action; type where the
    annotation does not say it). A bool field is a pair of flags: ``negative`` names the
    one that sets it False (``negative_help`` its help). The parser's default is the
    field's (None where the field has none).
    """
    return {"cli": {"flags": flags, "group": group, **settings}}


@dataclass
class RunSpec:
    """What to run. None fields mean "use the default" until :func:`resolve` fills them.

    Every field is an option of ``python -m harness run`` (:func:`cli`), in ``--help``
    order; a field that is deliberately none carries ``metadata={"cli": None}``.
    """

    tool: str = field(
        metadata=cli(
            "--tool",
            group="what to run",
            required=True,
            help="framework backend (python -m harness list)",
        )
    )
    model: str = field(
        metadata=cli(
            "--model",
            group="what to run",
            help="lenet, alexnet, resnet50, googlenet, vgg16, resnet18, vgg19",
        )
    )
    dataset: str = field(
        metadata=cli(
            "--dataset", group="what to run", help="mnist, fashion-mnist, kmnist, cifar10, imagenet"
        )
    )
    # -1: the CPU; N >= 1: N GPUs, data parallel
    num_gpus: int = field(
        default=-1,
        metadata=cli(
            "--num-gpus", group="hardware", help="-1: the CPU (default); N: N GPUs, data parallel"
        ),
    )
    # which GPUs: "0,2" (NVML indices) or a name match ("A100")
    gpu: str | None = field(
        default=None,
        metadata=cli(
            "--gpu", group="hardware", help="which GPUs: NVML indices '0,2' or a name match 'A100'"
        ),
    )
    # with num_gpus -1: split the CPU into this many data-parallel devices
    cpu_devices: int = field(
        default=1,
        metadata=cli(
            "--cpu-devices",
            group="hardware",
            help="CPU runs: split the CPU into N data-parallel devices",
        ),
    )
    # intra-op threads of the whole run; None: cores available
    threads: int | None = field(
        default=None,
        metadata=cli(
            "--threads",
            group="hardware",
            help="intra-op CPU threads of the whole run, split over its devices "
            "(default: the cores available)",
        ),
    )
    # data parallel over this many nodes, each with the devices above
    nodes: int = field(
        default=1,
        metadata=cli(
            "--nodes",
            group="hardware",
            help="data parallel over N nodes, each with --num-gpus GPUs or --cpu-devices devices",
        ),
    )
    # --nodes > 1: local-nodes or srun; None: srun in an allocation
    launcher: str | None = field(
        default=None,
        metadata=cli(
            "--launcher",
            group="hardware",
            help="how --nodes N starts its nodes: srun (default inside a SLURM allocation) or "
            "local-nodes (all on this host)",
        ),
    )
    # "train" or "inference" (harness.run.inference)
    # a name in harness.run.task.TASKS
    task: str = field(
        default="train",  # harness.run.task.TRAINING
        metadata=cli(
            "--task",
            group="training and inference",
            help="train (default) or inference: model load, session, first inference, latency "
            "percentiles, throughput and, on real data, total inference time over the test split",
        ),
    )
    # per device; None: the study's default for (dataset, model). On the command line a
    # list (1,8,64): one run per size (harness.cli.run.specs_from_args)
    batch_size: int | None = field(
        default=None,
        metadata=cli(
            "--batch-size",
            group="training and inference",
            type=str,
            help="per device (default: the study's value); "
            "a list such as 1,8,64 runs once per size; auto[:bisect][:max=N][:time=S] finds "
            "the largest that fits (docs/user-guide/runs.md)",
        ),
    )
    # "auto", "auto:bisect", ...: find the largest batch per device that fits
    # (harness.run.autobatch, parse_batch_search); --batch-size auto on the command line
    batch_search: str | None = field(default=None, metadata={"cli": None})
    # None: the study's default
    learning_rate: float | None = field(
        default=None,
        metadata=cli(
            "--lr", group="training and inference", help="learning rate (default: the study's)"
        ),
    )
    # None: until the step time is steady; N: exactly N
    warmup_steps: int | None = field(
        default=None,
        metadata=cli(
            "--warmup-steps",
            group="training and inference",
            help="untimed steps first (default: until the step time is steady)",
        ),
    )
    # timed steps; None: adaptive length (ignored with epochs)
    steps: int | None = field(
        default=None,
        metadata=cli(
            "--steps",
            group="training and inference",
            help="timed steps (default: measure until the 95%% CI is within ±2%%, see --min-time)",
        ),
    )
    # train whole epochs instead of a number of steps
    epochs: int | None = field(
        default=None,
        metadata=cli(
            "--epochs", group="training and inference", help="train whole epochs instead of --steps"
        ),
    )
    precision: str = field(
        default="fp32",
        metadata=cli(
            "--precision",
            group="training and inference",
            help="fp32 (default), fp16 or bf16 mixed precision",
        ),
    )
    seed: int = field(default=0, metadata=cli("--seed", group="training and inference"))
    # training: compile the train step (the backend says what that is: its compile
    # option, or nothing where it always compiles; refused where it cannot)
    compile: bool = field(
        default=False,
        metadata=cli(
            "--compile",
            group="training and inference",
            action="store_true",
            help="training: compile the train step (a backend option where compiling is "
            "opt-in; accepted as is where the backend always compiles; refused where it "
            "cannot); compilation is reported apart (compile_s)",
        ),
    )
    # denormal floats on the CPU: each framework's own way, or flushed to zero everywhere
    denormals: str = field(
        default="keep",
        metadata=cli(
            "--denormals",
            group="training and inference",
            choices=("keep", "flush"),
            help="CPU arithmetic on denormal floats: keep (default: each framework's own "
            "way) or flush (to zero in every framework's threads, as some frameworks do by "
            "themselves: the same arithmetic everywhere)",
        ),
    )
    # None: validate when training whole epochs on real data
    validate: bool | None = field(
        default=None,
        metadata=cli(
            "--validate",
            group="training and inference",
            help="validate on the test split after training",
            negative="--no-validate",
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=cli(
            "--data-dir",
            group="data",
            help="where datasets live (default: $HARNESS_DATA_DIR or ./data)",
        ),
    )
    # threads decoding JPEGs (ImageNet); None: one per core; 0: no helper thread at all
    # (every dataset's batches prepared inline by the loop, all of it data wait)
    data_workers: int | None = field(
        default=None,
        metadata=cli(
            "--data-workers",
            group="data",
            help="threads decoding ImageNet JPEGs (default: one per core available); 0: "
            "every dataset's batches prepared in the training loop, no prefetch thread",
        ),
    )
    # MNIST-family and CIFAR-10 images upscaled to 3xSxS in the input pipeline (the
    # study's 224 for the ImageNet-shaped networks); None: native images
    image_size: int | None = field(
        default=None,
        metadata=cli(
            "--image-size",
            group="data",
            metavar="S",
            help="upscale MNIST-family and CIFAR-10 images to 3xSxS in the input pipeline, "
            "grey-scale repeated to RGB (224: the ImageNet-shaped networks, as the study did)",
        ),
    )
    # None: real files if present, else synthetic
    synthetic: bool | None = field(
        default=None,
        metadata=cli(
            "--synthetic",
            group="data",
            help="use synthetic data even if the files exist",
            negative="--real",
            negative_help="require the real files (no synthetic fallback)",
        ),
    )
    repeats: int = field(
        default=3,
        metadata=cli(
            "--repeats",
            group="measurement",
            help="fresh processes per run, at least (default 3; see --max-repeats)",
        ),
    )
    # adaptive repeats: up to this many while the interval is wide (harness.run.repeats);
    # None: 10 when the length is adaptive (no steps, no epochs), else exactly ``repeats``
    max_repeats: int | None = field(
        default=None,
        metadata=cli(
            "--max-repeats",
            group="measurement",
            metavar="N",
            help="add fresh repeats, up to N in all, while the 95%% interval across repeats "
            "is wider than ±5%% of the mean (default 10 without --steps or --epochs, "
            "else --repeats: a fixed count)",
        ),
    )
    # None: windows of ~0.3 s; N: sync every N steps (1: per step)
    sync_every: int | None = field(
        default=None,
        metadata=cli(
            "--sync-every",
            group="measurement",
            help="synchronise the device every N steps; 1: time every step "
            "(default: windows of steps lasting ~0.3 s)",
        ),
    )
    # adaptive length: measure at least this long
    min_time_s: float = field(
        default=10.0,
        metadata=cli(
            "--min-time",
            group="measurement",
            help="adaptive length: seconds measured at least (default 10)",
        ),
    )
    # adaptive length: stop here even if the CI is still wide
    max_time_s: float = field(
        default=30.0,
        metadata=cli(
            "--max-time",
            group="measurement",
            help="adaptive length: seconds measured at most (default 30)",
        ),
    )
    # per repeat; None: no limit (--timeout 0)
    timeout_s: float | None = field(
        default=3600.0,
        metadata=cli(
            "--timeout",
            group="measurement",
            help="seconds per repeat before the worker is killed (default 3600; 0: none)",
        ),
    )
    # resource sampling period
    monitor_interval_s: float = field(
        default=0.1,
        metadata=cli(
            "--monitor-interval",
            group="measurement",
            help="seconds between resource samples (default 0.1)",
        ),
    )
    # idle sampling before the first repeat; 0: none
    idle_baseline_s: float = field(
        default=2.0,
        metadata=cli(
            "--idle-baseline",
            group="measurement",
            help="seconds of idle sampling before the first repeat (default 2; 0: none)",
        ),
    )
    # wait up to this many seconds for a quiet machine before the run; 0: do not wait
    require_quiet_s: float = field(
        default=0.0,
        metadata=cli(
            "--require-quiet",
            group="measurement",
            nargs="?",
            const=REQUIRE_QUIET_WAIT_S,
            metavar="SECONDS",
            help="before the run, wait for other processes to leave the run's cores (at "
            f"most SECONDS, default {REQUIRE_QUIET_WAIT_S:g}), else refuse (exit 2)",
        ),
    )
    output_dir: str = field(
        default="logs",
        metadata=cli(
            "--output-dir", group="output", help="run folders and results.sqlite (default ./logs)"
        ),
    )
    # interpreter for the worker; None: found automatically
    python: str | None = field(
        default=None,
        metadata=cli(
            "--python", group="advanced", help="interpreter that has the framework (default: found)"
        ),
    )
    # backend options (-o key=value)
    options: dict[str, str] = field(
        default_factory=dict,
        metadata=cli(
            "-o",
            "--option",
            group="advanced",
            action="append",
            metavar="KEY=VALUE",
            help="backend option",
        ),
    )
    # free labels recorded with the result
    tags: dict[str, str] = field(
        default_factory=dict,
        metadata=cli(
            "--tag",
            group="advanced",
            action="append",
            metavar="KEY=VALUE",
            help="label stored with the result",
        ),
    )
    # folder: save every replica's final weights (.npz)
    dump_weights: str | None = field(
        default=None,
        metadata=cli(
            "--dump-weights",
            group="advanced",
            metavar="DIR",
            help="save every replica's final weights here (.npz)",
        ),
    )
    # inference: canonical weights (.npz) instead of the initial ones
    weights: str | None = field(
        default=None,
        metadata=cli(
            "--weights",
            group="inference",
            metavar="FILE.npz",
            help="inference: these weights (as --dump-weights saves them) "
            "instead of the initial ones",
        ),
    )
    # inference: a user's ONNX model (synthetic inputs)
    onnx_file: str | None = field(
        default=None,
        metadata=cli(
            "--onnx-file",
            group="inference",
            metavar="FILE",
            help="inference on a backend that runs ONNX files: benchmark this ONNX model on "
            "synthetic inputs (--model and --dataset do not apply)",
        ),
    )
    # with onnx_file: (C, H, W) when the file leaves it open
    input_shape: list[int] | None = field(
        default=None,
        metadata=cli(
            "--input-shape",
            group="inference",
            type=str,
            metavar="C,H,W",
            help="with --onnx-file: the per-image input shape, where the file leaves it open",
        ),
    )

    @property
    def devices(self) -> int:
        """Data-parallel devices of each node (of the run, on one node)."""
        return self.num_gpus if self.num_gpus > 0 else self.cpu_devices

    @property
    def total_devices(self) -> int:
        """Data-parallel devices over all the run's nodes."""
        return self.devices * max(1, self.nodes)

    @property
    def global_batch(self) -> int:
        return (self.batch_size or 0) * self.total_devices

    @property
    def hardware(self) -> str:
        """A short label of the hardware configuration, for tables."""
        if self.num_gpus > 0:
            label = f"{self.num_gpus} GPU" + ("s" if self.num_gpus > 1 else "")
        else:
            label = "CPU" if self.cpu_devices == 1 else f"CPU x{self.cpu_devices}"
        return label if self.nodes == 1 else f"{self.nodes} nodes x {label}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


ONNX_FILE_MODEL = "onnx-file"  # the model name of an --onnx-file run


def batch_sizes(text: str | int | list[Any]) -> list[int]:
    """``--batch-size 1,8,64`` (or a sweep's list) as positive whole numbers, in order,
    without repeats; InvalidValue (one line) for anything else."""
    items = text if isinstance(text, list) else str(text).split(",")
    out: dict[int, None] = {}  # in order, without repeats (a dict: linear in long lists)
    for item in items:
        word = str(item).strip()
        if isinstance(item, bool) or not word.lstrip("+-").isdigit() or int(word) < 1:
            where = f" in {reprlib.repr(text)}" if len(items) > 1 else ""
            if not isinstance(item, bool) and word.lstrip("+-").isdigit():
                raise InvalidValue(f"--batch-size must be a positive number, got {word!r}{where}")
            raise InvalidValue(
                f"--batch-size takes positive whole numbers, one or a list like 1,8,64; "
                f"got {word or 'an empty entry'!r}{where}"
            )
        out[int(word)] = None
    if not out:
        raise InvalidValue("--batch-size: no batch size given")
    return list(out)


@dataclass(frozen=True)
class BatchSearch:
    """How ``--batch-size auto`` searches (harness.run.autobatch): doubling from ``start``
    up to ``max``, then bisecting between the last fit and the first failure if
    ``bisect``; ``time_s`` bounds the whole search."""

    start: int = 1
    max: int = 4096
    time_s: float = 600.0
    bisect: bool = False


def parse_batch_search(text: str) -> BatchSearch:
    """``auto[:bisect][:start=N][:max=N][:time=S]`` as a BatchSearch; InvalidValue (one
    line) for anything else."""
    words = [w.strip() for w in str(text).split(":")]
    usage = f"--batch-size {text!r}: give auto[:bisect][:start=N][:max=N][:time=SECONDS]"
    if words[0] != "auto":
        raise InvalidValue(usage)
    values: dict[str, Any] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if word == "bisect":
            values["bisect"] = True
        elif sep and key in ("start", "max") and value.isdigit() and int(value) > 0:
            values[key] = int(value)
        elif sep and key == "time" and value.replace(".", "", 1).isdigit() and float(value) > 0:
            values["time_s"] = float(value)
        else:
            raise InvalidValue(usage)
    search = BatchSearch(**values)
    if search.start > search.max:
        raise InvalidValue(f"--batch-size {text!r}: start {search.start} is above max {search.max}")
    return search
