import pytest
import torch

from layerwise.lwac import LWACConfig, attach
from layerwise.models import build_model


def _bypassable(lw):
    return [a for a in lw.acus if a.bypassable]


def test_a_bypassed_unit_is_never_executed(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    acu = _bypassable(lw)[0]

    def boom(*_):
        raise AssertionError("bypassed residual branch was executed")

    handle = acu.unit.residual.register_forward_pre_hook(boom)
    try:
        with torch.no_grad(), lw.forced({acu.unit_index: True}):
            out = lw(x16)
        with torch.no_grad(), lw.pinned(), pytest.raises(AssertionError, match="was executed"):
            lw(x16)  # the hook is live: running the unit would trip it
    finally:
        handle.remove()
    assert out.shape == (1, 4)
    assert lw.state.bypassed[acu.unit_index] == 1


def test_bypass_output_is_the_shortcut_path(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    acu = _bypassable(lw)[0]
    seen = {}
    acu.register_forward_hook(lambda m, a, o: seen.update(x=a[0], out=o))
    with torch.no_grad(), lw.forced({acu.unit_index: True}):
        lw(x16)
    blk = acu.unit
    assert torch.equal(seen["out"], blk.act(blk.shortcut(seen["x"])))


def test_bypassed_branch_gives_zeros_without_running(multibranch):
    x = torch.randn(1, 6, 40)
    lw = attach(multibranch, x, latency_n=1)
    acu = lw.acus[1]
    acu.unit.body.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(AssertionError("branch ran")))
    seen = {}
    acu.register_forward_hook(lambda m, a, o: seen.update(out=o))
    with torch.no_grad(), lw.forced({1: True}):
        y = lw(x)
    assert y.shape == (1, 4)
    assert torch.equal(seen["out"], torch.zeros(1, acu.unit.out_features))


@pytest.mark.parametrize("name,shape", [("resnet20", (3, 16, 16)), ("multibranch-cnn", (6, 40)),
                                        ("cnn-lstm", (6, 40)), ("mobilenetv2", (3, 32, 32))])
def test_alpha_one_nothing_bypassed_equals_base_exactly(name, shape):
    torch.manual_seed(0)
    m = build_model(name, shape, 5).eval()
    x = torch.randn(2, *shape)
    for mode in ("hard", "soft"):
        lw = attach(m, x[:1], LWACConfig(mode=mode), latency_n=1)
        with torch.no_grad(), lw.pinned():
            assert torch.equal(lw(x), m(x))
            assert torch.equal(lw(x[:1]), m(x[:1]))


def test_soft_gate_scales_exactly_the_residual_branch(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(mode="soft", policy="heuristic"), latency_n=1)
    lw.state.relevance = [0.3] * len(lw.units)
    lw.set_lambda(0.0)  # alpha = sigmoid(1.0 * 0.3)
    a = 1 / (1 + torch.exp(torch.tensor(-0.3))).item()
    acu = _bypassable(lw)[0]
    seen = {}
    acu.register_forward_hook(lambda m, args, o: seen.update(x=args[0], out=o))
    with torch.no_grad():
        lw(x16)
        blk = acu.unit
        expected = blk.act(blk.shortcut(seen["x"]) + a * blk.residual(seen["x"]))
    torch.testing.assert_close(seen["out"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(seen["out"], blk(seen["x"]))


def test_hard_gate_follows_eq2_threshold(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=1)
    i = _bypassable(lw)[0].unit_index
    lw.state.relevance = [1.0] * len(lw.units)
    lw.state.cost = [1.0] * len(lw.units)
    lw.set_lambda(0.5)  # z = 1 - 0.5 > 0: alpha > 0.5, runs
    with torch.no_grad():
        lw(x16)
    assert lw.state.executed[i] == 1 and lw.state.bypassed[i] == 0
    lw.set_lambda(1.5)  # z = 1 - 1.5 < 0: alpha < 0.5, bypassed
    with torch.no_grad():
        lw(x16)
    assert lw.state.bypassed[i] == 1
    assert lw.macs_executed() < lw.dense_macs


def test_mixed_batch_matches_per_sample_decisions(resnet):
    torch.manual_seed(3)
    x = torch.randn(4, 3, 16, 16)
    lw = attach(resnet, x[:1], latency_n=1)
    i = _bypassable(lw)[1].unit_index
    mask = torch.tensor([True, False, True, False])
    with torch.no_grad():
        with lw.forced({i: mask}):
            batched = lw(x)
        singles = []
        for k in range(4):
            with lw.forced({i: bool(mask[k])}):
                singles.append(lw(x[k:k + 1]))
    torch.testing.assert_close(batched, torch.cat(singles), rtol=1e-5, atol=1e-5)


def test_every_block_with_a_shortcut_is_bypassable_and_only_those(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    kinds = {u.name: u.bypassable for u in lw.units}
    # the projection blocks (first of each stage) too: their shortcut keeps the shape right
    assert all(kinds.values()) and len(kinds) == 6
    torch.manual_seed(0)
    m = build_model("resnet56", (3, 16, 16), 4).eval()
    assert len(attach(m, x16, latency_n=1).bypassable) == 18  # 3 stages x 6 bottleneck blocks
    m = build_model("resnet56-basic", (3, 16, 16), 4).eval()
    assert len(attach(m, x16, latency_n=1).bypassable) == 27  # 3 stages x 9 basic blocks
    mb = build_model("mobilenetv2", (3, 32, 32), 4).eval()
    lw = attach(mb, torch.zeros(1, 3, 32, 32), latency_n=1)
    blocked = [u for u in lw.units if not u.bypassable]
    assert blocked and all(lw.acus[u.index].unit.shortcut is None for u in blocked)
    with pytest.raises(Exception, match="cannot be bypassed"):
        with lw.forced({blocked[0].index: True}):
            pass


def test_bypassed_projection_block_runs_its_shortcut_only(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    acu = lw.acus[0]  # layer1.0: 1x1 projection shortcut
    assert lw.units[0].bypass_macs > 0 and lw.units[0].bypass_macs < lw.units[0].macs
    seen = {}
    acu.register_forward_hook(lambda m, a, o: seen.update(x=a[0], out=o))
    with torch.no_grad(), lw.forced({0: True}):
        lw(x16)
    blk = acu.unit
    assert seen["out"].shape == blk(seen["x"]).shape
    assert torch.equal(seen["out"], blk.act(blk.shortcut(seen["x"])))


def test_base_model_is_untouched(resnet, x16):
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    lw = attach(resnet, x16, latency_n=1)
    with torch.no_grad(), lw.forced({u: True for u in lw.bypassable}):
        lw(x16)
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())
    assert not any(type(m).__name__ == "AttentionCalibrationUnit" for m in resnet.modules())
