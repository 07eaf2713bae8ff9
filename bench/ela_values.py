"""Where MRLA-B's training time goes, side by side in one run (interleaved training steps).

Compares, on one batch of CIFAR-shaped input, one SGD step of:
  resnet            the plain bottleneck ResNet
  mrla-b/stack      MRLA-B, values stacked at every layer + one einsum (the reference's torch.cat growth)
  mrla-b/sum        MRLA-B, each value stored once per stage, one batched product (the default)
  mrla-b/loop       MRLA-B, values kept in a list and summed term by term
  mrla-l            MRLA-L
  ela/half-stack    MRLA-B (stack) with every second attention layer of each stage removed
  ela/half-sum      the same with the sum mode

Run:  python bench/ela_values.py --model resnet56 --batch 32 --rounds 8 --threads 2
Prints median and IQR per step and the ratio of medians to mrla-b/stack.
"""

from __future__ import annotations

import argparse

import torch

from layerwise.ela.step_timing import compare_train_steps
from layerwise.models import build_model
from layerwise.models.mrla import mrla_blocks


def _half(model):
    for name, block in mrla_blocks(model):
        if int(name.split(".")[-1]) % 2 == 1:
            block.skip_attention = True
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56", choices=("resnet20", "resnet56", "resnet110"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)
    shape = (3, args.size, args.size)
    m = args.model
    models = {
        "resnet": build_model(m, shape, 10),
        "mrla-b/stack": build_model(f"{m}-mrla-b", shape, 10, values="stack"),
        "mrla-b/sum": build_model(f"{m}-mrla-b", shape, 10, values="sum"),
        "mrla-b/loop": build_model(f"{m}-mrla-b", shape, 10, values="loop"),
        "mrla-l": build_model(f"{m}-mrla-l", shape, 10),
        "ela/half-stack": _half(build_model(f"{m}-ela", shape, 10, values="stack")),
        "ela/half-sum": _half(build_model(f"{m}-ela", shape, 10, values="sum")),
    }
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    res = compare_train_steps(models, x, y, rounds=args.rounds, warmup=2, threads=args.threads)
    base = res["mrla-b/stack"].median_ms
    print(f"{m}, batch {args.batch}, {args.size}x{args.size}, {res['resnet'].threads} threads, "
          f"n={args.rounds} interleaved SGD steps each")
    print(f"{'variant':16s} {'median ms':>10s} {'IQR ms':>8s} {'vs mrla-b/stack':>16s}")
    for k, r in res.items():
        print(f"{k:16s} {r.median_ms:10.1f} {r.iqr_ms:8.1f} {r.median_ms / base:16.2f}")


if __name__ == "__main__":
    main()
