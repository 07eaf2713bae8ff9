"""The ``layerwise`` command: parses arguments, runs a command module, prints its report.

Each command lives in ``layerwise.experiments.<module>`` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run_command(args, progress) -> CommandReport``; this file is the only
place that prints. Bad input exits with code 2 and one line on stderr that names the problem and
the fix.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from functools import partial

from .errors import LayerwiseError

COMMAND_MODULES = ("demo", "profile", "train_run", "unit_run", "compress_run", "lwac_run", "ela_run", "report_run")


def _progress():
    from tqdm import tqdm
    return partial(tqdm, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


def _command_modules():
    return [importlib.import_module(f"layerwise.experiments.{name}") for name in COMMAND_MODULES]


def _cmd_list(args, progress=None):
    from .data import list_datasets
    from .experiments.common import CommandReport
    from .models import list_models
    return CommandReport("models:   " + ", ".join(list_models()) + "\ndatasets: " + ", ".join(list_datasets()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layerwise", description="Fit deep networks on constrained devices, layer by layer: UnIT, LWAC, AdaLayerNet, ELA.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run_command)
    p = sub.add_parser("list", help="registered models and datasets")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        report = args.func(args, _progress())
    except LayerwiseError as exc:
        print(f"layerwise: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layerwise: interrupted", file=sys.stderr)
        return 130
    print(report.text)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
