"""python -m harness.models [MODEL [CxHxW [CLASSES]]]

Without arguments: a Markdown table of parameters and MACs of every model on the
standard input shapes. With a model name: that network's layer-by-layer summary.
"""

from __future__ import annotations

import sys

from . import MODELS, ModelError, build, macs_per_image, param_count, refusal, summary_table

STANDARD = (
    ("mnist family", (1, 28, 28), 10),
    ("cifar10", (3, 32, 32), 10),
    ("imagenet", (3, 224, 224), 1000),
)


def counts_table() -> str:
    """Markdown: one row per (model, dataset shape); refused pairs say so."""
    lines = [
        "| model | dataset | input | classes | variant | parameters | MACs/image |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name in MODELS:
        for dataset, shape, classes in STANDARD:
            size = "x".join(map(str, shape))
            if refusal(name, shape, classes):
                lines.append(f"| {name} | {dataset} | {size} | {classes} | refused | - | - |")
                continue
            net = build(name, shape, classes)
            lines.append(
                f"| {name} | {dataset} | {size} | {classes} | {net.variant} | "
                f"{param_count(net):,} | {macs_per_image(net) / 1e6:,.1f} M |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(counts_table())
        return 0
    try:
        shape = tuple(int(d) for d in (argv[1] if len(argv) > 1 else "3x32x32").split("x"))
        classes = int(argv[2]) if len(argv) > 2 else 10
        net = build(argv[0], shape, classes)  # type: ignore[arg-type]
    except (ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(net))
    for note in net.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
