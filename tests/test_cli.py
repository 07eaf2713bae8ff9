"""The command line as a user meets it: tables, results files, exit code 2 on bad input."""

import json
import re
from pathlib import Path

import pytest
import torch

from layerwise.cli import main
from layerwise.results import read_results

ROOT = Path(__file__).resolve().parents[1]


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = [b for b in blocks if "pytest" in b]
    assert test_cmd and test_cmd[0].strip() in ci
    assert any("layerwise" in b and "pip install" in b for b in blocks)


def test_profile_prints_table_and_writes_complete_results(tmp_path, capsys):
    rc = main(["profile", "--model", "resnet20", "--dataset", "digits", "--out", str(tmp_path),
               "--latency-n", "5", "--warmup", "1", "--batched", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "layer1.0.residual.conv2" in out and "fc" in out and "energy" in out
    doc = read_results(tmp_path)
    v = doc["variants"][0]
    assert doc["method"] == "profile" and doc["model"] == "resnet20" and doc["env"]["threads"] == 1
    assert v["params"] == 220_090  # 1 input channel, 10 classes
    assert v["macs"] > 0 and v["size_bytes"] > v["params"] * 4
    assert v["latency_ms"]["n"] == 5 and v["latency_ms"]["batch"] == 1
    assert v["peak_mem_bytes"] > 0
    assert v["energy_j"]["source"] and isinstance(v["energy_j"]["estimated"], bool)
    assert v["accuracy"] is None and "checkpoint" in v["extra"]["accuracy"]
    assert len(v["extra"]["layers"]) == 23


def test_train_then_profile_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "tiny-cnn", "--dataset", "digits", "--epochs", "1", "--out", str(out)])
    assert rc == 0
    doc = read_results(out)
    v = doc["variants"][0]
    assert doc["dataset"] == "digits[1x28x28]"  # resized for the 28x28 UnIT network
    assert 0.3 < v["accuracy"] <= 1.0 and len(v["extra"]["history"]) == 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    rc = main(["profile", "--model", "tiny-cnn", "--dataset", "digits", "--checkpoint", str(out / "checkpoint.pt"),
               "--out", str(tmp_path / "prof"), "--latency-n", "3", "--warmup", "1", "--batched", "2"])
    assert rc == 0
    assert read_results(tmp_path / "prof")["variants"][0]["accuracy"] == pytest.approx(v["accuracy"])


@pytest.mark.parametrize("argv, message", [
    (["profile", "--model", "resnet21", "--dataset", "digits"], "unknown model 'resnet21'"),
    (["profile", "--model", "resnet20", "--dataset", "digitz"], "unknown dataset 'digitz'"),
    (["profile", "--model", "resnet20", "--dataset", "cifar10:/nonexistent/dir"], "/nonexistent/dir"),
    (["profile", "--model", "resnet20", "--dataset", "basic-motions"], "resnet20"),
    (["profile", "--model", "tiny-cnn", "--dataset", "digits", "--checkpoint", "/nope.pt"], "does not exist"),
    (["train", "--model", "tiny-cnn", "--dataset", "digits", "--resume", "--out", "{tmp}/fresh"], "resume"),
    (["profile", "--model", "tiny-cnn", "--dataset", "digits", "--device", "cuda:7"], "cuda"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("layerwise: error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_list_shows_models_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "cifar10:DIR" in out


def test_top_level_help_lists_every_command_without_importing_torch():
    # `layerwise --help` reads each command's NAME and HELP from its source: importing the
    # commands would pull in torch (seconds); the help must answer at once
    import subprocess
    import sys
    code = ("import sys, contextlib, io; from layerwise import cli; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): rc = cli.main(['--help'])\n"
            "print(rc, 'torch' in sys.modules); print(buf.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    first, text = out.split("\n", 1)
    assert first == "0 False"
    from layerwise.cli import COMMAND_MODULES, _name_and_help
    for module in COMMAND_MODULES:
        name, help_ = _name_and_help(module)
        assert name in text and help_.split()[0] in text


def test_command_help_shows_defaults(capsys):
    from layerwise.cli import main
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS (default: 10)" in text
    assert "--seed SEED (default: 0)" in text
