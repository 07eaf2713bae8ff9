"""Choose UnIT's percentile from the VALIDATION curve (``layerwise unit --percentile auto``).

The paper fixes the percentile per model by hand (20 in its experiments). Here the experiment
can choose it from the sweep grid instead, reading ONLY validation accuracies, so the test split
that scores the result never influences the choice:

    chosen = max { p in grid : val_acc(p) >= dense_val_acc - max_drop }

(the largest percentile whose validation accuracy is within ``max_drop`` of the dense model's,
the same bound as the magnitude and FATReLU baselines). The rule reads every grid point, not
only a prefix: a noisy, non-monotone validation curve can let a large percentile pass while a
smaller one failed, and the rule then takes the larger one (as stated; ``first_failure=True``
gives the magnitude baseline's "stop at the first failing step" reading instead). When no grid
percentile is within the bound the smallest one is returned with ``within_bound=False``.

:func:`choose_percentile` receives nothing but ``(percentile, val_accuracy)`` pairs and the dense
validation accuracy, so it cannot look at test data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import LayerwiseError


@dataclass(frozen=True)
class PercentileChoice:
    """The chosen percentile and the validation numbers it was chosen from."""

    percentile: float
    val_accuracy: float
    dense_val_accuracy: float
    max_drop: float                          # fraction (0.005 = 0.5 pt)
    within_bound: bool
    val_curve: tuple[tuple[float, float], ...]
    rule: str

    def to_json(self) -> dict:
        return {"percentile": self.percentile, "val_accuracy": self.val_accuracy,
                "dense_val_accuracy": self.dense_val_accuracy, "max_drop_pt": 100 * self.max_drop,
                "within_bound": self.within_bound, "rule": self.rule, "split": "val",
                "val_curve": [{"percentile": p, "val_accuracy": a} for p, a in self.val_curve]}


def choose_percentile(val_curve: Iterable[tuple[float, float]], dense_val_accuracy: float,
                      max_drop: float, *, first_failure: bool = False) -> PercentileChoice:
    """The largest grid percentile whose val accuracy >= ``dense_val_accuracy - max_drop``.

    ``val_curve``: ``(percentile, validation accuracy)`` pairs (any order); ``max_drop`` a
    fraction (0.005 = 0.5 pt). ``first_failure=True``: the last percentile before the first
    one (in increasing order) outside the bound.
    """
    pts = sorted((float(p), float(a)) for p, a in val_curve)
    if not pts:
        raise LayerwiseError("choose_percentile needs a non-empty validation curve; sweep at least "
                             "one percentile, e.g. 10,20,40")
    if not 0.0 <= max_drop < 1.0:
        raise LayerwiseError(f"max_drop={max_drop} must lie in [0, 1) (a fraction: 0.005 = 0.5 pt)")
    if any(not 0.0 < p < 100.0 or not math.isfinite(a) for p, a in pts):
        raise LayerwiseError("validation curve: percentiles must lie in (0, 100) and accuracies "
                             "be finite numbers")
    floor = float(dense_val_accuracy) - max_drop - 1e-12
    ok = [a >= floor for _, a in pts]
    if first_failure:
        k = ok.index(False) if False in ok else len(ok)
        idx = k - 1
        rule = "last percentile before the first one below dense val - max_drop"
    else:
        idx = max((i for i, v in enumerate(ok) if v), default=-1)
        rule = "largest percentile with val accuracy >= dense val - max_drop"
    within = idx >= 0
    idx = idx if within else 0
    return PercentileChoice(percentile=pts[idx][0], val_accuracy=pts[idx][1],
                            dense_val_accuracy=float(dense_val_accuracy), max_drop=max_drop,
                            within_bound=within, val_curve=tuple(pts), rule=rule)


def parse_percentile(text: str | float) -> float | None:
    """``"auto"`` -> ``None``; a number in (0, 100) -> that float; else a clear error."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return None
    try:
        p = float(text)
    except (TypeError, ValueError) as exc:
        raise LayerwiseError(f"--percentile {text!r}: give 'auto' or a number in (0, 100), e.g. 20") from exc
    if not 0.0 < p < 100.0:
        raise LayerwiseError(f"--percentile {p:g} must lie strictly between 0 and 100, e.g. 20, or be 'auto'")
    return p


__all__ = ["PercentileChoice", "choose_percentile", "parse_percentile"]
