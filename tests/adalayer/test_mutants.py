"""Hand-worked checks of the pieces no other test pinned down: the eq. (5) regulariser's weight
(1 - I_l), a coupled group's min P_l, the eq. (1) probe really pruning, Hutchinson traces, the
uniform fitting and resize_to_state."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from layerwise.adalayer import attach_fake_quant, sparsity_regularizer, uniform_candidates
from layerwise.adalayer.hessian import hessian_sensitivity, hutchinson_traces
from layerwise.adalayer.importance import probe_accuracy_drops
from layerwise.adalayer.packed import PackedFileError, resize_to_state
from layerwise.adalayer.structured import prune_channels
from layerwise.train import evaluate


def test_eq5_regulariser_weighs_each_layer_by_one_minus_importance():
    a, b = nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]))
        b.weight.copy_(torch.tensor([[10.0, -20.0], [30.0, 0.5]]))
    masks = {"a": torch.tensor([[True, False, True], [True, True, False]]),
             "b": torch.tensor([[True, True], [False, True]])}
    attach_fake_quant([("a", a), ("b", b)], masks, {"a": 8, "b": 8})
    reg = sparsity_regularizer([("a", a), ("b", b)], {"a": 0.2, "b": 0.9}, eta=0.5)
    # by hand: ||mask_a ⊙ W_a||_1 = 1 + 3 + 4 + 5 = 13; ||mask_b ⊙ W_b||_1 = 10 + 20 + 0.5 = 30.5
    expected = 0.5 * ((1 - 0.2) * 13.0 + (1 - 0.9) * 30.5)  # = 6.725 (with I instead of 1-I: 14.3)
    got = reg(None, None, None)
    assert float(got.detach()) == pytest.approx(expected)
    got.backward()  # it reaches the float weights the fine-tune trains (kept ones only)
    grad = a.parametrizations.weight.original.grad
    assert torch.equal(grad != 0, masks["a"])
    assert float(grad[0, 0]) == pytest.approx(0.5 * 0.8)


def test_eq5_weight_is_calibrated_to_its_share_of_the_loss():
    from layerwise.adalayer.compress import Eq5Regularizer
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]))  # ||W||_1 = 21
    logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    ce = float(F.cross_entropy(logits, y))
    reg = Eq5Regularizer([("l", lin)], {"l": 0.3}, eta=123.0, share=0.2)
    term = float(reg(None, logits, y).detach())
    assert reg.eta == pytest.approx(0.2 / 0.8 * ce / (0.7 * 21.0))  # eta = s/(1-s) * CE_0 / R_0
    assert term / (ce + term) == pytest.approx(0.2)
    reg(None, logits * 0.0, y)  # a second batch with another CE: eta stays, the share moves
    st = reg.stats()
    assert st["share_first"] == pytest.approx(0.2) and st["batches"] == 2 and st["share_last"] != st["share_first"]
    fixed = Eq5Regularizer([("l", lin)], {"l": 0.3}, eta=0.01, share=0.0)
    assert float(fixed(None, logits, y).detach()) == pytest.approx(0.01 * 0.7 * 21.0)


class _AddPair(nn.Module):
    """Two convs whose outputs are added: Torch-Pruning couples their output channels."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.c((self.a(x) + self.b(x)).relu()).mean((2, 3)))


def test_coupled_group_takes_the_smallest_ratio_of_its_members():
    torch.manual_seed(0)
    model = _AddPair().eval()
    done = prune_channels(model, torch.randn(1, 1, 6, 6), {"a": 0.25, "b": 0.75, "c": 0.0})
    # min(0.25, 0.75) * 8 = 2 channels go, 6 stay (max would leave 2)
    assert model.a.out_channels == model.b.out_channels == 6 and model.c.in_channels == 6
    assert list(done.values()) == [(8, 6)]


def test_probe_really_prunes_the_layer(digits28):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    xs = torch.stack([digits28.train[i][0] for i in range(400)]).flatten(1)
    ys = torch.tensor([int(digits28.train[i][1]) for i in range(400)])
    with torch.no_grad():  # a least-squares classifier: every weight carries signal
        model[1].weight.copy_(20 * torch.linalg.lstsq(xs, F.one_hot(ys, 10).float()).solution.T)
        model[1].bias.zero_()
    base = evaluate(model, digits28.val).loss
    sens = probe_accuracy_drops(model, [("1", model[1])], digits28.val, probe_ratio=0.8, probe_bits=16)
    # the expected damage, by hand: zero the 80 % smallest |w| (stable order), keep the rest (16 bits ~ exact)
    w = model[1].weight.detach().clone()
    order = np.argsort(np.abs(w.numpy().ravel()), kind="stable")
    pruned = w.numpy().ravel().copy()
    pruned[order[:int(round(0.8 * pruned.size))]] = 0.0
    probe_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    probe_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        probe_model[1].weight.copy_(torch.from_numpy(pruned).view_as(w))
    expected = evaluate(probe_model, digits28.val).loss - base
    assert expected > 0.05  # pruning 80 % of this layer measurably hurts ...
    assert sens.loss_increase["1"] == pytest.approx(expected, rel=1e-2)  # ... and the probe sees exactly that
    assert torch.equal(model[1].weight, w)  # the layer is restored after the probe


def _ce_trace_linear(x: torch.Tensor, w: torch.Tensor) -> float:
    """Tr of the Hessian of mean cross-entropy w.r.t. W of logits = x W^T, by explicit loops:
    (1/N) sum_n sum_c p_nc (1 - p_nc) ||x_n||^2."""
    total = 0.0
    for n in range(x.shape[0]):
        p = torch.softmax(x[n] @ w.T, dim=0)
        total += float(sum(p[c] * (1 - p[c]) for c in range(p.numel()))) * float(x[n] @ x[n])
    return total / x.shape[0]


def test_hutchinson_trace_matches_the_exact_trace_of_a_linear_softmax():
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 4, (64,))
    model = nn.Sequential(nn.Linear(6, 4, bias=False)).eval()
    val = TensorDataset(x, y)
    tr = hutchinson_traces(model, [("0", model[0])], val, samples=300, batches=1, batch_size=64)
    exact = _ce_trace_linear(x, model[0].weight.detach())
    assert tr["0"] == pytest.approx(exact, rel=0.1)
    sens = hessian_sensitivity(model, [("0", model[0])], val, probe_ratio=0.5, probe_bits=16, samples=300, batches=1)
    w = model[0].weight.detach().abs().flatten().sort().values
    lost = float((w[:12] ** 2).sum())  # the 12 smallest of 24 weights are pruned (16 bits: no other error)
    assert sens.score["0"] == pytest.approx(tr["0"] / 24 * lost, rel=1e-3)  # HAWQ-V2's Omega


def test_uniform_fitting_finds_the_least_ratio_per_bit_width():
    size = lambda ratio, bits: math.ceil(1000 * bits * (1 - ratio)) + 100  # noqa: E731 - a monotone stand-in
    found = {c.bits: c for c in uniform_candidates(size, 3100, [2, 4, 8], p_max=0.95, iterations=30)}
    assert found[2].prune_ratio == 0.0 and found[2].packed_bytes == 2100  # fits unpruned
    assert found[4].prune_ratio == pytest.approx(0.25, abs=1e-6) and found[4].packed_bytes <= 3100
    assert found[8].prune_ratio == pytest.approx(0.625, abs=1e-6) and found[8].packed_bytes <= 3100
    assert uniform_candidates(size, 3100, [8], p_max=0.5) == []  # 8 bits cannot fit by pruning <= 50 %


def test_resize_to_state_rebuilds_a_channel_pruned_model():
    def net(c):
        return nn.Sequential(nn.Conv2d(1, c, 3), nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, groups=c),
                             nn.Conv2d(c, 4, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    torch.manual_seed(0)
    small = net(5)
    with torch.no_grad():
        small[1].running_mean.uniform_(-1, 1)
    big = net(8)
    resized = resize_to_state(big, small.state_dict())
    assert resized == ["0", "1", "2", "3"]
    assert (big[0].out_channels, big[1].num_features, big[2].groups, big[3].in_channels) == (5, 5, 5, 5)
    big.load_state_dict(small.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(big(x), small(x))
    with pytest.raises(PackedFileError, match="cannot rebuild LayerNorm"):
        resize_to_state(nn.Sequential(nn.LayerNorm(4)), {"0.weight": torch.ones(3)})
