"""configs/ and `layerwise run`: every config parses and maps to real flags at both scales (fast),
bad configs fail with one line naming the key and the file, and every config runs at small scale
(a smoke run: the command's own --quick plus the smallest limits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from layerwise.cli import build_parser, main
from layerwise.data.fashion_mnist import DEBIAN_DIR
from layerwise.errors import LayerwiseError
from layerwise.experiments import run_config
from layerwise.results import read_results

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
# every table and figure the configs must cover: (paper prefix, table/figure suffixes)
EXPECTED = {"lwac": ["table1", "table2", "table3", "table4"],
            "adalayernet": ["table1", "table2", "fig6"],
            "unit": ["fig5", "fig6", "fig7", "table2"],
            "ela": ["table1", "table3", "table4", "table6", "table7"]}

# the smallest settings each command takes in the smoke run, on top of the config and --quick: one
# epoch on a few dozen images, a few timed calls. A smoke run checks that a config's command line
# runs end to end and writes valid results, not what it measures.
SMOKE = {
    "unit": ["sweep=\"20\"", "no-shift=true", "epochs=1"],
    "lwac": ["epochs=1", "latency-n=5", "static-k=[1]", "no-shallow=true"],
    "compress": ["epochs=1", "finetune-epochs=1", "latency-n=5"],
    # 16x16 inputs: the deep MRLA ResNets at 32x32 take minutes and about 10 GB each here
    "ela": ["seeds=[0]", "step-rounds=1", "size=16", "epochs=1"],
}
COMMON_SMOKE = ["train-limit=40", "val-limit=20", "test-limit=20", "threads=1"]
FASHION_MNIST = DEBIAN_DIR   # where the small scale reads Fashion-MNIST


def _args(*argv: str) -> argparse.Namespace:
    return build_parser("run").parse_args(["run", *argv])


def _plan(path: Path, *argv: str):
    return run_config.plan(_args(str(path), *argv))


def test_every_table_and_figure_has_a_config():
    names = {p.stem for p in CONFIGS}
    missing = [f"{paper}-{t}" for paper, ts in EXPECTED.items() for t in ts if f"{paper}-{t}" not in names]
    assert not missing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_maps_to_real_flags_at_both_scales(path, tmp_path):
    """The header comment, a title, and command lines that the command's own parser accepts, at the
    small scale (no {data} left) and, where the config has one, at the paper scale on --data."""
    text = path.read_text()
    assert text.startswith("#") and "Small scale" in text and "Reproduces" in text
    config, lines, parser_for, scale = _plan(path)
    assert scale == "small" and lines and config.title
    for c in lines:
        args = parser_for(c.run.command).parse_args(c.argv)   # the real parser, as `layerwise` parses it
        assert args.command == c.run.command and "{data}" not in " ".join(c.argv)
        assert not str(args.dataset).endswith(":{data}") and ":" not in args.dataset   # embedded / Debian data
    has_paper = any("paper" in r.scales for r in config.runs)
    if not has_paper:   # the paper's setting cannot run yet: the note says why, and --scale paper says so
        assert config.notes
        with pytest.raises(LayerwiseError, match="no \\[paper\\] settings"):
            _plan(path, "--data", str(tmp_path))
        return
    _, paper, parser_for, scale = _plan(path, "--data", str(tmp_path))
    assert scale == "paper" and len(paper) == len(config.runs)
    for c in paper:
        args = parser_for(c.run.command).parse_args(c.argv)
        assert args.dataset.split(":", 1)[1] == str(tmp_path), c.argv   # the user's own files


def test_dry_run_prints_the_command_line_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", str(CONFIGS[0].parent / "adalayernet-table1.toml"), "--dry-run", "--out", str(out),
               "--set", "seed=3"])
    text = capsys.readouterr().out
    assert rc == 0
    assert (f"layerwise compress --model resnet20 --budget 0.165 --b-min 4 --b-max 8 --dataset digits --size 32 "
            f"--channels 3 --seed 3 --out {out}") in text
    assert not out.exists()


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "my.toml"
    p.write_text('title = "mine"\n' + body)
    return p


@pytest.mark.parametrize("body, words", [
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\ndataset = "digits"\npercentil = 20\n',
     ["unknown flag 'percentil'", "[flags]", "--percentil"]),
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\n[small]\ndataset = "digits"\nlimt = 3\n',
     ["unknown flag 'limt'", "[small]"]),
    ('command = "unit"\ncolour = 1\n', ["unknown key 'colour'"]),
    ('command = "nosuch"\n[small]\nseed = 1\n', ["'nosuch' is not a `layerwise` command"]),
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\n[small]\ndataset = "digits"\nout = "x"\n',
     ["'out'", "set by `layerwise run`"]),
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\nno-shift = 1\n[small]\ndataset = "digits"\n',
     ["'no-shift'", "switch"]),
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\ndivision = "nope"\n[small]\ndataset = "digits"\n',
     ["invalid choice: 'nope'"]),
    ('command = "unit"\nflags = ["--model", "tiny-cnn", "--datset", "digits"]\n[small]\nseed = 1\n',
     ["unknown flag '--datset'"]),
    ('command = "unit"\n[flags]\nmodel = "tiny-cnn"\n[paper]\ndataset = "mnist:{data}"\n', ["no [small] settings"]),
    ('command = "unit"\n[flags\n', ["not valid TOML"]),
])
def test_a_bad_config_is_one_line_naming_the_key_and_the_file(tmp_path, capsys, body, words):
    path = _write(tmp_path, body)
    rc = main(["run", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert str(path) in err or "not a `layerwise` command" in err, err
    for w in words:
        assert w in err, err


def test_paper_flags_need_data_and_data_needs_the_paper_scale(tmp_path, capsys):
    path = _write(tmp_path, 'command = "unit"\n[flags]\nmodel = "tiny-cnn"\n[small]\ndataset = "digits"\n'
                            '[paper]\ndataset = "mnist:{data}"\n')
    assert main(["run", str(path), "--scale", "paper", "--dry-run"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert main(["run", str(path), "--scale", "small", "--data", str(tmp_path), "--dry-run"]) == 2
    assert "--data is read only by --scale paper" in capsys.readouterr().err
    assert main(["run", str(path), "--data", str(tmp_path), "--dry-run", "--out", "o"]) == 0
    assert f"--dataset mnist:{tmp_path} --out o" in capsys.readouterr().out


def test_later_tables_override_and_false_removes_a_switch(tmp_path, capsys):
    path = _write(tmp_path, 'command = "unit"\n[flags]\nmodel = "tiny-cnn"\nno-shift = true\nsweep = "10,20"\n'
                            '[small]\ndataset = "digits"\nno-shift = false\n')
    assert main(["run", str(path), "--dry-run", "--out", "o", "--set", 'sweep="30"', "--quick"]) == 0
    out = capsys.readouterr().out
    assert "layerwise unit --model tiny-cnn --sweep 10,20 --dataset digits --quick --sweep 30 --out o" in out
    assert "--no-shift" not in out


# ---------------------------------------------------------------------------------------------------
# smoke runs: every config at small scale

def _key(parser_for, c) -> tuple:
    """What a command line runs, --out aside: equal keys are the same run (e.g. Tables 4, 6 and 7 of
    ELA are one `ela --ablation` run), which the smoke test runs once."""
    args = vars(parser_for(c.run.command).parse_args(c.argv))
    return tuple(sorted((k, repr(v)) for k, v in args.items() if k not in ("out", "func")))


_DONE: dict[tuple, Path] = {}


def _smoke_argv(command: str) -> list[str]:
    sets = COMMON_SMOKE + SMOKE.get(command, [])
    return [a for s in sets for a in ("--set", s)]


@pytest.mark.slow
@pytest.mark.configs_smoke
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs_at_small_scale(path, tmp_path, capsys):
    """`layerwise run CONFIG --quick` with the smallest limits writes a valid results.json per run.
    A run whose command line an earlier config already ran (same flags, another --out) is checked
    against that run's results instead of being run again."""
    config = run_config.load_config(path)
    commands = {r.command for r in config.runs}
    assert len(commands) == 1
    smoke = ["--quick", *_smoke_argv(commands.pop())]
    _, lines, parser_for, _ = _plan(path, *smoke, "--out", str(tmp_path / "out"))
    if "fashion-mnist" in [a for c in lines for a in c.argv] and not FASHION_MNIST.is_dir():
        pytest.skip(f"the small scale reads Fashion-MNIST from {FASHION_MNIST} (Debian package dataset-fashion-mnist, "
                    "installed in CI)")
    todo = [c.run.name for c in lines if _key(parser_for, c) not in _DONE]
    if todo:
        only = ["--only", *todo] if len(config.runs) > 1 else []
        rc = main(["run", str(path), *smoke, *only, "--out", str(tmp_path / "out")])
        out, err = capsys.readouterr()
        assert rc == 0, err[-2000:]
        assert config.title in out
    for c in lines:
        where = _DONE.setdefault(_key(parser_for, c), c.out)
        doc = read_results(where)        # validated against the results schema
        args = parser_for(c.run.command).parse_args(c.argv)
        assert doc["model"] == args.model and args.dataset in doc["dataset"]   # the config's model and data
        names = [v["name"] for v in doc["variants"]]
        assert len(names) >= 2 and any(v["accuracy"] is not None for v in doc["variants"])
        assert json.loads((where / "results.json").read_text())["method"]
