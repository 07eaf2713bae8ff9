"""Statistics every accuracy claim carries: confidence intervals, paired tests, seed summaries.

* :func:`accuracy_ci`: the Wilson score interval of a test accuracy (95 % by default). It stays
  inside [0, 1] and behaves at 0 % and 100 %, where the normal ("Wald") interval collapses.
* :func:`paired_difference`: two variants scored on the SAME test images. The difference of their
  accuracies with a paired bootstrap interval (the images are resampled together, so the
  correlation between the variants is kept) and the exact McNemar test on the discordant images
  (right with one variant only). A difference counts as measurable only when both agree: the
  interval excludes zero AND McNemar's p is below ``1 - level`` (with a handful of discordant
  images the percentile bootstrap can exclude zero while the exact test cannot: 0 vs 4 images
  gives p = 0.125). Otherwise the verdict is "no measurable difference".
* :func:`seed_summary`: mean, sample standard deviation (``ddof=1``) and the per-seed values.

Everything is plain numpy / scipy and deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom, norm

from .errors import LayerwiseError


@dataclass(frozen=True)
class AccuracyCI:
    """An accuracy ``correct / n`` with its confidence interval."""

    accuracy: float
    low: float
    high: float
    n: int
    correct: int
    level: float = 0.95
    method: str = "wilson"

    def to_json(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        return (f"{100 * self.accuracy:.2f} % (95 % CI {100 * self.low:.2f}-{100 * self.high:.2f}, "
                f"n={self.n})" if self.level == 0.95 else
                f"{100 * self.accuracy:.2f} % ({100 * self.level:g} % CI {100 * self.low:.2f}-"
                f"{100 * self.high:.2f}, n={self.n})")


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise LayerwiseError(f"confidence level {level} must lie strictly between 0 and 1, e.g. 0.95")
    return level


def wilson_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes in ``n`` trials.

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the normal quantile.
    """
    level = _check_level(level)
    if n <= 0:
        raise LayerwiseError(f"an accuracy needs n >= 1 scored samples, got n={n}")
    if not 0 <= correct <= n:
        raise LayerwiseError(f"correct={correct} must lie in [0, n={n}]")
    z = float(norm.ppf(0.5 + level / 2))
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always holds p (0 at k = 0, 1 at k = n); clamp away float rounding
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def _as_bool(hits, name: str) -> np.ndarray:
    a = np.asarray(hits)
    if a.ndim != 1 or a.size == 0:
        raise LayerwiseError(f"{name} must be a non-empty 1-d sequence of per-sample hits (True = right)")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise LayerwiseError(f"{name} must hold booleans or 0/1 per sample")
        a = a.astype(bool)
    return a


def accuracy_ci(hits=None, *, correct: int | None = None, n: int | None = None,
                level: float = 0.95) -> AccuracyCI:
    """Accuracy and its Wilson interval, from per-sample ``hits`` or from ``correct`` and ``n``."""
    if hits is not None:
        h = _as_bool(hits, "hits")
        correct, n = int(h.sum()), int(h.size)
    elif correct is None or n is None:
        raise LayerwiseError("accuracy_ci needs per-sample hits, or correct= and n=")
    lo, hi = wilson_interval(int(correct), int(n), level)
    return AccuracyCI(accuracy=correct / n, low=lo, high=hi, n=int(n), correct=int(correct),
                      level=level)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: ``only_a`` images right with A only, ``only_b`` with B
    only. Under "no difference" each discordant image is a fair coin:
    ``p = min(1, 2 * P(X <= min(only_a, only_b)))`` with ``X ~ Binomial(only_a + only_b, 1/2)``."""
    if only_a < 0 or only_b < 0:
        raise LayerwiseError("discordant counts must be >= 0")
    m = only_a + only_b
    if m == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(only_a, only_b), m, 0.5)))


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus accuracy of B on the same images, with its interval and McNemar test."""

    a: str
    b: str
    difference: float          # accuracy(A) - accuracy(B), a fraction
    low: float
    high: float
    n: int
    only_a: int                # images right with A only
    only_b: int
    mcnemar_p: float
    level: float = 0.95
    method: str = "paired bootstrap (percentile), exact McNemar"
    resamples: int = 0

    @property
    def measurable(self) -> bool:
        """True only when the interval excludes zero and McNemar's p is below ``1 - level``."""
        return not (self.low <= 0.0 <= self.high) and self.mcnemar_p < 1.0 - self.level

    def verdict(self) -> str:
        """One line a user reads: who is ahead by how much, or no measurable difference."""
        ci = (f"{100 * self.difference:+.2f} pt, {100 * self.level:g} % CI "
              f"{100 * self.low:+.2f} to {100 * self.high:+.2f}, McNemar p={self.mcnemar_p:.3g}, "
              f"{self.only_a} vs {self.only_b} discordant of {self.n}")
        if not self.measurable:
            return f"{self.a} vs {self.b}: no measurable difference ({ci})"
        ahead = self.a if self.difference > 0 else self.b
        return f"{self.a} vs {self.b}: {ahead} ahead ({ci})"

    def to_json(self) -> dict:
        out = asdict(self)
        out["measurable"] = self.measurable
        out["verdict"] = self.verdict()
        return out


def paired_difference(hits_a, hits_b, *, a: str = "A", b: str = "B", level: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Compare two variants on the same test images (``hits_*[i]``: image ``i`` right).

    The interval is the percentile interval of the accuracy difference over ``resamples``
    bootstrap resamples of the images (the same resample for both variants).
    """
    level = _check_level(level)
    ha, hb = _as_bool(hits_a, "hits_a"), _as_bool(hits_b, "hits_b")
    if ha.size != hb.size:
        raise LayerwiseError(f"paired comparison needs the same images: {ha.size} vs {hb.size} hits")
    if resamples < 100:
        raise LayerwiseError(f"resamples={resamples}: use at least 100 (2000 is the default)")
    n = int(ha.size)
    d = ha.astype(np.int8) - hb.astype(np.int8)          # +1 A only, -1 B only, 0 concordant
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 4_000_000 // n)
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        idx = rng.integers(0, n, size=(k, n))
        diffs[s:s + k] = d[idx].mean(axis=1)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    only_a, only_b = int((d == 1).sum()), int((d == -1).sum())
    return PairedDifference(a=a, b=b, difference=float(d.mean()), low=float(lo), high=float(hi),
                            n=n, only_a=only_a, only_b=only_b,
                            mcnemar_p=mcnemar_exact(only_a, only_b), level=level,
                            resamples=resamples)


@dataclass(frozen=True)
class SeedSummary:
    """A figure over seeds: mean, sample standard deviation and every value."""

    mean: float
    std: float
    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "values": list(self.values),
                "seeds": list(self.seeds)}

    def text(self, scale: float = 100.0, unit: str = " %") -> str:
        vals = ", ".join(f"{scale * v:.2f}" for v in self.values)
        return f"{scale * self.mean:.2f} ± {scale * self.std:.2f}{unit} (seeds: {vals})"


def seed_summary(values: Sequence[float], seeds: Sequence[int] = ()) -> SeedSummary:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single seed) of per-seed values."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise LayerwiseError("seed_summary needs at least one value")
    if seeds and len(seeds) != v.size:
        raise LayerwiseError(f"{len(seeds)} seeds for {v.size} values")
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return SeedSummary(mean=float(v.mean()), std=std, values=tuple(float(x) for x in v),
                       seeds=tuple(int(s) for s in seeds))


__all__ = ["AccuracyCI", "PairedDifference", "SeedSummary", "accuracy_ci", "mcnemar_exact",
           "paired_difference", "seed_summary", "wilson_interval"]
