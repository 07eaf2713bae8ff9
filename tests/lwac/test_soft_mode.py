"""LWAC on a model none of whose units can be skipped (a plain CNN-LSTM): hard mode refuses to
calibrate a lambda that changes nothing and names the fix; soft mode (eq. 1, h~ = alpha * h) spans
lambda from 0 to where every unit's alpha is below the threshold, and the sweep moves accuracy but
never claims a latency saving."""

import math

import pytest
import torch

from layerwise.lwac import LWACConfig, attach, gather_relevance, lambda_range, sweep_lambda
from layerwise.lwac.config import LWACError
from layerwise.models import build_model


def _series(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 6, 40, generator=g), torch.randint(0, 4, (n,), generator=g))


@pytest.fixture
def cnn_lstm():
    torch.manual_seed(0)
    return build_model("cnn-lstm", (6, 40), 4).eval()


def test_hard_mode_on_a_model_with_nothing_to_skip_names_soft_mode(cnn_lstm):
    val = _series()
    lw = attach(cnn_lstm, val[0][0][None], LWACConfig(policy="heuristic"), latency_n=1)
    assert lw.bypassable == []
    gather_relevance(lw, val)
    with pytest.raises(LWACError, match=r"mode='soft'"):
        lambda_range(lw, val)


def test_soft_mode_range_and_sweep_on_a_model_with_nothing_to_skip(cnn_lstm):
    val = _series()
    lw = attach(cnn_lstm, val[0][0][None], LWACConfig(policy="heuristic", mode="soft"), latency_n=1)
    gather_relevance(lw, val)
    lo, hi = lambda_range(lw, val)
    assert lo == 0.0 and hi > 0.0
    cfg, st = lw.config, lw.state
    # eq. (2) by hand at the top of the range: every unit's alpha is below the threshold
    for r, c in zip(st.relevance, st.cost):
        if c > 0:
            assert 1 / (1 + math.exp(-(cfg.gamma * r - hi * c))) < cfg.threshold
    points = sweep_lambda(lw, val, [lo, hi], dense_ms=1.0)
    assert all(p.est_latency_ratio == 1.0 for p in points)       # nothing skipped: no saving claimed
    assert all(share == 1.0 for p in points for share in p.run_share)
    # the scaled model is not the dense one: at lambda = hi some prediction moves
    x = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        dense = cnn_lstm(x)
        lw.set_lambda(hi)
        scaled = lw.model(x)
    assert not torch.allclose(dense, scaled)
