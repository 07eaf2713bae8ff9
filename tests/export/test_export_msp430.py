"""The exported C on a simulated MSP430 (clang --target=msp430, ld.lld, mspdebug sim).

Needs the Debian packages clang, lld and mspdebug; skipped, naming them, where they are absent
(CI installs them, so there their absence fails). What a user would notice: the MCU computes other
logits than the host / Python, the per-layer cycles do not add up, skipping does not pay with a
software multiply, or the cycle model is far from the simulator.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from layerwise.export import msp430
from layerwise.export.cycles import measure_variants
from layerwise.export.fixed import quantize_model

pytestmark = pytest.mark.slow


def _tools_or_skip():
    try:
        return msp430.find_toolchain()
    except msp430.MissingToolchain as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"MSP430 toolchain absent in CI ({exc})")
        pytest.skip(f"MSP430 toolchain absent ({exc})")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tools = _tools_or_skip()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 10)).eval()
    x = torch.randn(16, 1, 16, 16)
    th = {"0": torch.tensor([0.05]), "3": torch.tensor([0.08]), "6": torch.tensor([0.05])}
    qnet = quantize_model(net, x, thresholds=th)
    xq = qnet.quantize_input(x[:1])[0]
    variants = (("dense", None), ("zero_skip", None), ("unit", "exact"), ("unit", "bitshift"))
    recs = measure_variants(qnet, xq, tmp_path_factory.mktemp("msp"), tools=tools,
                            variants=variants)
    return {(r.multiplier, r.variant): r for r in recs}


def test_mcu_logits_equal_the_python_reference(measured):
    assert all(r.logits_match for r in measured.values())
    assert not any(r.sliced for r in measured.values())


def test_layer_cycles_add_up_to_the_inference(measured):
    for r in measured.values():
        assert sum(r.per_layer.values()) == r.cycles
        assert list(r.per_layer) == ["0", "1", "2", "3", "4", "5", "6"]
        assert r.per_layer["5"] < 50          # flatten: nothing but the layer mark


def test_skipping_pays_with_software_multiply(measured):
    sw = {v: r.cycles for (m, v), r in measured.items() if m == "swmul"}
    hw = {v: r.cycles for (m, v), r in measured.items() if m == "hwmul"}
    assert sw["unit-exact"] < sw["zero_skip"] < sw["dense"]
    assert hw["dense"] < sw["dense"] / 2      # the hardware multiplier is far cheaper


def test_cycle_model_predicts_the_simulator(measured):
    # the profiles were fitted on tiny-cnn, cnn1d and widar-lenet (layerwise.unit.mcu.FIT_NOTE: within 6.2 %
    # there); this much smaller network is not among them, and the fitted per-output and per-row
    # overheads weigh more in it: a held-out check with a loose bound
    for (m, v), r in measured.items():
        assert abs(r.error) < 0.25, (m, v, r.cycles, r.predicted)
        assert r.to_json()["source"] == "mspdebug-sim"
        assert r.to_json()["predicted_source"] == f"cycle model: msp430-{m}"


def test_too_big_network_is_refused_with_sizes(tmp_path):
    tools = _tools_or_skip()
    net = nn.Sequential(nn.Flatten(), nn.Linear(200, 150)).eval()
    x = torch.randn(4, 1, 200)
    qnet = quantize_model(net, x)
    from layerwise.export.c_codegen import emit
    h, c = emit(qnet, "big")
    (tmp_path / "big.h").write_text(h)
    (tmp_path / "big.c").write_text(c)
    with pytest.raises(msp430.LayerwiseError, match="64 KB address space"):
        msp430.build(tmp_path / "big.c", tmp_path / "big.h", np.zeros(200, np.int16),
                     tmp_path / "b", tools=tools)
