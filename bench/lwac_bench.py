"""LWAC done-when benchmark: dense vs LWAC side by side, interleaved, in one run per model.

    python bench/lwac_bench.py [--threads 1] [--n 400] [--out runs/bench-lwac]

Runs ``layerwise lwac`` for resnet20 on digits (32x32, 3 channels) and multibranch-cnn on
basic-motions, each with a 0.7 latency budget, and prints each command's table and checks:
accuracy and latency against dense, the ACU overhead, the budget, the share of distinct
execution paths, and each ``lwac~drop-K`` against the static network with the best K blocks
removed (``static-drop-K``), paired on the same test images. ``--policy learned`` trains the
gates jointly with the network (``--policy`` is passed to every command).
Base models are trained on first use and cached in OUT/<model>/base.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerwise.cli import main

CASES = [
    ("resnet20", ["--dataset", "digits", "--size", "32", "--channels", "3"]),
    ("multibranch-cnn", ["--dataset", "basic-motions", "--epochs", "60"]),
]


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1")
    p.add_argument("--n", default="400")
    p.add_argument("--out", type=Path, default=Path("runs/bench-lwac"))
    p.add_argument("--only", choices=[c[0] for c in CASES])
    p.add_argument("--policy", default="auto", choices=("auto", "neural", "heuristic", "learned"))
    args = p.parse_args(argv)
    code = 0
    for model, rest in CASES:
        if args.only and model != args.only:
            continue
        cmd = ["lwac", "--model", model, *rest, "--latency-budget", "0.7", "--threads", args.threads,
               "--latency-n", args.n, "--policy", args.policy, "--out", str(args.out / (model if args.policy == "auto" else f"{model}-{args.policy}"))]
        print("$ layerwise " + " ".join(cmd), flush=True)
        code |= main(cmd)
    return code


if __name__ == "__main__":
    sys.exit(run())
