import torch

from layerwise.lwac import LWACConfig, attach, summarise


def _fit(lw, seed=0):
    torch.manual_seed(seed)
    for a in lw.acus:
        if a.controller is not None:
            torch.nn.init.normal_(a.controller.fc2.weight, std=0.1)
            a.controller.fuse()


def test_score_one_equals_the_batched_score_and_follows_weight_changes(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    _fit(lw)
    acu = next(a for a in lw.acus if a.controller is not None)
    ctrl = acu.controller
    x = torch.randn(1, *lw.units[acu.unit_index].input_shape[1:])
    ref = ctrl.score(summarise(x, "mean")).item()
    assert abs(ctrl.score_one(x) - ref) < 1e-4
    assert abs(ctrl.relevance_one(x) - torch.sigmoid(torch.tensor(ref)).item()) < 1e-5  # R_i(x) is a probability
    assert abs(ctrl.score_one(x) - ref) < 1e-4  # cached path
    state = {k: v.clone() for k, v in ctrl.state_dict().items()}
    state["fc2.weight"] = state["fc2.weight"] * 2
    state["fc2.bias"] = state["fc2.bias"] + 1
    ctrl.load_state_dict(state)  # the cache must not survive new weights
    assert abs(ctrl.score_one(x) - ctrl.score(summarise(x, "mean")).item()) < 1e-4
    assert abs(ctrl.score_one(x) - ref) > 1e-3


def test_fast_path_decides_like_the_general_path(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    _fit(lw)
    lo = min(lw.state.cost[i] for i in lw.bypassable)
    torch.manual_seed(3)
    xs = [torch.randn(1, 3, 16, 16) for _ in range(8)]
    for lam in (0.0, 0.3, 0.5, 0.7, 5.0):
        lw.set_lambda(lam / max(lo, 1e-6))
        with torch.no_grad():
            lw.reset_counts()
            fast = [lw(x) for x in xs]
            fast_counts = list(lw.state.bypassed)
            lw.reset_counts()
            with lw.recording():  # recording forces the general path
                slow = [lw(x) for x in xs]
            assert list(lw.state.bypassed) == fast_counts
        assert all(torch.equal(a, b) for a, b in zip(fast, slow))


def test_no_unit_timing_or_entropy_without_adapt(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(track_every=1), latency_n=1)
    with torch.no_grad():
        for _ in range(3):
            lw(x16)
    assert lw.state.track_now is False
    assert all(v is None for v in lw.buffer.latencies())
    lw2 = attach(resnet, x16, LWACConfig(track_every=1, adapt=True), latency_n=1)
    with torch.no_grad():
        for _ in range(3):
            lw2(x16)
    assert any(v is not None for v in lw2.buffer.latencies())


def test_cache_made_under_inference_mode_works_with_grad_on(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    _fit(lw)
    with torch.inference_mode():
        a = lw(x16)
    b = lw(x16)  # autograd on: the cached weight must not be an inference tensor
    assert torch.allclose(a, b.detach())
