#!/usr/bin/env python
"""The harness's MXNet ResNet50 against Gluon's own model zoo ResNet50, side by side.

Three contestants, each trained in a fresh process with the same loop (momentum SGD,
softmax cross-entropy, batch 32 of synthetic 3x32x32 images, 10 classes, CPU, hybridized
with static memory, synchronised every step), rounds alternating the order:

- ``harness``: the catalogue's ResNet50 (torchvision's v1.5: stride on the 3x3 conv of
  a downsampling bottleneck) with the ImageNet stem, built from harness.models and
  trained by the backend's MXNetTrainer. The catalogue refuses 32x32 for the ImageNet
  variant (it gives the small CIFAR variant instead, a far larger workload), so the
  network is assembled here from harness.models.resnet's stages;
- ``harness-v1``: the same, with the stride on the first 1x1 conv (ResNet v1), i.e.
  the layout of the official model: this pair isolates the translation's cost;
- ``official``: ``mxnet.gluon.model_zoo.vision.resnet50_v1`` in a bare Gluon loop. Its
  bottlenecks also give the two 1x1 convolutions a bias (18,880 parameters more), which
  the torchvision layout has not; its weights start from Xavier, the harness's from
  torchvision's He init (no effect on speed).

Prints images/sec per round, medians, the ratios harness/official (target >= 0.9) and
the MACs per image of both layouts (v1 does its 3x3 downsampling convs at the reduced
resolution, so it does less work than v1.5).

    python scripts/bench_official_mxnet.py --rounds 3 --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SHAPE, CLASSES = (3, 32, 32), 10
CONTESTANTS = ("harness", "harness-v1", "official")


def resnet50_imagenet_layout(v1: bool = False):
    """The catalogue's ImageNet ResNet50 at 3x32x32 (optionally with v1 stride placement)."""
    from harness.models import layers as L
    from harness.models.common import seq
    from harness.models.resnet import HE, stages

    def move_stride(block: L.Sequential) -> L.Sequential:
        residual = block.layers[0]
        body = list(residual.body.layers)
        stride = L.pair(body[3].stride)
        if stride == (1, 1):
            return block
        body[0] = L.Conv2D(body[0].filters, 1, stride, bias=False, init=HE)
        body[3] = L.Conv2D(body[3].filters, 3, 1, 1, bias=False, init=HE)
        new_body = L.Sequential(tuple(body), residual.body.names)
        return L.Sequential(
            (L.Residual(new_body, residual.shortcut), *block.layers[1:]), block.names
        )

    named = stages()
    if v1:
        named = [
            (name, L.Sequential(tuple(move_stride(b) for b in stage.layers)))
            for name, stage in named
        ]
    stem = [
        ("conv1", L.Conv2D(64, 7, 2, 3, bias=False, init=HE)),
        ("bn1", L.BatchNorm()),
        ("relu", L.ReLU()),
        ("maxpool", L.MaxPool(3, 2, 1)),
    ]
    body = seq(
        *stem,
        *named,
        ("avgpool", L.GlobalAvgPool()),
        ("flatten", L.Flatten()),
        ("fc", L.Dense(CLASSES)),
    )
    return L.Network("resnet50", "imagenet", SHAPE, CLASSES, body)


def _harness_step(args: argparse.Namespace, v1: bool):
    from harness import datasets, models
    from harness.backend import WorkerContext
    from harness.backends.mxnet.trainer import MXNetTrainer
    from harness.spec import RunSpec

    network = resnet50_imagenet_layout(v1)
    spec = RunSpec(
        tool="mxnet",
        model="resnet50",
        dataset="cifar10",
        batch_size=args.batch_size,
        learning_rate=args.lr,
    )
    source = datasets.open_source("cifar10", "train", synthetic=True)
    trainer = MXNetTrainer(
        WorkerContext(spec, network, source, None, lambda: models.init_weights(network, 0))
    )
    import numpy as np

    rng = np.random.default_rng(0)
    batch = trainer.device_batch(
        rng.standard_normal((args.batch_size, *SHAPE)).astype(np.float32),
        rng.integers(0, CLASSES, args.batch_size).astype(np.int32),
    )

    def step() -> None:
        trainer.synchronize(trainer.train_step(batch))

    return step


def _official_step(args: argparse.Namespace):
    import mxnet as mx
    from mxnet import autograd, gluon
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    net = vision.resnet50_v1(classes=CLASSES)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(
        net.collect_params(), "sgd", {"learning_rate": args.lr, "momentum": 0.9, "wd": 0.0}
    )
    x = mx.nd.random.normal(shape=(args.batch_size, *SHAPE))
    y = mx.nd.array(mx.nd.random.randint(0, CLASSES, shape=(args.batch_size,)), dtype="int32")

    def step() -> None:
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(args.batch_size)
        mx.nd.waitall()

    return step


def child(args: argparse.Namespace) -> None:
    """Runs one contestant and prints {"images_per_sec": ...}."""
    if args.child == "official":
        step = _official_step(args)
    else:
        step = _harness_step(args, v1=args.child == "harness-v1")
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"images_per_sec": args.batch_size * args.steps / seconds}))


def run_child(name: str, args: argparse.Namespace) -> float:
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--lr",
        str(args.lr),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--child", choices=CONTESTANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import mxnet as mx

    from harness.models import macs_per_image, param_count

    speeds: dict[str, list[float]] = {name: [] for name in CONTESTANTS}
    print(
        f"MXNet {mx.__version__}, CPU, ResNet50 ImageNet layout on {SHAPE}, {CLASSES} "
        f"classes, batch {args.batch_size}, {args.warmup} warmup + {args.steps} timed steps"
    )
    for index in range(args.rounds):
        order = CONTESTANTS if index % 2 == 0 else CONTESTANTS[::-1]
        for name in order:
            speeds[name].append(run_child(name, args))
        print(
            f"round {index + 1}: "
            + ", ".join(f"{name} {speeds[name][-1]:.1f}" for name in CONTESTANTS)
            + " images/sec"
        )
    median = {name: statistics.median(values) for name, values in speeds.items()}
    for name in CONTESTANTS:
        print(f"median {name:10s} {median[name]:8.1f} images/sec")
    print(f"ratio harness/official    {median['harness'] / median['official']:.3f}")
    print(f"ratio harness-v1/official {median['harness-v1'] / median['official']:.3f}")
    v15 = macs_per_image(resnet50_imagenet_layout(False))
    v1 = macs_per_image(resnet50_imagenet_layout(True))
    print(
        f"MACs per image: v1.5 {v15 / 1e6:.1f} M, v1 {v1 / 1e6:.1f} M "
        f"(v1.5 does {v15 / v1:.3f}x the work)"
    )
    print(
        f"parameters: harness {param_count(resnet50_imagenet_layout(False)):,}, "
        f"harness-v1 {param_count(resnet50_imagenet_layout(True)):,}, "
        f"official {official_params():,}"
    )


def official_params() -> int:
    """Trainable parameters of the model zoo's resnet50_v1 (shapes inferred by a forward)."""
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    net = vision.resnet50_v1(classes=CLASSES)
    net.initialize()
    net(mx.nd.zeros((1, *SHAPE)))
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")


if __name__ == "__main__":
    main()
