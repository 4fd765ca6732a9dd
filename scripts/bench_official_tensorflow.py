#!/usr/bin/env python
"""Is the harness's TensorFlow ResNet-50 as fast as TensorFlow's own? Side by side, on the CPU.

Official: ``keras.applications.ResNet50(weights=None)`` trained in a bare loop written
here (tf.function step, GradientTape, Keras SGD with momentum 0.9, sparse softmax
cross-entropy). Harness: the harness's ResNet-50, ImageNet architecture (7x7/2 stem, max
pool), driven through TFTrainer.device_batch/train_step/synchronize, i.e. exactly what
the worker runs. Both take the same input size (default 32x32x3, batch 32, 10 classes):
the catalogue would build its CIFAR-style "small" ResNet for 32x32, a different and much
heavier network, so the ImageNet-variant graph is built here directly at 32x32.

The two are not the identical network: Keras' ResNet50 is v1 (stride 2 on the first 1x1
convolution of a downsampling block) with biases on every convolution and batch-norm
eps 1.001e-5; the harness's is torchvision's v1.5 (stride on the 3x3 convolution, no
conv biases), which costs more multiply-accumulates per image. The script prints both
counts so the ratio can be read against the work done.

Each measurement runs in a fresh process; rounds alternate which goes first. Prints
images/sec per round and the ratio harness / official (target >= 0.9).

    python scripts/bench_official_tensorflow.py --batch-size 32 --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

OFFICIAL = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
import keras

size, classes, batch, warmup, steps, lr, xla, threads = sys.argv[1:9]
size, classes, batch, warmup, steps = map(int, (size, classes, batch, warmup, steps))
if int(threads):
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=classes,
                                    classifier_activation=None)
opt = keras.optimizers.SGD(learning_rate=float(lr), momentum=0.9)
opt.build(model.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

@tf.function(jit_compile=xla == "true")
def step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return loss

rng = np.random.default_rng(0)
x = tf.constant(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
y = tf.constant(rng.integers(0, classes, batch).astype(np.int32))
for _ in range(warmup):
    step(x, y).numpy()
start = time.perf_counter()
for _ in range(steps):
    loss = step(x, y)
loss.numpy()
seconds = time.perf_counter() - start
params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
print(json.dumps({"images_per_sec": batch * steps / seconds, "params": params}))
"""

HARNESS = r"""
import dataclasses, json, sys, time
import numpy as np
from harness import models
from harness.backend import WorkerContext
from harness.spec import RunSpec
from harness.backends.tensorflow.trainer import TFTrainer

size, classes, batch, warmup, steps, lr, xla, threads = sys.argv[1:9]
size, classes, batch, warmup, steps = map(int, (size, classes, batch, warmup, steps))
imagenet = models.build("resnet50", (3, 224, 224), classes)
net = dataclasses.replace(imagenet, input_shape=(3, size, size))  # same graph, smaller input
spec = RunSpec(tool="tensorflow", model="resnet50", dataset="cifar10", batch_size=batch,
               learning_rate=float(lr), threads=int(threads) or None, options={"xla": xla})
ctx = WorkerContext(spec=spec, network=net, train=None, test=None,
                    initial_weights=lambda: models.init_weights(net, 0))
trainer = TFTrainer(ctx)
rng = np.random.default_rng(0)
data = trainer.device_batch(rng.standard_normal((batch, size, size, 3), dtype=np.float32),
                            rng.integers(0, classes, batch).astype(np.int32))
for _ in range(warmup):
    trainer.synchronize(trainer.train_step(data))
start = time.perf_counter()
for _ in range(steps):
    token = trainer.train_step(data)
trainer.synchronize(token)
seconds = time.perf_counter() - start
print(json.dumps({"images_per_sec": batch * steps / seconds, "params": models.param_count(net),
                  "macs": models.macs_per_image(net)}))
"""


def measure(code: str, args: argparse.Namespace) -> dict[str, float]:
    argv = [
        str(args.size),
        str(args.classes),
        str(args.batch_size),
        str(args.warmup),
        str(args.steps),
        str(args.lr),
        "true" if args.xla else "false",
        str(args.threads),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise SystemExit(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--xla", action="store_true", help="compile both steps with XLA")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    args = parser.parse_args(argv)

    runs: dict[str, list[float]] = {"harness": [], "official": []}
    info: dict[str, dict[str, float]] = {}
    print(
        f"ResNet-50, {args.size}x{args.size}x3, {args.classes} classes, batch "
        f"{args.batch_size}, CPU, xla={args.xla}; {args.steps} timed steps after "
        f"{args.warmup} warmup"
    )
    for round_ in range(1, args.rounds + 1):
        order = ["harness", "official"] if round_ % 2 else ["official", "harness"]
        line = []
        for name in order:
            result = measure(HARNESS if name == "harness" else OFFICIAL, args)
            info[name] = result
            runs[name].append(result["images_per_sec"])
            line.append(f"{name} {result['images_per_sec']:8.1f} img/s")
        print(f"round {round_}: " + "   ".join(line), flush=True)
    harness, official = (statistics.median(runs[k]) for k in ("harness", "official"))
    print(
        f"median: harness {harness:.1f} img/s, official {official:.1f} img/s, "
        f"ratio harness/official {harness / official:.3f}"
    )
    print(
        f"trainable parameters: harness (v1.5, no conv bias) {info['harness']['params']:,}, "
        f"official Keras (v1, conv biases) {info['official']['params']:,}; harness MACs per "
        f"image {info['harness']['macs']:,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
