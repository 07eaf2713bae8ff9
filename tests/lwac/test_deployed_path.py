"""What runs on the DEPLOYED path (no ``forced()``, no recording, no pinning): a counting forward
hook on each block and on its residual branch sees a bypassed block run zero times at batch 1,
and, in a mixed batch, exactly the samples that were not bypassed; the MACs the model claims are
the MACs a FLOP counter sees run."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from layerwise.lwac import LWACConfig, attach
from layerwise.lwac.acu import AttentionCalibrationUnit
from layerwise.lwac.controller import summarise


def _count(module, seen: list):
    return module.register_forward_hook(lambda m, args, out: seen.append(int(args[0].shape[0])))


def _no_general_path(monkeypatch):
    """Make sure the batch-1 fast path (``_hard_one``) is what runs: the general one would raise."""
    def boom(self, st, x):
        raise AssertionError("the general path ran: this test is meant for the deployed batch-1 path")
    monkeypatch.setattr(AttentionCalibrationUnit, "_forward_general", boom)


@pytest.mark.parametrize("policy", ["heuristic", "neural"])
def test_bypassed_blocks_run_zero_times_at_batch_1(resnet, x16, monkeypatch, policy):
    lw = attach(resnet, x16, LWACConfig(policy=policy), latency_n=1)
    lw.state.relevance = [0.5] * len(lw.units)  # heuristic R; a fresh neural controller gives R(x) = 0.5 too
    assert lw.bypassable == list(range(len(lw.units)))
    blocks = {i: [] for i in lw.bypassable}
    branches = {i: [] for i in lw.bypassable}
    handles = [_count(lw.acus[i].unit, blocks[i]) for i in lw.bypassable]
    handles += [_count(lw.acus[i].unit.residual, branches[i]) for i in lw.bypassable]
    _no_general_path(monkeypatch)
    try:
        lw.set_lambda(0.0)  # dense end: every block runs once (the hooks do see runs)
        with torch.no_grad():
            dense = lw(x16)
        assert all(blocks[i] == [1] and branches[i] == [1] for i in lw.bypassable)
        for v in list(blocks.values()) + list(branches.values()):
            v.clear()
        lw.reset_counts()
        lw.set_lambda(10.0 / min(lw.state.cost[i] for i in lw.bypassable))  # 0.5 - lambda*C_i < 0 for every unit
        with torch.no_grad():
            y = lw(x16)
    finally:
        for h in handles:
            h.remove()
    assert all(blocks[i] == [] and branches[i] == [] for i in lw.bypassable), (blocks, branches)
    assert lw.state.bypassed == [1] * len(lw.units) and lw.state.executed == [0] * len(lw.units)
    assert y.shape == dense.shape and not torch.equal(y, dense)
    assert lw.network_macs_run() == lw.dense_macs - sum(u.macs - u.bypass_macs for u in lw.units)


def _mixed_setup(resnet, x16, b=8, seed=5):
    """Neural policy; unit ``u``'s controller has random weights on standardised summaries, every
    other unit's says R = 1 (never bypassed); lambda is set so that half of a batch bypasses ``u``."""
    lw = attach(resnet, x16, LWACConfig(policy="neural"), latency_n=1)
    u = max(lw.bypassable, key=lambda i: lw.state.cost[i])  # lambda * C_j <= lambda * C_u < 1 = R_j elsewhere
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, *x16.shape[1:], generator=g) * torch.linspace(0.2, 3.0, b).view(-1, 1, 1, 1)
    seen = []
    h = lw.acus[u].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad(), lw.pinned():
        lw(x)
    h.remove()
    feats = summarise(seen[0], "mean")
    for a in lw.acus:
        c = a.controller
        with torch.no_grad():
            c.fc2.weight.zero_()
            c.fc2.bias.fill_(20.0)  # R = sigmoid(20) ~ 1
            if a.unit_index == u:
                c.set_standardisation(feats)
                c.fc2.weight.copy_(torch.randn(c.fc2.weight.shape, generator=g) * 0.5)
                c.fc2.bias.zero_()
        c.fuse()
    with torch.no_grad():
        r = lw.acus[u].controller.relevance(feats)
    rs = r.sort().values
    assert rs[b // 2] - rs[b // 2 - 1] > 1e-3, rs  # a clear margin: batch-1 and batched decisions agree
    lam = float(rs[b // 2 - 1] + rs[b // 2]) / 2 / lw.state.cost[u]  # bypass iff R(x) < lambda * C_u
    lw.set_lambda(lam)
    n_bypass = int((r < lam * lw.state.cost[u]).sum())
    assert n_bypass == b // 2
    return lw, u, x, n_bypass


def test_mixed_batch_runs_the_block_on_the_kept_samples_only(resnet, x16):
    lw, u, x, n_bypass = _mixed_setup(resnet, x16)
    b = x.shape[0]
    seen_u, seen_other = [], []
    h1 = _count(lw.acus[u].unit.residual, seen_u)
    h2 = _count(lw.acus[lw.bypassable[-1]].unit.residual, seen_other)
    lw.reset_counts()
    with torch.no_grad():
        y = lw(x)
    h1.remove()
    h2.remove()
    assert seen_u == [b - n_bypass], "the residual branch must see only the samples that run it"
    assert seen_other == [b]
    assert lw.state.executed[u] == b - n_bypass and lw.state.bypassed[u] == n_bypass
    # gather/scatter gives exactly the per-sample (batch-1) outputs
    with torch.no_grad():
        singles = torch.cat([lw(x[k:k + 1]) for k in range(b)])
    torch.testing.assert_close(y, singles, rtol=1e-4, atol=1e-4)


def test_macs_claimed_equal_macs_run(resnet, x16):
    """FlopCounterMode counts the convolutions and linear layers that really ran (the fused
    controllers' addmv / dot are not in its table, and not in ``network_macs_run``)."""
    lw, u, x, n_bypass = _mixed_setup(resnet, x16)
    for batch in (x, x[:1], x[-1:]):
        lw.reset_counts()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            lw(batch)
        assert lw.network_macs_run() == fc.get_total_flops() // 2
    lw.reset_counts()
    with torch.no_grad():
        lw(x)
    saved = n_bypass * (lw.units[u].macs - lw.units[u].bypass_macs)
    assert lw.network_macs_run() == lw.dense_macs * x.shape[0] - saved
    # the controllers are counted at their real batch-1 cost: a pass over each unit's input + the linear layer
    per_ctrl = [a.controller.macs(lw.units[a.unit_index].input_shape) for a in lw.acus]
    shape = lw.units[u].input_shape
    assert per_ctrl[u] == shape[1] * shape[2] * shape[3] + shape[1]
    assert lw.macs_executed() == pytest.approx(lw.network_macs_run() / x.shape[0] + sum(per_ctrl))
