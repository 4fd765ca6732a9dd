"""Speed of the harness's JAX backend against a plain Flax ResNet-50 in a bare loop.

Both sides train ResNet-50 v1.5 with the ImageNet architecture (7x7/2 stem, 3x3/2 max
pool, [3, 4, 6, 3] bottlenecks, stride on the 3x3 conv) on synthetic 3x32x32 images,
10 classes, batch 32, SGD momentum 0.9, fp32, on one device (the CPU by default):

- harness: the catalogue's resnet50 (its ImageNet variant, built for 224x224 and given a
  32x32 input, which the network allows: the head is a global average pool), trained by
  JaxTrainer.train_step (shard_map over a one-device Mesh, donated state);
- official: a ResNet-50 written the usual Flax way (linen modules, flax TrainState, a
  jitted step with donated state), no harness code.

Each measurement runs in a fresh subprocess; the two alternate for ``--rounds`` rounds.
Prints images/sec per round, the medians and the ratio harness / official (target >= 0.9),
also for each process's best timing window (robust to other load on a shared machine).

    python scripts/bench_official_jax.py [--rounds 3] [--steps 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

SIDES = ("harness", "official")


def official_step(batch: int, size: int, classes: int):
    """(step, state, batch arrays) of a plain Flax ResNet-50 v1.5."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    class Bottleneck(nn.Module):
        width: int
        stride: int

        @nn.compact
        def __call__(self, x, train: bool):
            norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
            y = nn.relu(norm()(nn.Conv(self.width, (1, 1), use_bias=False)(x)))
            y = nn.Conv(self.width, (3, 3), self.stride, padding=((1, 1), (1, 1)), use_bias=False)(
                y
            )
            y = nn.relu(norm()(y))
            y = norm()(nn.Conv(self.width * 4, (1, 1), use_bias=False)(y))
            if x.shape[-1] != self.width * 4 or self.stride != 1:
                x = norm()(nn.Conv(self.width * 4, (1, 1), self.stride, use_bias=False)(x))
            return nn.relu(x + y)

    class ResNet50(nn.Module):
        classes: int

        @nn.compact
        def __call__(self, x, train: bool = True):
            x = nn.Conv(64, (7, 7), 2, padding=((3, 3), (3, 3)), use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
            for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
                for block in range(blocks):
                    x = Bottleneck(width, 2 if stage and not block else 1)(x, train)
            return nn.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))

    class State(train_state.TrainState):
        batch_stats: Any

    model = ResNet50(classes)
    images = jnp.asarray(
        np.random.default_rng(0).standard_normal((batch, size, size, 3)), jnp.float32
    )
    labels = jnp.asarray(np.random.default_rng(1).integers(0, classes, batch), jnp.int32)
    variables = model.init(jax.random.key(0), images[:1], train=False)
    state = State.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(0.1, momentum=0.9),
    )

    def _step(state: State, x, y):
        def loss_fn(params):
            logits, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, x, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads, batch_stats=stats), loss

    step = jax.jit(_step, donate_argnums=0)

    holder = {"state": state}

    def run() -> Any:
        holder["state"], loss = step(holder["state"], images, labels)
        return loss

    return run, sum(leaf.size for leaf in jax.tree_util.tree_leaves(state.params))


def harness_step(batch: int, size: int, classes: int):
    """JaxTrainer.train_step on the catalogue's ImageNet-architecture ResNet-50."""
    import jax

    from harness import datasets, models
    from harness.backend import WorkerContext
    from harness.backends.jax.trainer import JaxTrainer
    from harness.spec import RunSpec

    network = dataclasses.replace(
        models.build("resnet50", (3, 224, 224), classes), input_shape=(3, size, size)
    )
    spec = RunSpec(
        tool="jax", model="resnet50", dataset="cifar10", batch_size=batch, learning_rate=0.1
    )
    source = datasets.open_source("cifar10", "train", synthetic=True)
    trainer = JaxTrainer(
        WorkerContext(spec, network, source, None, lambda: models.init_weights(network, 0))
    )
    rng = np.random.default_rng(0)
    data = trainer.device_batch(
        rng.standard_normal((batch, size, size, 3)).astype(np.float32),
        rng.integers(0, classes, batch).astype(np.int32),
    )
    jax.block_until_ready(data)
    return (lambda: trainer.train_step(data)), models.param_count(network)


def measure(side: str, args: argparse.Namespace) -> dict[str, float]:
    """Images/sec of ``side`` in this process: warmup, then ``steps`` timed steps in
    windows of ``window`` steps; the mean over all and the best window's."""
    import jax

    build = harness_step if side == "harness" else official_step
    run, params = build(args.batch, args.size, args.classes)
    for _ in range(args.warmup):
        jax.block_until_ready(run())
    windows = []
    for first in range(0, args.steps, args.window):
        steps = min(args.window, args.steps - first)
        start = time.perf_counter()
        for _ in range(steps):
            token = run()
        jax.block_until_ready(token)
        windows.append((steps, time.perf_counter() - start))
    total = sum(n for n, _ in windows) * args.batch / sum(t for _, t in windows)
    best = max(n * args.batch / t for n, t in windows)
    return {"images_per_sec": total, "best_window": best, "params": params}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--window", type=int, default=5, help="steps per timing window")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return 0

    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    passed = [
        f"--{k}={getattr(args, k)}"
        for k in ("steps", "warmup", "window", "batch", "size", "classes")
    ]
    speeds: dict[str, list[float]] = {side: [] for side in SIDES}
    bests: dict[str, list[float]] = {side: [] for side in SIDES}
    print(
        f"ResNet-50 v1.5 (ImageNet architecture), {args.size}x{args.size} inputs, "
        f"{args.classes} classes, batch {args.batch}, {args.steps} timed steps after "
        f"{args.warmup} warmup, platform {env['JAX_PLATFORMS']}"
    )
    for round_ in range(1, args.rounds + 1):
        for side in SIDES if round_ % 2 else SIDES[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, f"--worker={side}", *passed],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            found = json.loads(out.stdout.strip().splitlines()[-1])
            speeds[side].append(found["images_per_sec"])
            bests[side].append(found["best_window"])
            print(
                f"round {round_}  {side:8s}  {found['images_per_sec']:8.1f} images/sec"
                f"  (best window {found['best_window']:.1f}; {found['params']:,} parameters)",
                flush=True,
            )
    # On a shared machine other load slows whole rounds down: the median over rounds of
    # each process's best window is the least disturbed figure, the plain median the usual.
    for label, values in (("median", speeds), ("median best window", bests)):
        med = {side: statistics.median(v) for side, v in values.items()}
        print(
            f"{label}: harness {med['harness']:.1f}, official {med['official']:.1f} "
            f"images/sec; ratio harness/official {med['harness'] / med['official']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
