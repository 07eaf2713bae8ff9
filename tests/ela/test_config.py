"""Bad input gets one clear LayerwiseError naming the fix."""

from __future__ import annotations

import pytest

from layerwise.ela import ElaConfig, find_attention_layers, paper_windows
from layerwise.errors import LayerwiseError
from layerwise.models import build_model


@pytest.mark.parametrize("gamma", [0.0, -0.1, 1.5])
def test_gamma_outside_0_1(gamma):
    with pytest.raises(LayerwiseError, match=r"gamma=.* must be in \(0, 1\]"):
        ElaConfig(gamma=gamma).validate(10)


@pytest.mark.parametrize("alpha,beta", [(0, 1), (5, 0), (-1, 2)])
def test_non_positive_beta_parameters(alpha, beta):
    with pytest.raises(LayerwiseError, match="Beta parameters must be positive"):
        ElaConfig(alpha=alpha, beta=beta).validate(10)


def test_windows_beyond_the_epochs():
    with pytest.raises(LayerwiseError, match=r"window \(4, 5\) goes beyond the 4 training epochs"):
        ElaConfig(windows=((1, 1), (4, 5))).validate(4)


def test_windows_out_of_order_and_unknown_options():
    with pytest.raises(LayerwiseError, match="overlaps"):
        ElaConfig(windows=((2, 3), (3, 4))).validate(10)
    with pytest.raises(LayerwiseError, match="mapping='weibull'"):
        ElaConfig(mapping="weibull").validate(10)
    with pytest.raises(LayerwiseError, match="mu="):
        ElaConfig(mu=1.5).validate(10)


def test_a_model_without_attention_layers():
    with pytest.raises(LayerwiseError, match="has no MRLA attention layers.*resnet56-ela"):
        find_attention_layers(build_model("resnet20", (3, 32, 32), 10))


def test_paper_windows_scale_from_180_epochs():
    assert paper_windows(180) == ((1, 3), (45, 48), (91, 93))
    assert paper_windows(10) == ((1, 1), (3, 3), (5, 5))
    assert paper_windows(4) == ((1, 1), (2, 2), (3, 3))
    assert paper_windows(1) == ((1, 1),)
    for e in range(1, 60):
        ElaConfig().validate(e)  # the defaults always fit
