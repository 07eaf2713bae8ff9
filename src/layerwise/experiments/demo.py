"""``layerwise demo``: the main job, on embedded data, offline.

Runs each method's command on the digits set (and the profile of its base model) one after the
other, each into its own results directory under ``--out``, then builds one HTML report over all of
them. Every figure in it comes from those runs. ``--quick`` passes each command its own ``--quick``
(tiny settings: a smoke run that checks the whole pipeline, not results to quote).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..errors import LayerwiseError
from ..report import build_report
from .common import CommandReport, run_step

log = logging.getLogger(__name__)

NAME = "demo"
HELP = "the main job on embedded data: every method on digits, then one HTML report"

CIFAR_SHAPED = ["--dataset", "digits", "--size", "32", "--channels", "3"]

# (results sub-directory, command line); --out, --seed, --threads and --quick are added per run.
STEPS: list[tuple[str, list[str]]] = [
    ("profile", ["profile", "--model", "resnet20", *CIFAR_SHAPED, "--n", "50"]),
    ("unit", ["unit", "--model", "tiny-cnn", "--dataset", "digits"]),
    ("compress", ["compress", "--model", "resnet20", *CIFAR_SHAPED, "--budget", "0.15"]),
    ("lwac", ["lwac", "--model", "resnet20", *CIFAR_SHAPED]),
    ("ela", ["ela", "--model", "resnet20", *CIFAR_SHAPED]),
]
QUICK_FLAG = {"profile": ["--n", "5", "--warmup", "1", "--batched", "4"]}


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for every results directory")
    p.add_argument("--quick", action="store_true", help="tiny settings for every step: a smoke run")
    p.add_argument("--only", nargs="+", choices=[s for s, _ in STEPS], help="run only these steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu")


def step_argv(step: str, argv: list[str], args) -> list[str]:
    extra = ["--out", str(args.out / step), "--seed", str(args.seed), "--device", args.device]
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    if args.quick:
        extra += QUICK_FLAG.get(step, ["--quick"])
    return argv + extra


def run_command(args, progress=None) -> CommandReport:
    from ..cli import build_parser  # the same parser a user types into: one path for every command

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001  (argparse keeps no public map)
    lines, dirs = [], []
    for step, argv in STEPS:
        if args.only and step not in args.only:
            continue
        if argv[0] not in commands:
            raise LayerwiseError(f"demo step {step!r} needs the `layerwise {argv[0]}` command, which is not installed")
        full = step_argv(step, argv, args)
        log.info("demo: layerwise %s", " ".join(full))
        start = time.perf_counter()
        report = run_step(parser, full, f"demo step {step!r}", progress)
        took = time.perf_counter() - start
        lines += [f"== {step}: layerwise {' '.join(full)}  ({took:.0f} s)", report.text, ""]
        dirs.append(args.out / step)
    page = build_report(dirs, args.out / "report.html")
    lines.append(f"report: {page}")
    return CommandReport("\n".join(lines))
