"""``layerwise stack``: AdaLayerNet, then UnIT, then LWAC on one model.

What a user would notice if it broke: the command does not run or writes an invalid results file;
the stacked model is not what running the three methods by hand gives (a stage skipped, applied
in another order, or calibrated on the wrong model); the executed MACs count blocks LWAC bypassed
or MACs UnIT skipped; a model a stage cannot take fails late or with a traceback.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from layerwise import lwac, unit
from layerwise.adalayer import AdaLayerConfig, Architecture, load_packed_bytes
from layerwise.cli import main
from layerwise.data import make_loader
from layerwise.measure import count_macs
from layerwise.results import decode_hits, read_results
from layerwise.stack import StackConfig, StackError, additivity, count_executed, stack_model


# ----------------------------------------------------------------------------- the command, end to end

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stack")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["stack", "--model", "multibranch-cnn", "--dataset", "basic-motions", "--quick", "--threads", "1",
                     "--percentile", "20", "--out", str(out)])
    return code, out, printed.getvalue()


def test_cli_writes_every_variant_with_evidence(quick_run):
    code, out, text = quick_run
    assert code == 0
    doc = read_results(out)
    assert doc["method"] == "stack" and doc["quick"] is True
    v = {x["name"]: x for x in doc["variants"]}
    assert list(v) == ["dense", "adalayer", "adalayer+unit", "adalayer+unit+lwac", "unit", "lwac"]
    n = len(decode_hits(v["dense"]["test_hits"]))
    for name, x in v.items():
        h = decode_hits(x["test_hits"])
        assert h.size == n and h.mean() == pytest.approx(x["accuracy"], abs=1e-12), name
        assert x["accuracy_ci"]["low"] <= x["accuracy"] <= x["accuracy_ci"]["high"]
        assert 0 < x["macs_executed"] <= x["macs"], name
        assert x["latency_ms"]["median"] > 0 and x["latency_ms"]["batch"] == 1
    # what ships: the packed file, then the thresholds' and the gates' own bytes on top
    packed = (out / "adalayer.lwpk").stat().st_size
    assert v["adalayer"]["size_bytes"] == packed < v["dense"]["size_bytes"]
    thr = v["adalayer+unit"]["extra"]["stage"]["threshold_bytes"]
    assert thr > 0 and v["adalayer+unit"]["size_bytes"] == packed + thr
    gates = v["adalayer+unit+lwac"]["extra"]["stage"]["gate_bytes"]
    assert v["adalayer+unit+lwac"]["size_bytes"] == packed + thr + gates
    # UnIT only removes MACs, LWAC only removes blocks: each stage executes at most its input's MACs
    assert v["adalayer+unit"]["macs_executed"] <= v["adalayer"]["macs_executed"]
    assert v["adalayer+unit+lwac"]["extra"]["executed"]["run_macs"] <= v["adalayer+unit+lwac"]["macs"]
    # each stage vs the previous one and vs dense, on the same test images
    pairs = {(c["a"], c["b"]) for c in doc["comparisons"]}
    assert {("adalayer", "dense"), ("adalayer+unit", "adalayer"), ("adalayer+unit+lwac", "adalayer+unit"),
            ("adalayer+unit+lwac", "dense"), ("unit", "dense"), ("lwac", "dense")} <= pairs
    adds = v["adalayer+unit+lwac"]["extra"]["stack"]["additivity"]
    r = adds["executed_ratio_single"]
    assert adds["executed_ratio_predicted_product"] == pytest.approx(r["adalayer"] * r["unit"] * r["lwac"])
    assert adds["executed_ratio_stack"] == pytest.approx(v["adalayer+unit+lwac"]["extra"]["executed"]["executed"]
                                                         / v["dense"]["extra"]["executed"]["executed"])
    assert "Do the gains add up?" in text and "smoke run" in text
    assert all(c["verdict"] in text for c in doc["comparisons"])


def test_bad_model_is_one_line_before_training(tmp_path, capsys):
    # tiny-cnn has no residual block or branch: LWAC (stage 3) could gate nothing
    code = main(["stack", "--model", "tiny-cnn", "--dataset", "digits", "--quick", "--out", str(tmp_path / "s")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage 3 (LWAC)" in err[0] and "residual" in err[0]
    assert not (tmp_path / "s" / "base").exists()


def test_bad_budget_is_one_line(tmp_path, capsys):
    code = main(["stack", "--model", "multibranch-cnn", "--dataset", "basic-motions", "--budget", "1.5",
                 "--out", str(tmp_path / "s")])
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


class _NoLayers(nn.Module):
    """A classifier with a plain weight matrix and no Conv / Linear module: nothing for eq. 4."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4, 2))

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_model_adalayer_cannot_compress_is_refused():
    with pytest.raises(StackError, match=r"stage 1 \(AdaLayerNet\) cannot compress _NoLayers"):
        stack_model(_NoLayers(), None, arch=None, example_input=torch.zeros(1, 4))


# ----------------------------------------------------------------------------- the stack = the stages by hand

def test_stacked_model_equals_the_stages_run_by_hand():
    from layerwise.data import load_dataset
    from layerwise.models import build_model
    from layerwise.train import TrainConfig, train

    data = load_dataset("basic-motions")
    torch.manual_seed(0)
    model = build_model("multibranch-cnn", data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=2, batch_size=8))
    model.eval()
    x1 = data.val[0][0].unsqueeze(0)
    arch = Architecture("multibranch-cnn", tuple(data.input_shape), data.num_classes, {})
    cfg = StackConfig(budget=0.3, adalayer=AdaLayerConfig(finetune_epochs=0), percentile=20.0, grid=5)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    stacked, rep = stack_model(model, data, arch=arch, example_input=x1, config=cfg, threads=1)
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())  # the base is untouched

    # by hand: rebuild from the packed bytes, convert + calibrate UnIT on it, attach LWAC on that
    hand = load_packed_bytes(rep.packed).model.eval()
    hand = unit.convert(hand).model
    unit.calibrate(hand, make_loader(data.val, batch_size=256), percentile=20.0)
    hand_lw = lwac.attach(hand, x1, lwac.LWACConfig(policy="heuristic"), threads=1)
    assert stacked.state.lam == rep.lwac["lam"]

    xs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    with torch.no_grad():
        # every unit run: the stacked network is exactly the by-hand UnIT model on the packed weights
        with stacked.pinned():
            torch.testing.assert_close(stacked.model(xs), hand(xs), rtol=1e-5, atol=1e-5)
        # the gates: LWAC's costs include measured latencies (not reproducible run to run), so the by-hand
        # model is given the stack's own per-input decisions; the outputs must then agree
        with stacked.recording() as st:
            got = torch.cat([stacked(x[None]) for x in xs])
        decisions = [[bool(r[1]) for r in unit_records] for unit_records in st.records]
        want = []
        for s, x in enumerate(xs):
            with hand_lw.forced({i: decisions[i][s] for i in hand_lw.bypassable}):
                want.append(hand_lw(x[None]))
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-5, atol=1e-5)
    # the thresholds were calibrated on the COMPRESSED model: not the dense model's
    dense_unit = unit.convert(model, inplace=False).model
    dense_thr = unit.calibrate(dense_unit, make_loader(data.val, batch_size=256), percentile=20.0)
    assert any(not np.allclose(rep.unit["thresholds"][k], dense_thr[k].tolist()) for k in dense_thr)


# ----------------------------------------------------------------------------- executed MACs, by hand

class _Block(nn.Module):
    block_kind = "residual"

    def __init__(self):
        super().__init__()
        self.residual = nn.Linear(2, 2, bias=False)
        self.shortcut = nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(2, 2, bias=False)
        self.block = _Block()
        self.head = nn.Linear(2, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def _kept(x: np.ndarray, w: np.ndarray, t: float) -> int:
    """MACs a UnIT Linear executes on input row x: w != 0, x != 0 and |x * w| > t (eq. 2), by loops."""
    n = 0
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            if w[o, i] != 0 and x[i] != 0 and abs(x[i] * w[o, i]) > t:
                n += 1
    return n


def test_executed_macs_hand_worked():
    torch.manual_seed(0)
    m = _Tiny().eval()
    ws = {"stem": [[1.0, 0.0], [2.0, 3.0]], "block.residual": [[0.5, 0.0], [0.0, 0.1]], "head": [[1.0, 1.0], [1.0, -1.0]]}
    with torch.no_grad():
        for name, w in ws.items():
            m.get_submodule(name).weight.copy_(torch.tensor(w))
    xs = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0], [0.5, -2.0]])
    data = TensorDataset(xs, torch.tensor([0, 1, 0, 1]))
    conv = unit.convert(m, inplace=False).model
    t_res = 0.2
    conv.get_submodule("block.residual").set_threshold(t_res)

    # the forward pass by hand: stem, block (residual with T on the UnIT rule), head
    w = {k: np.array(v) for k, v in ws.items()}
    stem_all, res_all, head_run, head_bypass = 0, 0, 0, 0
    for x in xs.numpy():
        h = w["stem"] @ x
        stem_all += _kept(x, w["stem"], 0.0)
        res_all += _kept(h, w["block.residual"], t_res)
        r = np.array([sum(w["block.residual"][o, i] * h[i] for i in range(2)
                          if abs(h[i] * w["block.residual"][o, i]) > t_res) for o in range(2)])
        head_run += _kept(h + r, w["head"], 0.0)
        head_bypass += _kept(h, w["head"], 0.0)
    n = len(xs)
    macs = int(count_macs(m, xs[:1]).total)
    assert macs == 12

    # no LWAC: every layer runs
    em, hits = count_executed(conv, data, macs=macs)
    assert em.executed == pytest.approx((stem_all + res_all + head_run) / n)
    assert em.run_macs == 12 and hits.shape == (4,)

    # LWAC on top, the block forced both ways: a bypassed block's UnIT layer counts nothing
    lw = lwac.attach(conv, xs[:1], lwac.LWACConfig(policy="heuristic"), threads=1)
    lwac.gather_relevance(lw, data)
    lw.set_lambda(0.0)  # alpha = sigmoid(gamma * R) >= 0.5: the block runs
    em_run, _ = count_executed(lw, data, macs=macs, batch_size=1)
    assert em_run.executed == pytest.approx((stem_all + res_all + head_run) / n) and em_run.run_macs == 12
    lw.set_lambda(1e9)  # every gate far below its threshold: the block is bypassed for every input
    em_by, _ = count_executed(lw, data, macs=macs, batch_size=3)  # a batch of 3 and one of 1
    assert em_by.executed == pytest.approx((stem_all + head_bypass) / n)
    assert em_by.run_macs == 8  # LWAC's own count: the block's 4 MACs did not run


def test_additivity_hand_worked():
    a = additivity({"executed": 100.0, "accuracy": 0.9},
                   {"x": {"executed": 50.0, "accuracy": 0.88}, "y": {"executed": 80.0, "accuracy": 0.89}},
                   {"executed": 45.0, "accuracy": 0.86})
    assert a["executed_ratio_predicted_product"] == pytest.approx(0.5 * 0.8)
    assert a["executed_ratio_stack"] == pytest.approx(0.45)
    assert a["stack_over_product"] == pytest.approx(0.45 / 0.4)
    assert a["drop_pt_sum"] == pytest.approx(2.0 + 1.0) and a["drop_pt_stack"] == pytest.approx(4.0)
