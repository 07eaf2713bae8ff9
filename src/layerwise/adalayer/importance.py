"""Eq. (1): I_l = alpha * A_l + beta * F_l, clipped to [0, 1].

A_l, the accuracy contribution, is MEASURED: only layer l is compressed at the probe setting
(pruned to ``probe_ratio`` by magnitude and quantized to ``probe_bits``), all other layers intact,
and the damage s_l on the validation split is recorded. Defaults (chosen on evidence, see
docs/adalayer.md "Choosing the probe"): probe 80 % / 2 bits, s_l = the increase of validation
LOSS (continuous; the accuracy drop on 360 samples moves in steps of 1/360 and is 0 for most
layers at a mild probe), negatives counted as 0, and LOG normalisation

    A_l = log1p(s_l / m) / log1p(max_k s_k / m),   m = median of the positive s_k,

because s_l spans three orders of magnitude (a linear s/max maps all but the first two layers of
resnet20 below 0.1, so I_l = A_l - F_l clips to 0 and the allocation is near uniform).
``probe_metric="accuracy"`` (the paper's literal wording) and ``normalisation="max"`` (s/max) are
available; with the accuracy metric, when no probe changes the accuracy at all the loss increase
is used instead (logged).

F_l, the computational cost: layer l's share of the compressible layers' MACs (sums to 1).

Sign convention: I_l is what PROTECTS a layer (eq. 2: P = gamma * (1 - I) + ...; eq. 3: B = B_max
- lam * (1 - I)). With beta < 0 (default -1) a layer that costs a larger share of the MACs gets a
lower I and is compressed harder, as the issue asks; beta > 0 would protect costly layers.

Sensitivities are cached as JSON keyed by a hash of the weights, the dataset label, the
estimator and the probe setting (ratio, bits), so a second run with another budget reuses them;
the cache holds both the accuracy drops and the loss increases, so the metric and the
normalisation are applied after loading and are not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..storage import atomic_write_json
from ..train import evaluate
from .quantize import magnitude_mask, quantize_weight

log = logging.getLogger(__name__)


@dataclass
class Sensitivity:
    """Raw per-layer sensitivity: accuracy drop (and loss increase) at the probe setting."""

    estimator: str
    base_accuracy: float
    base_loss: float
    accuracy_drop: dict[str, float]
    loss_increase: dict[str, float]
    score: dict[str, float]  # what A_l is normalised from
    cached: bool = False

    def to_json(self) -> dict:
        return {"estimator": self.estimator, "base_accuracy": self.base_accuracy, "base_loss": self.base_loss,
                "accuracy_drop": self.accuracy_drop, "loss_increase": self.loss_increase, "score": self.score}


def weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(model: nn.Module, dataset_label: str, estimator: str, probe: dict) -> str:
    probe_s = json.dumps(probe, sort_keys=True)
    return hashlib.sha256(f"{weights_hash(model)}|{dataset_label}|{estimator}|{probe_s}".encode()).hexdigest()[:24]


def load_cached(cache_dir: Path | None, key: str) -> Sensitivity | None:
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"sensitivity-{key}.json"
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return Sensitivity(**{k: d[k] for k in ("estimator", "base_accuracy", "base_loss", "accuracy_drop",
                                                  "loss_increase", "score")}, cached=True)
    except (json.JSONDecodeError, KeyError, TypeError):
        log.warning("ignoring unreadable sensitivity cache %s", path)
        return None


def store_cached(cache_dir: Path | None, key: str, sens: Sensitivity) -> None:
    if cache_dir is not None:
        atomic_write_json(Path(cache_dir) / f"sensitivity-{key}.json", sens.to_json())


@torch.no_grad()
def probe_accuracy_drops(model: nn.Module, targets: list[tuple[str, nn.Module]], val, *, probe_ratio: float,
                         probe_bits: int, metric: str = "loss", device: str = "cpu", progress=None) -> Sensitivity:
    """Compress one layer at a time at the probe setting and measure val accuracy and loss; the
    score A_l is normalised from is the loss increase (``metric="loss"``) or the accuracy drop."""
    base = evaluate(model, val, device=device)
    drops, losses = {}, {}
    it = targets if progress is None else progress(targets, desc="sensitivity (eq. 1)", leave=False)
    for name, mod in it:
        original = mod.weight.data.clone()
        mask = magnitude_mask(original, probe_ratio)
        mod.weight.data.copy_(quantize_weight(original, mask, probe_bits).dequantize().to(original.dtype))
        ev = evaluate(model, val, device=device)
        mod.weight.data.copy_(original)
        drops[name] = base.accuracy - ev.accuracy
        losses[name] = ev.loss - base.loss
    return Sensitivity("accuracy", base.accuracy, base.loss, drops, losses, probe_score(drops, losses, metric))


def probe_score(drops: dict[str, float], losses: dict[str, float], metric: str) -> dict[str, float]:
    """s_l: the loss increase (``"loss"``) or the accuracy drop (``"accuracy"``, falling back to the
    loss increase when every drop is 0), negatives counted as 0."""
    if metric == "loss":
        return {k: max(v, 0.0) for k, v in losses.items()}
    score = {k: max(v, 0.0) for k, v in drops.items()}
    if max(score.values(), default=0.0) <= 0.0:
        log.info("no probe changed the validation accuracy: A_l falls back to the validation loss increase")
        score = {k: max(v, 0.0) for k, v in losses.items()}
    return score


def normalise(score: dict[str, float], mode: str = "max") -> dict[str, float]:
    """A_l from the raw scores s_l. ``"max"``: s / max(s) (all 0 when max is 0). ``"log"``:
    log1p(s / m) / log1p(max(s) / m), m = median of the positive s, s < 0 counted as 0: monotone,
    0 -> 0, max -> 1, and a layer at the median gets log(2) / log1p(max / m)."""
    if mode == "max":
        top = max(score.values(), default=0.0)
        return {k: (v / top if top > 0 else 0.0) for k, v in score.items()}
    if mode != "log":
        raise ValueError(f"unknown normalisation {mode!r}")
    positive = [v for v in score.values() if v > 0]
    if not positive:
        return {k: 0.0 for k in score}
    m = float(np.median(positive))
    top = float(np.log1p(max(positive) / m))
    if top <= 0:
        return {k: (1.0 if v > 0 else 0.0) for k, v in score.items()}
    return {k: float(np.log1p(max(v, 0.0) / m) / top) for k, v in score.items()}


def mac_shares(macs: dict[str, int]) -> dict[str, float]:
    """F_l = MACs_l / sum_k MACs_k over the compressible layers."""
    total = sum(macs.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in macs.items()}


def layer_importance(accuracy_contribution: dict[str, float], mac_share: dict[str, float], alpha: float,
                     beta: float) -> dict[str, float]:
    """Eq. (1): I_l = clip(alpha * A_l + beta * F_l, 0, 1)."""
    return {k: float(np.clip(alpha * accuracy_contribution[k] + beta * mac_share[k], 0.0, 1.0))
            for k in accuracy_contribution}
