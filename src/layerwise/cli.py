"""The ``layerwise`` command: parses arguments, runs a command module, prints its report.

Each command lives in ``layerwise.experiments.<module>`` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run_command(args, progress) -> CommandReport``; this file is the only
place that prints.

The promise at this boundary: bad input, or a state of the machine the user can fix (a path that
cannot be read or written, a full disk, a file that is not what it should be, too little memory),
exits with code 2 and ONE line on stderr that names the problem and the fix; nothing saved before
is lost. Anything else is a bug: exit code 1 and one line that says so and how to report it.
``--debug`` prints the full traceback as well.

Before a command runs, its output folder (``--out``) is checked, locked and prepared
(``experiments.common.prepared_out_dir``): a bad folder fails at once, not after an epoch.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import importlib
import importlib.util
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from .errors import LayerwiseError

COMMAND_MODULES = ("demo", "profile", "train_run", "unit_run", "compress_run", "lwac_run", "ela_run", "report_run", "bench", "export_c", "run_config", "stack_run")

# Commands whose --out is a file, or that have none: no folder to prepare.
_NO_OUT_FOLDER = {"report", "list"}

EXIT_BAD_INPUT = 2
EXIT_BUG = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the fix: see --help), not the usage block."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _progress():
    """A bar on a terminal, a periodic INFO line (every 30 s) in a log file or CI (``layerwise.progress``)."""
    from .progress import progress_factory
    return progress_factory(sys.stderr)


def _command_modules(only: str | None = None):
    """The command modules (every one, or the one whose NAME is ``only``)."""
    names = COMMAND_MODULES if only is None else [m for m in COMMAND_MODULES if _name_and_help(m)[0] == only]
    return [importlib.import_module(f"layerwise.experiments.{name}") for name in names]


def _name_and_help(module: str) -> tuple[str, str]:
    """A command module's ``NAME`` and ``HELP`` read from its source without importing it: importing
    a command pulls in torch (seconds), and ``layerwise --help`` needs only these two strings."""
    spec = importlib.util.find_spec(f"layerwise.experiments.{module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("NAME", "HELP"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["NAME"], found["HELP"]


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default in ``--help`` unless its help already speaks of one."""

    def _format_action(self, action):
        if action.help == "" and self._get_help_string(action):
            action = argparse.Action(action.option_strings, action.dest, nargs=action.nargs, default=action.default,
                                     metavar=action.metavar, help=self._get_help_string(action))
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" not in text and action.default is not None and action.default is not False
                and action.default != argparse.SUPPRESS
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def _cmd_list(args, progress=None):
    from .data import list_datasets
    from .experiments.common import CommandReport
    from .models import list_models
    if getattr(args, "params", False):
        return CommandReport(_params_table())
    return CommandReport("models:   " + ", ".join(list_models()) + "\ndatasets: " + ", ".join(list_datasets()))


def _params_table() -> str:
    """Each model's parameter count beside the count its paper prints (``models.param_table``)."""
    from .experiments.common import text_table
    from .models.param_table import parameter_rows

    rows, notes = [], []
    for r in parameter_rows():
        e, d = r.entry, r.difference
        paper = "-" if e.published is None else f"{e.published / 1e6:g}M" if e.rounded else f"{e.published:,}"
        if e.note:
            notes.append(f"* {e.model}: {e.note}")
        rows.append([e.model, e.source + (" *" if e.note else ""), "x".join(map(str, e.input_shape)),
                     e.num_classes, f"{r.params:,}", paper, "-" if d is None else f"{100 * d:+.2f}%"])
    return "\n".join([text_table(rows, ["model", "paper's source", "input", "classes", "params", "paper", "diff"],
                                  left=2), *notes,
                       "(paper: the count as printed, rounded; UnIT's from its Table 1 layer shapes, weights + "
                       "biases; diff = (ours - paper) / paper)"])


def _has_option(p: argparse.ArgumentParser, option: str) -> bool:
    return option in p._option_string_actions  # noqa: SLF001  (argparse keeps no public map)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser (every command's options), or with ``command`` the parser that knows only
    that command's options and lists the others by name and help (what ``main`` needs: fast)."""
    parser = _Parser(prog="layerwise", description="Fit deep networks on constrained devices, layer by layer: UnIT, LWAC, AdaLayerNet, ELA.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback too (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True)
    lazy = command is not None
    loaded = {m.NAME: m for m in _command_modules(command if lazy else None)}
    if loaded:
        from .experiments.common import FRESH_RUN_CHECKPOINTS   # imports torch: only when a command runs
    for name in COMMAND_MODULES:
        cmd, help_ = _name_and_help(name) if lazy else (None, None)
        if lazy and cmd not in loaded:
            sub.add_parser(cmd, help=help_, formatter_class=_HelpFormatter)   # listed, not loaded
            continue
        module = loaded[cmd] if lazy else importlib.import_module(f"layerwise.experiments.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, formatter_class=_HelpFormatter)
        module.add_arguments(p)
        for action in p._actions:  # noqa: SLF001 - argparse formats no help at all for help=None
            if action.help is None and action.option_strings:
                action.help = ""
        if module.NAME in FRESH_RUN_CHECKPOINTS and not _has_option(p, "--overwrite"):
            p.add_argument("--overwrite", action="store_true",
                           help="start afresh even if OUT holds another run's checkpoints, replacing them "
                                "(without it such a run refuses to start)")
        p.set_defaults(func=module.run_command)
    p = sub.add_parser("list", help="registered models and datasets")
    p.add_argument("--params", action="store_true",
                   help="print each model's parameter count beside the count its paper prints")
    p.set_defaults(func=_cmd_list)
    for p in sub.choices.values():  # `layerwise CMD ... --debug` works as well as `layerwise --debug CMD ...`
        if not _has_option(p, "--debug"):
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


# ---------------------------------------------------------------------------------------------------
# expected failures -> one line

def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    what = exc.strerror or str(exc) or type(exc).__name__
    at = f" ({where})" if where is not None else ""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{at}: free some space (or use --out on another disk) and rerun; "
                "files saved before are kept (every write is atomic)")
    if code == errno.EROFS:
        return f"read-only file system{at}: choose an --out folder on a writable disk"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied{at}: choose a path you can read and write, or fix its permissions"
    if code == errno.ENOENT:
        return f"no such file or directory{at}: check the path"
    if code == errno.EISDIR:
        return f"is a directory{at}: pass a file path there"
    if code == errno.ENOTDIR:
        return f"not a directory{at}: a part of that path is a file; check the path"
    if code == errno.EEXIST:
        return f"already exists{at}: choose another path"
    if code == errno.ENOMEM:
        return "out of memory: use a smaller --size or --batch-size, fewer samples, or a machine with more memory"
    return f"{what}{at}: check the path, its permissions and the disk"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    if isinstance(exc, RuntimeError):
        msg = str(exc)
        return "can't allocate memory" in msg or "CUDA out of memory" in msg or "DefaultCPUAllocator" in msg
    return False


def expected_error_line(exc: BaseException) -> str | None:
    """The one line for an expected failure, or None for an unexpected one (a bug)."""
    if isinstance(exc, LayerwiseError):
        return str(exc).strip().replace("\n", " ")
    if isinstance(exc, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}): pass a text file written by "
                "layerwise or saved as UTF-8 (--debug shows which file)")
    if isinstance(exc, json.JSONDecodeError):
        return (f"a file is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}): pass a file written "
                "by layerwise (--debug shows which file)")
    if _is_out_of_memory(exc):
        return ("out of memory: use a smaller --size or --batch-size (or --batched), fewer samples, or a machine "
                "with more memory")
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    return None


def bug_line(exc: BaseException) -> str:
    from .storage import first_line
    return (f"internal error ({first_line(exc, 160)}): this is a bug in layerwise, not in your input; "
            "please report it with the command you ran; rerun with --debug to see the full traceback")


def _out_folder(args: argparse.Namespace) -> Path | None:
    """The output folder of this command (``--out`` or its default), or None if it has none."""
    from .experiments.common import default_out
    if args.command in _NO_OUT_FOLDER or not hasattr(args, "out"):
        return None
    if getattr(args, "readme", None) is not None:   # `bench --readme SUMMARY` writes README.md only
        return None
    if args.out is not None:
        return Path(args.out)
    if getattr(args, "model", None) is None or getattr(args, "dataset", None) is None:
        return None
    return default_out(args.command, args.model, args.dataset)


def _run(args: argparse.Namespace):
    from .experiments.common import check_limits, prepared_out_dir
    from .storage import check_checkpoint_file

    check_limits(args)
    if getattr(args, "checkpoint", None) is not None:
        check_checkpoint_file(args.checkpoint)
    with contextlib.ExitStack() as stack:
        folder = _out_folder(args)
        if folder is not None:
            args.out = stack.enter_context(prepared_out_dir(
                folder, args.command, resume=bool(getattr(args, "resume", False) or getattr(args, "resume_any", False)),
                overwrite=bool(getattr(args, "overwrite", False))))
        return args.func(args, _progress())


def _fail(exc: BaseException, debug: bool) -> int:
    """Print the one line for ``exc`` (after its traceback with --debug); return the exit code."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt):
        print("layerwise: interrupted", file=sys.stderr)
        return 130
    line = expected_error_line(exc)
    if line is not None:
        print(f"layerwise: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"layerwise: {bug_line(exc)}", file=sys.stderr)
    return EXIT_BUG


def _command_in(argv: list[str]) -> str:
    """The command named in ``argv`` ("" when there is none: then only names and help are needed)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        # before parsing: a deprecated flag name logs its warning while argparse reads it
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
        parser = build_parser(_command_in(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2, one line already printed)
            return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        debug = bool(getattr(args, "debug", False))
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        from .malloc import keep_freed_memory

        keep_freed_memory()   # reuse freed tensor memory: without it page faults cost UnIT half its time
        report = _run(args)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the boundary: every failure is one line
        return _fail(exc, debug)
    try:
        print(report.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `layerwise ... | head`: the reader left; not an error of ours
        with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
