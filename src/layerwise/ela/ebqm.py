"""Algorithm 1 (EBQM) and the ablations of Tables 4, 6 and 7: which layers to skip given their KL.

All functions take the KL values of the candidate layers and return a boolean mask (True = skip).
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
    """Algorithm 1: skip the layers of S_gamma whose mapped normalised KL is below mu."""
    x = _as_array(kl)
    if len(x) == 0:
        return Selection([], None, [], [], [])
    q = float(np.quantile(x, config.gamma))  # step 3: Q_gamma (linear interpolation)
    in_s = x <= q  # S_gamma = {x_i | x_i <= Q_gamma}
    norm, mapped = reshape(x[in_s], config)  # steps 5-6
    skip = np.zeros(len(x), dtype=bool)
    skip[np.flatnonzero(in_s)] = mapped < config.mu  # step 7: y_j < mu -> skip
    full_norm: list[float | None] = [None] * len(x)
    full_map: list[float | None] = [None] * len(x)
    for j, i in enumerate(np.flatnonzero(in_s)):
        full_norm[i], full_map[i] = float(norm[j]), float(mapped[j])
    return Selection(skip.tolist(), q, in_s.tolist(), full_norm, full_map)


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


def select(kl: Sequence[float], config: ElaConfig, window_index: int = 0) -> Selection:
    """The configured strategy applied to one window's KL values."""
    if config.strategy == "threshold":
        return threshold_selection(kl, config.kl_threshold)
    if config.strategy == "fixed":
        counts = config.fixed_counts
        return fixed_selection(kl, counts[min(window_index, len(counts) - 1)])
    return ebqm(kl, config)
