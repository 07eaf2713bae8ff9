"""ELA's settings: the KL windows, EBQM's gamma / alpha / beta / mu, and the ablation switches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import LayerwiseError

STRATEGIES = ("ebqm", "threshold", "fixed", "random", "position")
KL_NORMS = ("uniform", "paper")
MAPPINGS = ("beta", "normal", "gamma", "gqm", "eqm", "identity")
# The paper's CIFAR schedule (Sec. 4.1): KL averaged over epochs 1-3, 45-48 and 91-93 of 180.
PAPER_WINDOWS = ((1, 3), (45, 48), (91, 93))
PAPER_EPOCHS = 180


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def paper_windows(epochs: int) -> tuple[tuple[int, int], ...]:
    """The paper's three windows scaled from 180 epochs to ``epochs`` (1-based, inclusive).

    Each window keeps at least one epoch; a window that would overlap the previous one is moved
    after it, and windows that no longer fit are dropped. At 180 epochs they are the paper's.
    """
    out: list[tuple[int, int]] = []
    for start, end in PAPER_WINDOWS:
        s = max(1, _round(start * epochs / PAPER_EPOCHS))
        e = max(s, _round(end * epochs / PAPER_EPOCHS))
        if out and s <= out[-1][1]:
            s, e = out[-1][1] + 1, max(e, out[-1][1] + 1)
        if e <= epochs:
            out.append((s, e))
    return tuple(out)


@dataclass
class ElaConfig:
    """How ELA finds and skips redundant attention layers during training.

    ``windows``: 1-based inclusive epoch ranges; the KL of each layer is averaged over a window and
    the layers to skip are chosen at its end (``None``: :func:`paper_windows`). ``strategy``:
    ``"ebqm"`` (Algorithm 1), ``"threshold"`` (skip raw KL < ``kl_threshold``, Table 4) or
    ``"fixed"`` (skip the ``fixed_counts[i]`` lowest KLs at window i, the last count repeating,
    Table 4). ``mapping`` (EBQM step 6): ``"beta"`` (the paper), ``"normal"``/``"gamma"`` (Table 6,
    moment-matched to Beta(alpha, beta)), ``"gqm"``/``"eqm"`` (Table 7, Algorithm 2 quantile
    mapping onto Gamma(``gqm_shape``, 1) / Exponential(1)), ``"identity"`` (no reshaping: the single
    threshold of Sec. 3.3). ``gamma`` is not given in the paper: 0.5 is our choice.

    ``kl_norm``: which KL the decision uses. ``"paper"`` is eq. (8) as written; ``"uniform"`` (the
    default) divides it by eq. (8) between uniform attention over t and t + 1 layers at the same
    position, log((t + 1) / t) (:func:`~layerwise.ela.kl.uniform_kl`): eq. (8) alone is larger for
    early positions whatever the layers learned (0.69 at t = 1, 0.18 at t = 5), so pooling it over
    every position and stage, as Algorithm 1 does, removes late layers of a stage first. Both values
    are recorded in every decision.

    Controls (not from the paper): ``"random"`` removes ``fixed_counts[i]`` candidates drawn at
    random (``random_seed``), ``"position"`` removes ``fixed_counts[i]`` candidates at evenly spaced
    positions of the forward order; neither looks at the KL.
    """

    windows: tuple[tuple[int, int], ...] | None = None
    gamma: float = 0.5
    alpha: float = 5.0  # CIFAR setting of Sec. 4.1
    beta: float = 1.0
    mu: float = 0.3
    strategy: str = "ebqm"
    mapping: str = "beta"
    kl_threshold: float = 0.05
    fixed_counts: tuple[int, ...] = (1,)
    epsilon: float = 1e-8  # the "infinitesimally small" padding of eq. (8)
    gqm_shape: float = 2.0
    kl_norm: str = "uniform"
    random_seed: int = 0

    def resolved_windows(self, epochs: int) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(w) for w in self.windows) if self.windows is not None else paper_windows(epochs)

    def validate(self, epochs: int) -> tuple[tuple[int, int], ...]:
        """Check every setting against a run of ``epochs``; return the windows to use."""
        def bad(what: str) -> LayerwiseError:
            return LayerwiseError(f"invalid ELA config: {what}")
        if not 0.0 < self.gamma <= 1.0:
            raise bad(f"gamma={self.gamma} is a quantile and must be in (0, 1]: use e.g. gamma=0.5")
        if not (self.alpha > 0 and self.beta > 0):
            raise bad(f"Beta parameters must be positive, not alpha={self.alpha}, beta={self.beta}: "
                      "use e.g. alpha=5, beta=1 (CIFAR) or alpha=2, beta=5 (ImageNet)")
        if not 0.0 <= self.mu <= 1.0:
            raise bad(f"mu={self.mu} is a threshold on mapped values in [0, 1]: use e.g. mu=0.3")
        if self.strategy not in STRATEGIES:
            raise bad(f"strategy={self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.mapping not in MAPPINGS:
            raise bad(f"mapping={self.mapping!r}; use one of {', '.join(MAPPINGS)}")
        if self.kl_norm not in KL_NORMS:
            raise bad(f"kl_norm={self.kl_norm!r}; use one of {', '.join(KL_NORMS)}")
        if not self.epsilon > 0:
            raise bad(f"epsilon={self.epsilon} must be a small positive number such as 1e-8")
        if not self.gqm_shape > 0:
            raise bad(f"gqm_shape={self.gqm_shape} must be positive")
        if self.strategy in ("fixed", "random", "position") and (not self.fixed_counts or min(self.fixed_counts) < 0):
            raise bad(f"fixed_counts={self.fixed_counts} needs non-negative layer counts, e.g. (2,)")
        if epochs < 1:
            raise bad(f"ELA needs at least one training epoch, not {epochs}")
        windows = self.resolved_windows(epochs)
        if not windows:
            raise bad(f"no KL window fits in {epochs} epochs: give windows such as ((1, 1),)")
        previous = 0
        for start, end in windows:
            if start < 1 or end < start:
                raise bad(f"window ({start}, {end}) must be 1-based with start <= end, e.g. (1, 3)")
            if start <= previous:
                raise bad(f"window ({start}, {end}) overlaps or precedes the previous one: give windows in order")
            if end > epochs:
                raise bad(f"window ({start}, {end}) goes beyond the {epochs} training epochs: "
                          f"end it at epoch {epochs} or earlier, or train longer")
            previous = end
        return windows
