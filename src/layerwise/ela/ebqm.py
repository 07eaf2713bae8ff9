"""Algorithm 1 (EBQM) and the ablations of Tables 4, 6 and 7: which layers to skip given their KL.

All functions take the KL values of the candidate layers and return a boolean mask (True = skip).

Degenerate cases of Algorithm 1, and the rule used (the paper does not cover them):

* No spread (rule "no-spread"): when S_gamma holds fewer than two distinct values (one candidate,
  or every member tied), step 5's min-max normalisation is 0/0 and the KL cannot tell the layers
  apart. Taking them all to be at the minimum would skip all of them (and with a few candidates,
  repeated windows would then remove every attention layer whatever its KL); nothing is skipped.
* Never everything (rule "keep-one"): if a decision would skip every candidate (possible when
  gamma = 1 and the mapping puts the largest value below mu, e.g. the Normal mapping with mu near
  1), the candidates with the largest KL are kept.
* Ties: equal KL values always get the same decision (step 7 depends on the value only).

With n candidates and gamma, S_gamma holds about gamma * n values, and Algorithm 1 always skips its
smallest member when it has a spread (x' = 0 maps to y = 0 < mu): on ResNet-20 (three candidates,
gamma 0.5) the first window removes the layer with the smallest KL, and the next windows, with
two candidates and one value in S_gamma, remove nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import LayerwiseError
from .config import ElaConfig


@dataclass
class Selection:
    """What one skipping decision saw and chose (per candidate, in input order)."""

    skip: list[bool]
    quantile: float | None = None  # Q_gamma (step 3)
    in_subset: list[bool] | None = None  # x_i <= Q_gamma
    normalised: list[float | None] | None = None  # x'_j (step 5), None outside S_gamma
    mapped: list[float | None] | None = None  # y_j (step 6), None outside S_gamma
    rule: str | None = None  # the degenerate-case rule applied ("no-spread", "keep-one"), if any


def _as_array(kl: Sequence[float]) -> np.ndarray:
    x = np.asarray(kl, dtype=np.float64)
    if x.ndim != 1:
        raise LayerwiseError("EBQM takes a flat list of KL values, one per candidate layer")
    if not np.all(np.isfinite(x)):
        raise LayerwiseError("EBQM got a non-finite KL value: check the captured attention distributions")
    return x


def min_max(x: np.ndarray) -> np.ndarray:
    """Step 5: (x - min S) / (max S - min S). All equal (or one value): 0, i.e. all at the minimum."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def beta_moments(alpha: float, beta: float) -> tuple[float, float]:
    mean = alpha / (alpha + beta)
    var = alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
    return mean, var


def reshape(subset: np.ndarray, config: ElaConfig) -> tuple[np.ndarray, np.ndarray]:
    """Steps 5-6 for the values of S_gamma: ``(normalised, mapped)``; mapped values lie in [0, 1]."""
    a, b = config.alpha, config.beta
    if config.mapping in ("gqm", "eqm"):
        # Algorithm 2: empirical p(x_i), then x'_i = F^{-1}(p(x_i)). With p = rank/n the maximum maps
        # to infinity, so the Hazen position (rank - 0.5)/n is used; the mapped values are then
        # min-max normalised so that mu applies on [0, 1] as in EBQM.
        ranks = stats.rankdata(subset, method="max")
        p = (ranks - 0.5) / len(subset)
        dist = stats.gamma(config.gqm_shape) if config.mapping == "gqm" else stats.expon()
        q = dist.ppf(p)
        return min_max(subset), min_max(q)
    x = min_max(subset)  # step 5
    if config.mapping == "beta":
        y = stats.beta.cdf(x, a, b)  # step 6, eq. (9): y_j = F_Beta(x'_j; alpha, beta)
    elif config.mapping == "normal":  # Table 6: a Normal with Beta(alpha, beta)'s mean and variance
        mean, var = beta_moments(a, b)
        y = stats.norm.cdf(x, loc=mean, scale=np.sqrt(var))
    elif config.mapping == "gamma":  # Table 6: a Gamma with Beta(alpha, beta)'s mean and variance
        mean, var = beta_moments(a, b)
        y = stats.gamma.cdf(x, mean ** 2 / var, scale=var / mean)
    else:  # "identity": the single threshold on normalised KL of Sec. 3.3
        y = x
    return x, np.asarray(y, dtype=np.float64)


def ebqm(kl: Sequence[float], config: ElaConfig) -> Selection:
    """Algorithm 1: skip the layers of S_gamma whose mapped normalised KL is below mu.

    The degenerate cases follow the module's rules: no spread in S_gamma skips nothing, and a
    decision never skips every candidate."""
    x = _as_array(kl)
    if len(x) == 0:
        return Selection([], None, [], [], [])
    q = float(np.quantile(x, config.gamma))  # step 3: Q_gamma (linear interpolation)
    in_s = x <= q  # S_gamma = {x_i | x_i <= Q_gamma}
    norm, mapped = reshape(x[in_s], config)  # steps 5-6
    skip = np.zeros(len(x), dtype=bool)
    rule = None
    if len(np.unique(x[in_s])) < 2:  # rule "no-spread": min-max is 0/0, the KL tells nothing apart
        rule = "no-spread"
    else:
        skip[np.flatnonzero(in_s)] = mapped < config.mu  # step 7: y_j < mu -> skip
        if skip.all():  # rule "keep-one": never remove every candidate
            rule = "keep-one"
            skip[x == x.max()] = False
    full_norm: list[float | None] = [None] * len(x)
    full_map: list[float | None] = [None] * len(x)
    for j, i in enumerate(np.flatnonzero(in_s)):
        full_norm[i], full_map[i] = float(norm[j]), float(mapped[j])
    return Selection(skip.tolist(), q, in_s.tolist(), full_norm, full_map, rule)


def threshold_selection(kl: Sequence[float], threshold: float) -> Selection:
    """Table 4, threshold-based: skip every layer whose KL is below a fixed threshold."""
    x = _as_array(kl)
    return Selection((x < threshold).tolist())


def fixed_selection(kl: Sequence[float], count: int) -> Selection:
    """Table 4, fixed layer pruning: skip the ``count`` layers with the lowest KL (ties: earlier first)."""
    x = _as_array(kl)
    skip = np.zeros(len(x), dtype=bool)
    skip[np.argsort(x, kind="stable")[:max(0, min(count, len(x)))]] = True
    return Selection(skip.tolist())


def random_selection(n: int, count: int, seed: int, window_index: int = 0) -> Selection:
    """Control: skip ``count`` of ``n`` candidates drawn uniformly at random (no KL involved).
    The draw depends only on ``(seed, window_index)``."""
    rng = np.random.default_rng([int(seed), int(window_index)])
    skip = np.zeros(n, dtype=bool)
    skip[rng.choice(n, size=max(0, min(count, n)), replace=False)] = True
    return Selection(skip.tolist())


def position_selection(n: int, count: int) -> Selection:
    """Control: skip ``count`` of ``n`` candidates (in forward order) at evenly spaced positions,
    index floor((i + 0.5) n / count) for i = 0..count-1 (e.g. 2 of 10: the 3rd and 8th)."""
    count = max(0, min(count, n))
    skip = np.zeros(n, dtype=bool)
    skip[[int(np.floor((i + 0.5) * n / count)) for i in range(count)]] = True
    return Selection(skip.tolist())


def select(kl: Sequence[float], config: ElaConfig, window_index: int = 0) -> Selection:
    """The configured strategy applied to one window's KL values (candidates in forward order)."""
    if config.strategy == "threshold":
        return threshold_selection(kl, config.kl_threshold)
    if config.strategy in ("fixed", "random", "position"):
        counts = config.fixed_counts
        count = counts[min(window_index, len(counts) - 1)]
        if config.strategy == "random":
            return random_selection(len(kl), count, config.random_seed, window_index)
        if config.strategy == "position":
            return position_selection(len(kl), count)
        return fixed_selection(kl, count)
    return ebqm(kl, config)
