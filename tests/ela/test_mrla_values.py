"""MRLA-B's buffered weighted sum (values="sum") against an explicit computation and the stacked one.

The buffered sum has a hand-written backward (dL/da_{t,s} = <G_t, V_s>, dL/dV_s = sum_{t>=s}
a_{t,s} G_t) that relies on the later layers' backward running first; these tests check outputs
and every gradient against plain autograd through an explicit per-term sum written here, on a
chain where each layer's input depends on the previous layer's output (as in a stage).
Tolerances: float64 1e-10 (the same maths, other summation order); float32 rtol 1e-5 / atol 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from layerwise.ela import AttentionCapture, find_attention_layers
from layerwise.models import build_model
from layerwise.models.mrla import StageContext, mrla_blocks
from layerwise.models.mrla_values import ValueStore, weighted_values
from layerwise.models.registry import ModelConfigError


def _chain(n: int, dtype, buffered: bool, capacity: int = 4, seed: int = 0, use_last: bool = True,
           poison: bool = False):
    """n layers of a toy stage: v_t = w_t * x_t, a_t = softmax(P x_t-pooled . keys), x_{t+1} = tanh(x_t + O_t)."""
    gen = torch.Generator().manual_seed(seed)
    b, g, d, h, w = 3, 2, 4, 3, 5
    c = g * d
    x0 = torch.randn(b, c, h, w, generator=gen, dtype=dtype, requires_grad=True)
    ws = [torch.randn(1, c, 1, 1, generator=gen, dtype=dtype, requires_grad=True) for _ in range(n)]
    proj = torch.randn(c, g * d, generator=gen, dtype=dtype, requires_grad=True)
    target = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    x, keys, values, outs, xs = x0, [], [], [], []
    store = ValueStore(capacity)
    for t in range(n):
        v = ws[t] * x
        pooled = (x.mean(dim=(2, 3)) @ proj).view(b, g, d)
        keys.append(pooled.tanh())
        attn = torch.einsum("bgd,bgtd->bgt", pooled, torch.stack(keys, dim=2)).softmax(dim=-1)
        if buffered:
            out = weighted_values(attn, v, store)
        else:  # O_t = sum_{s<=t} a_{t,s} V_s, one term at a time, per head
            values.append(v.view(b, g, d, h, w))
            out = sum(attn[:, :, s].view(b, g, 1, 1, 1) * values[s] for s in range(t + 1)).view(b, c, h, w)
        outs.append(out)
        xs.append(x)
        x = torch.tanh(x + out)
    if not use_last:  # the last layer's output never reaches the loss: its backward never runs
        x, outs = xs[-1], outs[:-1]
    if poison:  # a gradient buffer full of NaN: a slot read before it is written or zeroed shows
        store.grads = torch.full((b * g, n, d * h * w), float("nan"), dtype=dtype)
    loss = (x * target).sum() + 0.1 * sum((o ** 2).sum() for o in outs)
    leaves = [x0, proj, *ws]
    grads = torch.autograd.grad(loss, leaves, materialize_grads=True)  # an unused w_t: zeros
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("dtype,tol", [(torch.float64, dict(rtol=1e-10, atol=1e-10)),
                                       (torch.float32, dict(rtol=1e-5, atol=1e-6))])
@pytest.mark.parametrize("n,capacity", [(1, 4), (5, 4), (6, 2)])  # (6, 2): the buffer grows twice
def test_buffered_sum_equals_the_explicit_sum_forward_and_gradients(dtype, tol, n, capacity):
    out_ref, g_ref = _chain(n, dtype, buffered=False)
    out, g = _chain(n, dtype, buffered=True, capacity=capacity, poison=True)
    for a, e in zip(out, out_ref):
        torch.testing.assert_close(a, e, **tol)
    for a, e in zip(g, g_ref):
        torch.testing.assert_close(a, e, **tol)


@pytest.mark.parametrize("poison", [False, True])
def test_a_last_layer_whose_output_never_reaches_the_loss(poison):
    # its backward never runs, so its slot of stored output gradients must count as zero
    out_ref, g_ref = _chain(5, torch.float64, buffered=False, use_last=False)
    out, g = _chain(5, torch.float64, buffered=True, use_last=False, poison=poison)
    for a, e in zip(out + list(g), out_ref + list(g_ref)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def _pair(name: str, skip: tuple[int, ...] = ()):
    torch.manual_seed(5)
    new = build_model(name, (3, 8, 8), 10, values="sum")
    ref = build_model(name, (3, 8, 8), 10, values="stack")
    ref.load_state_dict(new.state_dict())
    for m in (new, ref):
        for i, (_, block) in enumerate(mrla_blocks(m)):
            block.skip_attention = i in skip
    return new, ref


@pytest.mark.parametrize("skip", [(), (1, 2, 4)])  # layer1.1, layer2.0, layer3.0
@pytest.mark.parametrize("train", [True, False])
def test_model_outputs_and_gradients_equal_the_stacked_reference(train, skip):
    new, ref = _pair("resnet20-mrla-b", skip)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([1, 2, 3, 4])
    results = []
    for m in (new, ref):
        m.train(train)
        torch.manual_seed(1)
        out = m(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        results.append((out.detach(), {n: p.grad for n, p in m.named_parameters()},
                        {n: b.clone() for n, b in m.named_buffers()}))
    (o1, g1, b1), (o2, g2, b2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys()
    for k in g2:
        if g2[k] is None:  # skipped layers: no Q, K, V computed, so no gradient
            assert g1[k] is None, k
        else:
            torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6, msg=k)
    for k in b2:  # BN running statistics updated alike in train mode
        torch.testing.assert_close(b1[k], b2[k], rtol=1e-5, atol=1e-6, msg=k)
    skipped = [n for i, (n, _) in enumerate(mrla_blocks(new)) if i in skip]
    for name in skipped:
        assert g1[f"{name}.attention.value.weight"] is None


def test_captured_distributions_are_the_same_in_both_modes():
    new, ref = _pair("resnet20-mrla-b", skip=(2,))
    x = torch.randn(5, 3, 8, 8)
    means = []
    for m in (new, ref):
        with AttentionCapture(find_attention_layers(m)) as cap, torch.no_grad():
            m.eval()(x)
        means.append(cap.means())
    assert means[0].keys() == means[1].keys()
    assert "layer2.0" not in means[0]  # the skipped layer has no distribution
    assert [len(means[0][k]) for k in ("layer1.0", "layer1.1", "layer2.1", "layer3.1")] == [1, 2, 1, 2]
    for k in means[1]:
        assert means[0][k] == pytest.approx(means[1][k], abs=1e-6)


def test_a_retained_graph_gives_the_same_gradients_twice():
    new, _ = _pair("resnet20-mrla-b")
    x = torch.randn(2, 3, 8, 8)
    loss = new.train()(x).square().sum()
    loss.backward(retain_graph=True)
    first = {n: p.grad.clone() for n, p in new.named_parameters()}
    new.zero_grad()
    loss.backward()
    for n, p in new.named_parameters():
        torch.testing.assert_close(p.grad, first[n], rtol=1e-5, atol=1e-7, msg=n)


def test_state_dict_keys_are_unchanged_so_saved_models_load():
    # the buffered sum adds no parameter or buffer: a model saved with another mode (or before
    # the mode existed) loads strictly
    new, ref = _pair("resnet20-mrla-b")
    assert list(new.state_dict()) == list(ref.state_dict())
    assert {"layer1.0.attention.query.weight", "layer1.0.attention.key.weight",
            "layer1.0.attention.value.weight", "layer1.0.attention_skip"} <= set(new.state_dict())
    new.load_state_dict(ref.state_dict(), strict=True)


def test_one_stage_cannot_mix_value_modes():
    new, ref = _pair("resnet20-mrla-b")
    block_new, block_ref = mrla_blocks(new)[0][1], mrla_blocks(ref)[1][1]
    x = torch.randn(2, 64, 8, 8)
    ctx = StageContext()
    block_new.attention(x, ctx)
    with pytest.raises(ModelConfigError, match="one values mode"):
        block_ref.attention(x, ctx)
