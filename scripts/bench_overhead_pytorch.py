#!/usr/bin/env python
"""Does the harness slow down what it measures? PyTorch ResNet50, side by side.

Trains the same ResNet50 (harness.models, built as torch modules) with the same batch
twice per round, each in a fresh process: once in a bare PyTorch loop written here,
once through ``python -m harness``. Rounds alternate the order; the script prints
images/sec of both per round and the ratio harness / bare (target: >= 0.97).

Both run the same fixed warmup and timed steps. The harness uses its default timing
(the device synchronised at the end of windows of ~0.3 s; ``--sync-every 1`` times
every step on its own instead); the bare loop synchronises once, at the end.

    python scripts/bench_overhead_pytorch.py --dataset cifar10 --batch-size 32 --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BARE_LOOP = r"""
import json, sys, time
import torch
from harness import datasets, models
from harness.backend import SGD_MOMENTUM
from harness.backends.pytorch.network import build_module, load_canonical_state

dataset, batch, warmup, steps, lr, threads = sys.argv[1:7]
batch, warmup, steps, lr = int(batch), int(warmup), int(steps), float(lr)
if int(threads):
    torch.set_num_threads(int(threads))
info = datasets.DATASETS[dataset]
net = models.build("resnet50", info.image_shape, info.num_classes)
model = build_module(net)
load_canonical_state(model, models.init_weights(net, 0))
model.train()
opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM)
loss_fn = torch.nn.CrossEntropyLoss()
x = torch.randn(batch, *info.image_shape)
y = torch.randint(0, info.num_classes, (batch,))

def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss

for _ in range(warmup):
    step()
start = time.perf_counter()
for _ in range(steps):
    loss = step()
loss.item()
print(json.dumps({"images_per_sec": batch * steps / (time.perf_counter() - start)}))
"""


def bare(args: argparse.Namespace) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE_LOOP,
            args.dataset,
            str(args.batch_size),
            str(args.warmup),
            str(args.steps),
            str(args.lr),
            str(args.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_sec"]


def harness(args: argparse.Namespace, output: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "harness",
        "--tool",
        "pytorch",
        "--model",
        "resnet50",
        "--dataset",
        args.dataset,
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--warmup-steps",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--repeats",
        "1",
        "--synthetic",
        "--idle-baseline",
        "0",
        "--output-dir",
        str(output),
        "--json",
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.sync_every:
        command += ["--sync-every", str(args.sync_every)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"harness run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["summary"]["images_per_sec"]["mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument(
        "--sync-every", type=int, default=0, help="the harness's --sync-every (0: its default)"
    )
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(1, args.rounds + 1):
            if round_no % 2:
                b, h = bare(args), harness(args, Path(tmp))
            else:
                h, b = harness(args, Path(tmp)), bare(args)
            ratios.append(h / b)
            print(
                f"round {round_no}: bare {b:8.2f} img/s   harness {h:8.2f} img/s   "
                f"ratio {h / b:.3f}",
                flush=True,
            )
    timing = f"--sync-every {args.sync_every}" if args.sync_every else "default window timing"
    spread = f", min {min(ratios):.3f} max {max(ratios):.3f}" if len(ratios) > 1 else ""
    print(
        f"ResNet50 {args.dataset} batch {args.batch_size}, {args.steps} timed steps, {timing}: "
        f"harness/bare median ratio {statistics.median(ratios):.3f}{spread} (target >= 0.97)"
    )


if __name__ == "__main__":
    main()
