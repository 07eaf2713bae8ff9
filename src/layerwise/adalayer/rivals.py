"""The rivals AdaLayerNet is compared with, each at AdaLayerNet's packed size, each fine-tuned with
the same recipe (:func:`.pipeline.compress_plan`), each packed in the same file format.

A *family* maps one pruning knob and one bit width to a per-layer plan (P_l, B_l):

- ``uniform``: the same ratio and bits in every layer (the paper's Table 2 "uniform compression");
- ``uniform-fl8``: the same, except the first layer (the one that reads the input) and the output
  layers (found from the graph, :mod:`.graph`) stay unpruned at 8 bits, as practitioners do;
- ``magnitude``: global magnitude pruning (ONE threshold on |w| over all layers, so each layer
  loses the fraction of its weights below it) plus uniform bits.

For each bit width the least knob whose packed file fits the target is found by bisection on the
real packed size (:func:`.uniform.uniform_candidates`); only candidates within ``band`` of the
largest fitting size compete (:func:`.uniform.same_size`); every competing candidate is fine-tuned
and the best VALIDATION accuracy after fine-tuning wins (test data is never looked at). ``top > 0``
caps the fine-tunes (to save time) at the ``top`` best by validation accuracy before fine-tuning,
a choice that is then recorded.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerwiseError
from ..train import evaluate
from .config import AdaLayerConfig
from .graph import execution_order, output_layers
from .packed import Architecture
from .pipeline import compress_plan, plan_size_fn
from .targets import find_targets
from .uniform import UniformCandidate, same_size, uniform_candidates

log = logging.getLogger(__name__)

Plan = Callable[[float, int], tuple[dict[str, float], dict[str, int]]]
FAMILIES = ("uniform", "uniform-fl8", "magnitude")


def global_magnitude_ratios(targets: list[tuple[str, nn.Module]], ratio: float) -> dict[str, float]:
    """Per-layer ratios of global magnitude pruning: the ``ratio`` smallest |w| over ALL layers go;
    layer l loses the fraction of its weights below that one threshold."""
    flat = torch.cat([m.weight.detach().abs().flatten() for _, m in targets])
    k = int(round(ratio * flat.numel()))
    if k <= 0:
        return {n: 0.0 for n, _ in targets}
    threshold = torch.kthvalue(flat, k).values
    return {n: float((m.weight.detach().abs() <= threshold).sum()) / m.weight.numel()
            for n, m in targets}


def family_plan(family: str, model: nn.Module, example_input: torch.Tensor, p_max: float) -> Plan:
    """``plan(knob, bits) -> (prune_ratio, bits)`` of one rival family (see the module docstring)."""
    targets, _ = find_targets(model)
    names = [n for n, _ in targets]
    if family == "uniform":
        return lambda r, b: ({n: r for n in names}, {n: b for n in names})
    if family == "uniform-fl8":
        order = execution_order(model, example_input)
        keep = set(order[:1]) | set(output_layers(model, example_input))
        return lambda r, b: ({n: (0.0 if n in keep else r) for n in names},
                             {n: (8 if n in keep else b) for n in names})
    if family == "magnitude":
        return lambda r, b: ({n: min(v, p_max) for n, v in global_magnitude_ratios(targets, r).items()},
                             {n: b for n in names})
    raise LayerwiseError(f"unknown rival family {family!r}; use one of {FAMILIES}")


@dataclass
class FamilyChoice:
    family: str
    chosen: UniformCandidate
    candidates: list[UniformCandidate]
    model: nn.Module
    packed: bytes
    prune_ratio: dict[str, float]
    bits: dict[str, int]
    ranking: str

    def to_json(self) -> dict:
        return {"family": self.family, "knob": self.chosen.prune_ratio, "bits": self.chosen.bits,
                "candidates": [c.to_json() for c in self.candidates], "ranking": self.ranking,
                "layer_prune_ratio": self.prune_ratio, "layer_bits": self.bits}


def fit_family(family: str, base: nn.Module, data, arch: Architecture, cfg: AdaLayerConfig, *, target_bytes: int,
               example_input: torch.Tensor, bits_options: list[int], band: float = 0.01, top: int = 0,
               device: str = "cpu", progress=None) -> FamilyChoice:
    """The best member of ``family`` at (as close as possible to, never above) ``target_bytes``."""
    plan = family_plan(family, base, example_input, cfg.p_max)
    size = plan_size_fn(base, arch, cfg)
    cands = uniform_candidates(lambda r, b: size(*plan(r, b)), target_bytes, list(bits_options), cfg.p_max)
    if not cands:
        raise LayerwiseError(f"no {family} plan with bits in {list(bits_options)} fits {target_bytes:,} bytes: "
                             "pass a larger --budget")
    competing = same_size(cands, band)
    ranking = "every competing candidate fine-tuned; best validation accuracy after fine-tuning"
    if top > 0 and len(competing) > top:
        for c in competing:
            m = copy.deepcopy(base)
            ratios, bits = plan(c.prune_ratio, c.bits)
            compress_plan(m, data, arch, prune_ratio=ratios, bits=bits, config=cfg, finetune=False)
            c.val_accuracy = evaluate(m, data.val, device=device).accuracy
        competing = sorted(competing, key=lambda c: (-c.val_accuracy, -c.packed_bytes))[:top]
        ranking = (f"capped (--uniform-top {top}): the {top} best by validation accuracy before fine-tuning were "
                   "fine-tuned; best validation accuracy after fine-tuning")
    best = None
    for c in competing:
        ratios, bits = plan(c.prune_ratio, c.bits)
        m, _, packed = compress_plan(copy.deepcopy(base), data, arch, prune_ratio=ratios, bits=bits, config=cfg,
                                     device=device, progress=progress)
        c.val_accuracy_finetuned = evaluate(m, data.val, device=device).accuracy
        if best is None or c.val_accuracy_finetuned > best.chosen.val_accuracy_finetuned:
            best = FamilyChoice(family, c, cands, m, packed, ratios, bits, ranking)
    log.info("%s: %d bits, knob %.4f, %d bytes, val %.4f after fine-tune", family, best.chosen.bits,
             best.chosen.prune_ratio, len(best.packed), best.chosen.val_accuracy_finetuned)
    return best
