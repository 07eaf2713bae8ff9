"""MRLA-B, MRLA-L and ELA's distribution capture against an independent computation.

Everything expected is computed here from the modules' weights with explicit loops (the ECA
Conv1d, the depthwise 3x3 conv, the global average pool, the per-head scores, softmax and
sigmoid, eval-mode BatchNorm), in float64, on a two-block stage with two heads. Each test names
the broken formulas it catches: a missing 1/sqrt(d), MRLA-B without its ReLU, MRLA-L adding
lambda * (current features) instead of lambda * (identity), tanh for the sigmoid gate, a capture
of head 0 only, and an MRLA-L probe without the 1/sqrt(d).
"""

from __future__ import annotations

import math

import pytest
import torch

from layerwise.ela import AttentionCapture, find_attention_layers
from layerwise.models import build_model
from layerwise.models.mrla import mrla_blocks


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(name, (3, 8, 8), 10).double().eval()
    gen = torch.Generator().manual_seed(4)
    for m in model.modules():  # BN with non-trivial running statistics, so eval BN is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.3)
    for _, block in mrla_blocks(model):  # small Q and K weights: scores of order 1, softmax not saturated
        for conv in (block.attention.query, block.attention.key):
            conv.weight.data.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64) * 0.15)
    return model


def _conv1d_same(y: list[float], w: list[float]) -> list[float]:
    """ECA's Conv1d(1, 1, k, padding=(k-1)/2, bias=False) over the channel axis, by hand."""
    k, pad, c = len(w), (len(w) - 1) // 2, len(y)
    return [sum(w[j] * y[i + j - pad] for j in range(k) if 0 <= i + j - pad < c) for i in range(c)]


def _depthwise3x3(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Depthwise 3x3 conv, padding 1, no bias: x [C, H, W], w [C, 1, 3, 3]."""
    c, h, wd = x.shape
    out = torch.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            for i in range(h):
                for j in range(wd):
                    si, sj = i + dy - 1, j + dx - 1
                    if 0 <= si < h and 0 <= sj < wd:
                        out[:, i, j] += w[:, 0, dy, dx] * x[:, si, sj]
    return out


def _bn_eval(x: torch.Tensor, bn) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) \
        * bn.weight.view(shape) + bn.bias.view(shape)


def _qkv(att, out_b: torch.Tensor):
    """Q, K per head ([g][d] lists) and V [C, H, W] of one sample, by hand."""
    c = out_b.shape[0]
    y = [float(out_b[i].mean()) for i in range(c)]  # global average pool (callers run under no_grad)
    q = _conv1d_same(y, att.query.weight.view(-1).tolist())
    k = _conv1d_same(y, att.key.weight.view(-1).tolist())
    g, d = att.heads, att.head_dim
    return ([q[h * d:(h + 1) * d] for h in range(g)], [k[h * d:(h + 1) * d] for h in range(g)],
            _depthwise3x3(out_b, att.value.weight))


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


@torch.no_grad()
def _expected_stage(model, x: torch.Tensor, variant: str):
    """Stage 1 output and each layer's per-sample, per-head weights over the stage (explicit loops)."""
    blocks = [b for n, b in mrla_blocks(model) if n.startswith("layer1.")]
    h = model.stem(x)
    weights: list[list[list[list[float]]]] = []  # [layer][sample][head][s]
    keys: list[list] = [[] for _ in range(x.shape[0])]
    values: list[list] = [[] for _ in range(x.shape[0])]
    for block in blocks:
        identity = block.shortcut(h) if block.shortcut is not None else h
        out = torch.relu(identity + block.residual(h))
        att = block.attention
        g, d = att.heads, att.head_dim
        new = torch.empty_like(out)
        layer_weights = []
        for b in range(x.shape[0]):
            q, k, v = _qkv(att, out[b])
            keys[b].append(k)
            values[b].append(v)
            o = torch.zeros_like(v)
            per_head = []
            for head in range(g):
                chans = slice(head * d, (head + 1) * d)
                if variant == "b":
                    scores = [_dot(q[head], ks[head]) / math.sqrt(d) for ks in keys[b]]
                    z = [math.exp(s - max(scores)) for s in scores]
                    a = [e / sum(z) for e in z]  # softmax over the stage's layers so far
                    for s, vs in enumerate(values[b]):
                        o[chans] += a[s] * vs[chans]
                else:
                    gate = 1.0 / (1.0 + math.exp(-_dot(q[head], k[head]) / math.sqrt(d)))  # sigmoid
                    o[chans] = gate * v[chans]
                    scores = [_dot(q[head], ks[head]) / math.sqrt(d) for ks in keys[b]]  # the probe
                    z = [math.exp(s - max(scores)) for s in scores]
                    a = [e / sum(z) for e in z]
                per_head.append(a)
            layer_weights.append(per_head)
            if variant == "l":
                o = o + block.attention.lambda_.view(-1, 1, 1) * identity[b]  # lambda (.) identity
            branch = _bn_eval(o, block.attention_norm)
            new[b] = out[b] + (torch.relu(branch) if variant == "b" else branch)
        weights.append(layer_weights)
        h = new
    return h, weights


def _mean_over_samples_and_heads(w) -> list[float]:
    n = len(w) * len(w[0])
    return [sum(w[b][g][s] for b in range(len(w)) for g in range(len(w[0]))) / n for s in range(len(w[0][0]))]


@pytest.mark.parametrize("variant", ["b", "l"])
def test_stage_output_equals_the_explicit_computation(variant):
    """Catches: no 1/sqrt(d); MRLA-B without ReLU; MRLA-L with current features or tanh."""
    model = _model(f"resnet20-mrla-{variant}")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected, _ = _expected_stage(model, x, variant)
    with torch.no_grad():
        got = model.layer1(model.stem(x))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", ["b", "l"])
def test_captured_distributions_equal_the_explicit_mean_over_samples_and_heads(variant):
    """Catches: a capture of head 0 only; an MRLA-L probe without the 1/sqrt(d) scale."""
    model = _model(f"resnet20-mrla-{variant}")
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    _, weights = _expected_stage(model, x, variant)
    # the two heads really attend differently, so a one-head capture cannot pass by accident
    assert abs(weights[1][0][0][0] - weights[1][0][1][0]) > 1e-3
    with AttentionCapture(find_attention_layers(model)) as cap, torch.no_grad():
        model(x)
    means = cap.means()
    for t, name in enumerate(("layer1.0", "layer1.1")):
        assert means[name].tolist() == pytest.approx(_mean_over_samples_and_heads(weights[t]), abs=1e-9)


def test_mrla_b_ela_model_skipping_a_layer_matches_the_plain_block_plus_later_attention():
    """A skipped first layer: the second layer attends over itself only (weight 1)."""
    model = _model("resnet20-ela")
    dict(mrla_blocks(model))["layer1.0"].skip_attention = True
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with AttentionCapture(find_attention_layers(model)) as cap, torch.no_grad():
        model(x)
    assert "layer1.0" not in cap.means() and cap.means()["layer1.1"].tolist() == [1.0]
