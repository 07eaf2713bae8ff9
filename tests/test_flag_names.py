"""One flag name (and one unit) per concept across commands; the old names still parse, to the
same destination in the new unit, and log a warning naming the new flag (kept for one release)."""

from __future__ import annotations

import logging

import pytest

from layerwise.cli import build_parser

COMMON = ["--model", "tiny-cnn", "--dataset", "digits"]

# (command, old flag + value, new flag + value that must parse to the same namespace)
ALIASES = [
    ("lwac", ["--tolerance", "0.005"], ["--max-drop", "0.5"]),          # fraction -> percentage points
    ("lwac", ["--tolerance", "0.02"], ["--max-drop", "2"]),
    ("lwac", ["--n", "40"], ["--latency-n", "40"]),
    ("profile", ["--n", "7"], ["--latency-n", "7"]),
    ("compress", ["--base-epochs", "3"], ["--epochs", "3"]),
    ("unit", ["--limit", "30"], ["--val-limit", "30", "--test-limit", "30"]),
]


def _parse(command: str, flags: list[str]):
    return vars(build_parser(command).parse_args([command, *COMMON, *flags]))


@pytest.mark.parametrize("command, old, new", ALIASES, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_an_old_flag_parses_like_the_new_one_and_warns(command, old, new, caplog):
    with caplog.at_level(logging.WARNING):
        got = _parse(command, old)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and old[0] in warnings[0] and "deprecated" in warnings[0] and new[0] in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        want = _parse(command, new)
    assert not caplog.records                      # the new name is silent
    assert got.pop("max_drop", None) == pytest.approx(want.pop("max_drop", None))   # 100 x the old fraction
    assert got == want


def test_old_names_are_hidden_from_help_and_the_new_help_names_unit_and_alias():
    p = build_parser("lwac")
    text = p._subparsers._group_actions[0].choices["lwac"].format_help()   # noqa: SLF001
    assert "--tolerance" not in text.split("--max-drop", 1)[0]   # not listed as an option of its own
    assert "percentage points" in text and "--tolerance, a fraction, is its deprecated alias" in " ".join(text.split())


@pytest.mark.parametrize("command", ["unit", "lwac", "stack", "export-c"])
def test_every_accuracy_drop_flag_is_max_drop_in_points(command):
    sub = build_parser(command)._subparsers._group_actions[0].choices[command]   # noqa: SLF001
    action = sub._option_string_actions["--max-drop"]                              # noqa: SLF001
    assert action.default == 0.5 and "percentage points" in action.help


@pytest.mark.parametrize("command", ["lwac", "profile", "compress", "stack"])
def test_every_timing_count_is_latency_n(command):
    sub = build_parser(command)._subparsers._group_actions[0].choices[command]   # noqa: SLF001
    assert "--latency-n" in sub._option_string_actions                           # noqa: SLF001
