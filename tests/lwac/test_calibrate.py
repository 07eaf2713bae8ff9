import torch

from layerwise.lwac import (FineTuneConfig, attach, bypass_labels, choose_lambda, finetune, gather_relevance,
                            lambda_range, sweep_lambda, train_controllers)
from layerwise.lwac.calibrate import LambdaPoint


def _data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g))


def test_relevance_labels_controllers_and_lambda_range(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    val = _data()
    rel = gather_relevance(lw, val, batch_size=8)
    assert len(rel) == len(lw.units) and all(r > 0 for r in rel)
    assert max(lw.state.relevance) == 1.0
    labels = bypass_labels(lw, val)
    assert [l.unit for l in labels] == lw.bypassable
    assert all(l.features.shape == (24, lw.units[l.unit].input_shape[1]) for l in labels)
    fit = train_controllers(lw, labels, steps=50)
    assert set(fit) == set(lw.bypassable)
    lo, hi = lambda_range(lw, val)
    pts = sweep_lambda(lw, val, [lo, hi], dense_ms=1.0)
    assert pts[0].run_share == [1.0] * len(lw.units)  # lambda_lo: nothing bypassed
    assert all(pts[1].run_share[i] == 0.0 for i in lw.bypassable)  # lambda_hi: every bypassable unit skipped
    assert pts[0].agreement == 1.0


def test_choose_lambda_takes_the_fastest_within_tolerance():
    pts = [LambdaPoint(0.0, 0.90, 1.0, [], 1.0), LambdaPoint(1.0, 0.895, 0.99, [], 0.8),
           LambdaPoint(2.0, 0.85, 0.9, [], 0.6)]
    assert choose_lambda(pts, 0.90, 0.005).lam == 1.0
    assert choose_lambda(pts, 0.90, 0.0).lam == 0.0


def test_finetune_trains_controllers_with_eq5_and_leaves_base(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    base = {k: v.clone() for k, v in lw.model.state_dict().items() if ".controller." not in k}
    ctrl = [a.controller.fc2.weight.clone() for a in lw.acus if a.controller is not None]
    hist = finetune(lw, _data(16), FineTuneConfig(epochs=1, batch_size=8, lr=0.05))
    assert len(hist) == 1 and hist[0]["loss"] > 0
    after = lw.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in base.items())
    assert any(not torch.equal(w, a.controller.fc2.weight) for w, a in
               zip(ctrl, [a for a in lw.acus if a.controller is not None]))
