"""``layerwise demo``: the main job, on embedded data, offline.

Trains one ResNet-20 on the digits set (LWAC's bypass-robust recipe, at digits' own 8x8, so that it is an
ordinary model for every method and bypassable for LWAC), then runs each method's command on
digits (the profile of that model; UnIT on the UnIT paper's small CNN; AdaLayerNet and LWAC on the
shared ResNet-20; the three stacked on that ResNet-20 by ``layerwise stack``, AdaLayerNet then UnIT
then LWAC, each stage and the stack measured alike; ELA training its four variants) each into its
own results directory under ``--out``, and builds one HTML report over all of them. Every figure
in it comes from those runs.

A finished step leaves ``demo.json`` (its command line and time) beside its results; a second
``layerwise demo`` with the same settings reuses it instead of running it again (``--fresh`` runs
everything anew). ``--quick`` passes each command its own ``--quick`` (tiny settings, 80 validation
and 80 test images: a smoke run that checks the whole pipeline, not results to quote).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..errors import LayerwiseError
from ..report import build_report
from ..storage import atomic_write_json
from .common import CommandReport, run_step
from .recipes import ROBUST_RESIDUAL, checkpoint_token, token_base

log = logging.getLogger(__name__)

NAME = "demo"
HELP = "the main job on embedded data: every method and the stacked variant on digits, then one HTML report"

DIGITS = ["--dataset", "digits", "--size", "8"]  # their own 8x8: upsampling multiplies every MAC count, adds no detail
BASE = checkpoint_token("resnet20")

# (results sub-directory, command line); --out, --seed, --threads and --quick are added per run;
# the token BASE becomes the checkpoint the "base" step wrote.
STEPS: list[tuple[str, list[str]]] = [
    ("base", ["train", "--model", "resnet20", *DIGITS, *ROBUST_RESIDUAL, "--epochs", "15"]),
    ("profile", ["profile", "--model", "resnet20", *DIGITS, "--checkpoint", BASE, "--latency-n", "50"]),
    ("unit", ["unit", "--model", "tiny-cnn", "--dataset", "digits", "--no-shift"]),
    ("compress", ["compress", "--model", "resnet20", *DIGITS, "--checkpoint", BASE, "--budget", "0.15"]),
    ("lwac", ["lwac", "--model", "resnet20", *DIGITS, "--checkpoint", BASE]),
    ("stack", ["stack", "--model", "resnet20", *DIGITS, "--checkpoint", BASE, "--budget", "0.15"]),
    ("ela", ["ela", "--model", "resnet20", *DIGITS, "--epochs", "6"]),
]
QUICK_FLAG = {"base": ["--epochs", "2"]}
# --quick on top of each step's own: fixed stratified subsets of 80 validation and 80 test images,
# so that the smoke run of every step fits in 90 s on 2 cores (the UnIT runtime, a per-MAC reference
# simulation, dominates what is left)
QUICK_LIMITS = ["--val-limit", "80", "--test-limit", "80"]
NEEDS = {"profile": "base", "compress": "base", "lwac": "base", "stack": "base"}


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for every results directory")
    p.add_argument("--quick", action="store_true", help="tiny settings for every step: a smoke run")
    p.add_argument("--only", nargs="+", choices=[s for s, _ in STEPS],
                   help="run only these steps (and the base model they need)")
    p.add_argument("--fresh", action="store_true", help="run every step again instead of reusing finished ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu")


def step_argv(step: str, argv: list[str], args) -> list[str]:
    argv = [str(args.out / "base" / "checkpoint.pt") if token_base(a) else a for a in argv]
    extra = ["--out", str(args.out / step), "--seed", str(args.seed), "--device", args.device]
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    if args.quick:
        extra += QUICK_FLAG.get(step, ["--quick"]) + QUICK_LIMITS
    return argv + extra


def _finished(folder: Path, argv: list[str]) -> dict | None:
    """The step's marker when it finished with this very command line, else None."""
    try:
        mark = json.loads((folder / "demo.json").read_text())
    except (OSError, ValueError):
        return None
    return mark if mark.get("argv") == argv and (folder / "results.json").is_file() else None


def run_command(args, progress=None) -> CommandReport:
    from ..cli import build_parser  # the same parser a user types into: one path for every command

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001  (argparse keeps no public map)
    wanted = set(args.only or [s for s, _ in STEPS])
    wanted |= {NEEDS[s] for s in wanted if s in NEEDS}
    lines, dirs, total = [], [], time.perf_counter()
    for step, argv in STEPS:
        if step not in wanted:
            continue
        if argv[0] not in commands:
            raise LayerwiseError(f"demo step {step!r} needs the `layerwise {argv[0]}` command, which is not installed")
        full = step_argv(step, argv, args)
        if "--overwrite" in commands[argv[0]]._option_string_actions:  # noqa: SLF001
            full.append("--overwrite")          # the step's folder is the demo's own: a rerun replaces it
        folder = args.out / step
        mark = None if args.fresh else _finished(folder, full)
        if mark is not None:
            log.info("demo: %s reused from an earlier run (%.0f s then)", step, mark["seconds"])
            lines += [f"== {step}: reused {folder} (same command, {mark['seconds']:.0f} s when it ran; "
                      "--fresh runs it again)", ""]
        else:
            log.info("demo: layerwise %s", " ".join(full))
            start = time.perf_counter()
            report = run_step(parser, full, f"demo step {step!r}", progress)
            took = time.perf_counter() - start
            atomic_write_json(folder / "demo.json", {"argv": full, "seconds": took})
            lines += [f"== {step}: layerwise {' '.join(full)}  ({took:.0f} s)", report.text, ""]
        if step != "base":
            dirs.append(folder)
    page = build_report(dirs, args.out / "report.html")
    lines.append(f"report: {page}  (demo {time.perf_counter() - total:.0f} s)")
    return CommandReport("\n".join(lines))
