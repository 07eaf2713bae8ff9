"""KL divergence between the attention distributions of adjacent attention layers (eq. 5, 8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import LayerwiseError

FLOOR = 1e-12  # a softmax in float32 can underflow to 0: log(p / 0) would be infinite


def padded_kl(p: Sequence[float], q: Sequence[float], epsilon: float = 1e-8) -> float:
    """D_KL(P || P') where P (layer l) is padded with ``epsilon`` up to the length of P' (layer l+1).

    Eq. (8): sum_{i<=l} p_i log(p_i / p'_i) + eps log(eps / p'_{l+1}); P is not renormalised after
    padding, as in the paper. Equal lengths give plain eq. (5). Terms with p_i = 0 contribute 0.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim != 1 or q.ndim != 1 or len(p) == 0:
        raise LayerwiseError("padded_kl takes two 1-D probability vectors: flatten the attention weights first")
    if len(p) > len(q):
        raise LayerwiseError(f"the earlier layer's distribution ({len(p)} values) is longer than the later "
                             f"one's ({len(q)}): pass them in forward order (P = layer l, P' = layer l+1)")
    padded = np.concatenate([p, np.full(len(q) - len(p), float(epsilon))])  # P = {p_1..p_l, eps}
    q = np.maximum(q, FLOOR)
    nz = padded > 0
    return float(np.sum(padded[nz] * np.log(padded[nz] / q[nz])))  # eq. (5) / (8)


def adjacent_kl(distributions: Mapping[str, np.ndarray], stages: Sequence[Sequence[str]],
                epsilon: float = 1e-8) -> dict[str, float]:
    """KL of every attention layer to the previous ACTIVE layer of its stage, keyed by the later one.

    ``stages`` lists the active (not skipped) layer names of each stage in forward order; the first
    layer of a stage has no predecessor (the key/value lists reset there) and gets no value.
    """
    out: dict[str, float] = {}
    for names in stages:
        for prev, cur in zip(names, names[1:]):
            if prev in distributions and cur in distributions:
                out[cur] = padded_kl(distributions[prev], distributions[cur], epsilon)
    return out


def uniform_kl(n: int, epsilon: float = 1e-8) -> float:
    """Eq. (8) between uniform attention over ``n`` layers and uniform attention over ``n + 1``.

    It is log((n + 1) / n) + eps log(eps (n + 1)): 0.69, 0.41, 0.29, 0.22, 0.18 for n = 1..5. Eq. (8)
    thus depends on the position in the stage even when no layer attends to anything in particular,
    which is what :func:`adjacent_kl` with ``norm="uniform"`` divides out.
    """
    if n < 1:
        raise LayerwiseError(f"uniform_kl needs a distribution over at least one layer, not {n}")
    return padded_kl(np.full(n, 1.0 / n), np.full(n + 1, 1.0 / (n + 1)), epsilon)


def normalised_kl(kl: Mapping[str, float], distributions: Mapping[str, np.ndarray], stages: Sequence[Sequence[str]],
                  epsilon: float = 1e-8) -> dict[str, float]:
    """Each layer's eq. (8) KL divided by :func:`uniform_kl` at its position (the length of the previous
    active layer's distribution): 1.0 means "as different from its predecessor as uniform attention
    one layer apart"; values are comparable across positions and stages."""
    out: dict[str, float] = {}
    for names in stages:
        for prev, cur in zip(names, names[1:]):
            if cur in kl and prev in distributions:
                out[cur] = kl[cur] / uniform_kl(len(distributions[prev]), epsilon)
    return out
