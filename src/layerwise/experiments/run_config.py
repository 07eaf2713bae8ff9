"""``layerwise run CONFIG.toml``: run a saved command (the papers' tables and figures are in configs/).

A config is a command line written down in TOML (Python's ``tomllib``)::

    title = "LWAC Table 2: image classification, baseline vs LWAC"
    note = "optional: what differs from the paper, or what cannot run yet"
    command = "lwac"                          # a `layerwise` command
    [flags]                                   # its flags, exactly as on its command line
    model = "mobilenetv2"                     # --model mobilenetv2
    latency-budget = [0.8]                    # --latency-budget 0.8   (a list: several values)
    augment = true                            # --augment              (true: a switch; false: left out)
    [small]                                   # overrides that run here, on embedded or Debian data
    dataset = "digits"
    [paper]                                   # the paper's settings, on the user's files (--data DIR)
    dataset = "cifar10:{data}"                # {data} is replaced by --data DIR

``flags`` may also be an argv list (``flags = ["--model", "mobilenetv2"]``). A table or figure that
needs several command lines has ``[[runs]]`` entries instead of ``command``, each with ``name``,
``command``, ``flags``, ``small``, ``paper`` and ``note`` (top-level ``flags``, ``small`` and
``paper`` then apply to every run, a run's own on top); each run writes to ``OUT/NAME``, a single
command to ``OUT`` itself. A config with neither ``[small]`` nor ``[paper]`` is a plain saved
command: it runs as written, at the small scale.

Choices (the issue leaves them open):

* ``--scale`` defaults to ``paper`` when ``--data`` is given, else ``small``. A config with no
  table for the chosen scale (e.g. no ``[paper]`` table because the project cannot run the paper's
  setting yet) stops with its note instead of running something else; in a config with
  ``[[runs]]``, the runs without one are left out and named in the output (e.g. a table with four
  paper cells and one small-scale stand-in).
* Overrides are applied in the order flags, ``[small]``/``[paper]``, ``--quick``, ``--set``: later
  wins (argparse's rule for a flag given twice; ``false`` removes a switch set earlier in a table).
* Every key is checked against the command's real parser before anything runs: a flag the command
  does not have, or a value it refuses, is one line naming the key and the file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shlex
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerwiseError
from .common import CommandReport, run_step

log = logging.getLogger(__name__)

NAME = "run"
HELP = "run a saved command from a TOML config (configs/: the papers' tables and figures)"

SCALES = ("small", "paper")
TOP_KEYS = {"title", "note", "command", "flags", "small", "paper", "runs"}
RUN_KEYS = {"name", "note", "command", "flags", "small", "paper"}
#: flags `layerwise run` sets itself on every command it runs
OWN_FLAGS = {"out": "--out of `layerwise run`"}


@dataclass
class ConfigRun:
    """One command line of a config: its name, command and flags at each scale."""

    name: str
    command: str
    argv: list[str]                                    # the base flags, as argv
    base: dict = field(default_factory=dict)           # the base flags, as a table (when given as one)
    scales: dict = field(default_factory=dict)         # scale -> override table (only the scales it has)
    notes: list[str] = field(default_factory=list)


@dataclass
class Config:
    path: Path
    title: str
    runs: list[ConfigRun]
    notes: list[str] = field(default_factory=list)


def add_arguments(p) -> None:
    p.add_argument("config", type=Path, help="a config file, e.g. configs/lwac-table2.toml")
    p.add_argument("--data", metavar="DIR",
                   help="folder with your own copy of the paper's dataset(s) (replaces {data} in the config's "
                        "[paper] table); implies --scale paper")
    p.add_argument("--scale", choices=SCALES,
                   help="small: embedded or Debian data, runs here; paper: the paper's settings on --data DIR "
                        "(default: paper with --data, else small)")
    p.add_argument("--dry-run", action="store_true", help="print the command line(s) it would run, run nothing")
    p.add_argument("--quick", action="store_true", help="pass each command its own --quick (a smoke run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FLAG=VALUE",
                   help="override one flag after the config's own (VALUE in TOML: 3, 0.5, \"text\", [1, 2], "
                        "true), e.g. --set seed=3; repeatable")
    p.add_argument("--only", nargs="+", metavar="RUN", help="run only these runs of a config with [[runs]] "
                                                            "(e.g. one row of a table)")
    p.add_argument("--out", type=Path, help="results folder (default runs/CONFIG-NAME; a config with several "
                                            "runs writes each to OUT/RUN-NAME)")


# ---------------------------------------------------------------------------------------------------
# reading a config

def load_config(path: str | Path) -> Config:
    """Read and check the shape of a config file (not yet its flags: see ``command_lines``)."""
    path = Path(path)
    if not path.is_file():
        raise LayerwiseError(f"config {path} does not exist: pass a .toml file such as configs/lwac-table2.toml "
                             "(`ls configs/` lists them)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise LayerwiseError(f"config {path} is not valid TOML ({exc}): fix that line") from None
    _check_keys(doc, TOP_KEYS, path, "the top level")
    title = doc.get("title")
    if not isinstance(title, str) or not title.strip():
        raise LayerwiseError(f"config {path} has no title: add title = \"PAPER Table N: what it measures\"")
    notes = [_text(doc, "note", path, "the top level")] if "note" in doc else []
    shared = {s: _table(doc, s, path, "the top level") for s in SCALES if s in doc}
    shared_flags = doc.get("flags", {})
    if "runs" in doc:
        if "command" in doc:
            raise LayerwiseError(f"config {path} has both command and [[runs]]: keep one (a single command, or one "
                                 "command per [[runs]] entry)")
        if not isinstance(shared_flags, dict):
            raise LayerwiseError(f"config {path}: top-level flags must be a table when [[runs]] is used")
        entries = doc["runs"]
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise LayerwiseError(f"config {path}: runs must be a non-empty array of tables ([[runs]])")
        runs = [_run_entry(e, i, path, shared_flags, shared) for i, e in enumerate(entries)]
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise LayerwiseError(f"config {path}: two [[runs]] share a name ({names}): give each its own")
    else:
        if "command" not in doc:
            raise LayerwiseError(f"config {path} names no command: add command = \"lwac\" (or unit, compress, ela, "
                                 "...), or [[runs]] entries")
        runs = [_make_run(path.stem, doc, path, "the top level", {}, {})]
    return Config(path, title.strip(), runs, notes)


def _check_keys(table: dict, allowed: set, path: Path, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise LayerwiseError(f"config {path}: unknown key {key!r} in {where}; the keys are "
                                 f"{', '.join(sorted(allowed))} (flags go in [flags], [small] or [paper])")


def _text(table: dict, key: str, path: Path, where: str) -> str:
    value = table[key]
    if not isinstance(value, str):
        raise LayerwiseError(f"config {path}: {key} in {where} must be a string, not {value!r}")
    return value.strip()


def _table(table: dict, key: str, path: Path, where: str) -> dict:
    value = table[key]
    if not isinstance(value, dict):
        raise LayerwiseError(f"config {path}: [{key}] in {where} must be a table of flag = value")
    return value


def _run_entry(entry: dict, i: int, path: Path, shared_flags: dict, shared: dict) -> ConfigRun:
    _check_keys(entry, RUN_KEYS, path, f"[[runs]] entry {i + 1}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or Path(name).name != name or name in (".", ".."):
        raise LayerwiseError(f"config {path}: [[runs]] entry {i + 1} needs name = \"...\" (a folder name, no /)")
    return _make_run(name, entry, path, f"run {name!r}", shared_flags, shared)


def _make_run(name: str, table: dict, path: Path, where: str, shared_flags: dict, shared: dict) -> ConfigRun:
    command = table.get("command")
    if not isinstance(command, str) or not command:
        raise LayerwiseError(f"config {path}: {where} needs command = \"NAME\" (a `layerwise` command)")
    flags = table.get("flags", {})
    argv: list[str] = []
    base = dict(shared_flags)
    if isinstance(flags, list):
        if not all(isinstance(t, str) for t in flags):
            raise LayerwiseError(f"config {path}: flags in {where} must be a table or a list of strings (an argv)")
        argv = list(flags)
    elif isinstance(flags, dict):
        base.update(flags)
    else:
        raise LayerwiseError(f"config {path}: flags in {where} must be a table of flag = value or an argv list")
    scales = {}
    for s in SCALES:
        if s in shared or s in table:
            merged = dict(shared.get(s, {}))
            merged.update(_table(table, s, path, where) if s in table else {})
            scales[s] = merged
    if not scales:   # no [small] / [paper] table: a plain saved command, run as it is
        scales["small"] = {}
    notes = [_text(table, "note", path, where)] if "note" in table and where != "the top level" else []
    return ConfigRun(name, command, argv, base, scales, notes)


# ---------------------------------------------------------------------------------------------------
# from tables to command lines, checked by the real parser

def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    return parser._subparsers._group_actions[0].choices.get(command)  # noqa: SLF001 (argparse keeps no public map)


def _flag_argv(key: str, value, sub: argparse.ArgumentParser, command: str, path: Path, where: str,
               data: str | None) -> list[str]:
    """``key = value`` as argv tokens for ``layerwise COMMAND``; a LayerwiseError names the key and file."""
    if key in OWN_FLAGS:
        raise LayerwiseError(f"config {path}: {key!r} in {where} is set by `layerwise run` itself: drop it "
                             f"(use the {OWN_FLAGS[key]})")
    if key.startswith("-"):
        raise LayerwiseError(f"config {path}: write the flag {key!r} in {where} without its dashes "
                             f"({key.lstrip('-')} = ...)")
    option = f"--{key}"
    action = sub._option_string_actions.get(option)  # noqa: SLF001
    if action is None or action.help == argparse.SUPPRESS:
        raise LayerwiseError(f"config {path}: unknown flag {key!r} in {where}: `layerwise {command}` has no "
                             f"{option} (see `layerwise {command} --help`)")
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise LayerwiseError(f"config {path}: {key!r} in {where} is a switch: write {key} = true or false, "
                                 f"not {value!r}")
        return [option] if value else []
    if isinstance(value, bool):
        raise LayerwiseError(f"config {path}: {key!r} in {where} takes a value, not {value}: see "
                             f"`layerwise {command} --help`")
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and action.nargs in (None, "?"):
        raise LayerwiseError(f"config {path}: {key!r} in {where} takes one value, not a list {value!r}")
    tokens = []
    for v in values:
        if isinstance(v, (dict, list)) or isinstance(v, bool):
            raise LayerwiseError(f"config {path}: {key!r} in {where} has a value {v!r} that is not a number or text")
        text = str(v)
        if "{data}" in text:
            if data is None:
                raise LayerwiseError(f"config {path}: {key!r} in {where} reads your files ({text}): pass --data DIR")
            text = text.replace("{data}", data)
        tokens.append(text)
    return [option, *tokens]


def _check_argv_list(argv: list[str], sub: argparse.ArgumentParser, command: str, path: Path, where: str) -> None:
    for token in argv:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            if option.lstrip("-") in OWN_FLAGS:
                raise LayerwiseError(f"config {path}: {option} in {where} is set by `layerwise run` itself: drop it")
            if option not in sub._option_string_actions:  # noqa: SLF001 - exact names only, no abbreviations
                raise LayerwiseError(f"config {path}: unknown flag {option!r} in {where}: `layerwise {command}` "
                                     f"has no {option} (see `layerwise {command} --help`)")


def parse_override(text: str) -> tuple[str, object]:
    """``FLAG=VALUE`` of ``--set``: VALUE read as a TOML value, else as plain text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise LayerwiseError(f"--set {text!r}: write FLAG=VALUE, e.g. --set seed=3")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


@dataclass
class CommandLine:
    run: ConfigRun
    argv: list[str]        # the full argv of `layerwise`, starting with the command
    out: Path


def command_lines(config: Config, parser_for, *, scale: str, data: str | None, out: Path, quick: bool = False,
                  overrides: list[tuple[str, object]] = (), only: list[str] | None = None) -> list[CommandLine]:
    """Each run's argv at ``scale``, checked by ``parser_for(command)`` (the real parser) without running.

    Runs without settings for ``scale`` are left out (``skipped``); ``only`` keeps the runs so named."""
    lines = []
    single = len(config.runs) == 1
    unknown = sorted(set(only or ()) - {r.name for r in config.runs})
    if unknown:
        raise LayerwiseError(f"--only {' '.join(unknown)}: config {config.path} has no such run; its runs are "
                             f"{', '.join(r.name for r in config.runs)}")
    if not any(scale in r.scales for r in config.runs):
        why = " ".join(config.notes + [n for r in config.runs for n in r.notes]) or f"add a [{scale}] table"
        raise LayerwiseError(f"config {config.path} has no [{scale}] settings: {why}")
    for run in config.runs:
        where_run = "" if single else f" run {run.name!r}:"
        if scale not in run.scales or (only and run.name not in only):
            continue
        parser = parser_for(run.command)
        sub = _subparser(parser, run.command)
        if sub is None:
            raise LayerwiseError(f"config {config.path}: command {run.command!r} is not a `layerwise` command "
                                 "(see `layerwise --help`)")
        _check_argv_list(run.argv, sub, run.command, config.path, "[flags]")
        table = {**run.base, **run.scales[scale]}   # a switch set false in [small]/[paper] is left out
        argv = [run.command, *run.argv]
        for key, value in table.items():
            origin = f"[{scale}]" if key in run.scales[scale] else "[flags]"
            argv += _flag_argv(key, value, sub, run.command, config.path, origin + where_run.rstrip(":"), data)
        if quick:
            if "--quick" not in sub._option_string_actions:  # noqa: SLF001
                raise LayerwiseError(f"--quick: `layerwise {run.command}` has no --quick; run without it")
            argv.append("--quick")
        for key, value in overrides:
            argv += _flag_argv(key, value, sub, run.command, config.path, "--set", data)
        target = out if single else out / run.name
        argv += ["--out", str(target)]
        _check_parse(parser, argv, config.path, run.name)
        lines.append(CommandLine(run, argv, target))
    if not lines:
        raise LayerwiseError(f"--only {' '.join(only or ())}: none of these runs of {config.path} has [{scale}] "
                             "settings; pick runs that do (--dry-run without --only lists them)")
    return lines


def _check_parse(parser: argparse.ArgumentParser, argv: list[str], path: Path, name: str) -> None:
    """Parse ``argv`` as `layerwise` would; its usage error (a bad value, a missing required flag)
    becomes one LayerwiseError naming the file."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit:
        message = err.getvalue().strip().splitlines()
        line = message[-1] if message else "refused by the command's parser"
        raise LayerwiseError(f"config {path} ({name}): {line.removeprefix('layerwise ')}") from None


# ---------------------------------------------------------------------------------------------------
# the command

def _scale(args) -> str:
    scale = args.scale or ("paper" if args.data is not None else "small")
    if scale == "small" and args.data is not None:
        raise LayerwiseError("--data is read only by --scale paper (the small scale uses embedded data): drop "
                             "--data, or drop --scale small")
    return scale


def _parsers():
    from ..cli import build_parser   # the parser a user types into; only the command asked for is loaded

    cache: dict[str, argparse.ArgumentParser] = {}

    def parser_for(command: str) -> argparse.ArgumentParser:
        if command not in cache:
            cache[command] = build_parser(command)
        return cache[command]

    return parser_for


def plan(args) -> tuple[Config, list[CommandLine], object, str]:
    """The config and its checked command lines for these ``layerwise run`` arguments."""
    config = load_config(args.config)
    scale = _scale(args)
    data = None if args.data is None else str(Path(args.data).expanduser())
    out = args.out if args.out is not None else Path("runs") / args.config.stem
    overrides = [parse_override(o) for o in args.overrides]
    parser_for = _parsers()
    lines = command_lines(config, parser_for, scale=scale, data=data, out=out, quick=args.quick,
                          overrides=overrides, only=args.only)
    return config, lines, parser_for, scale


def run_command(args, progress=None) -> CommandReport:
    config, lines, parser_for, scale = plan(args)
    notes = [f"note: {n}" for n in config.notes + [n for c in lines for n in c.run.notes]]
    ran = {c.run.name for c in lines}
    skipped = [r.name for r in config.runs if r.name not in ran and not (args.only and r.name not in args.only)]
    head = [f"{config.title} ({scale} scale)", *notes]
    if skipped:
        head.append(f"not run at the {scale} scale (no [{scale}] settings): {', '.join(skipped)}")
    if args.dry_run:
        return CommandReport("\n".join(head + ["layerwise " + shlex.join(c.argv) for c in lines]))
    text = head + [""]
    for c in lines:
        shown = "layerwise " + shlex.join(c.argv)
        log.info("run: %s", shown)
        start = time.perf_counter()
        report = run_step(parser_for(c.run.command), c.argv, f"config {args.config} run {c.run.name!r}", progress)
        text += [f"== {c.run.name}: {shown}  ({time.perf_counter() - start:.0f} s)", report.text, ""]
    text.append("results: " + ", ".join(str(c.out) for c in lines))
    return CommandReport("\n".join(text))
