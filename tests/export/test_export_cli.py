"""``layerwise export-c`` end to end on a small series model (host check only, no MSP430)."""

from __future__ import annotations

import json

import pytest

from layerwise.cli import main
from layerwise.export import host

pytestmark = pytest.mark.slow


def test_export_c_writes_c_and_checked_results(tmp_path, capsys):
    if host.find_cc() is None:
        pytest.skip("no C compiler (cc, gcc or clang): apt-get install gcc")
    out = tmp_path / "exp"
    rc = main(["export-c", "--model", "cnn1d", "--dataset", "basic-motions", "--epochs", "3",
               "--percentile", "30", "--no-mcu", "--name", "motion", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    c_src = (out / "motion.c").read_text()
    assert "#include <stdint.h>" in (out / "motion.h").read_text()
    assert "malloc" not in c_src and "#include <" not in c_src     # nothing but the header
    assert "void motion_infer(const int16_t *in, int16_t *out)" in c_src
    doc = json.loads((out / "results.json").read_text())
    names = [v["name"] for v in doc["variants"]]
    assert names == ["float", "dense", "zero_skip", "unit-exact", "unit-bitshift",
                     "unit-binary_tree", "unit-bitmask"]
    for v in doc["variants"][1:]:
        assert v["extra"]["host_check"]["mismatched_samples"] == 0
        assert v["extra"]["mcu_cycles"] == [] and "--no-mcu" in v["extra"]["mcu_note"]
    unit = doc["variants"][3]
    assert unit["macs_executed"] < unit["macs"]
    assert unit["extra"]["unit"]["percentile"] == 30
    assert "identical logits on all" in text and "MSP430: not measured (--no-mcu)" in text


def test_export_c_bad_name_is_one_line(tmp_path, capsys):
    rc = main(["export-c", "--model", "cnn1d", "--dataset", "basic-motions", "--name", "1net",
               "--no-mcu", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "not a C identifier" in err
