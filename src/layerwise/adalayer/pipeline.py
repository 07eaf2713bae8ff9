"""AdaLayerNet end to end on any model: importance (eq. 1), allocation (eq. 2-3) under the size
budget (eq. 6), compression (eq. 4), fine-tune with eq. (5), bake, pack.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..measure import count_macs
from ..train import TrainConfig, TrainResult, evaluate, train
from .allocation import allocate, redundancy, saturating_knob
from .budget import BudgetResult, fit_budget
from .compress import Eq5Regularizer, attach_fake_quant, bake, make_masks, quantize_layers
from .config import AdaLayerConfig, Allocation, LayerPlan
from .hessian import hessian_sensitivity
from .importance import (Sensitivity, cache_key, layer_importance, load_cached, mac_shares, normalise,
                         probe_accuracy_drops, probe_score, store_cached)
from .packed import Architecture, encode_packed
from .quantize import QuantizedWeight, magnitude_mask, quantize_weight
from .structured import prune_channels
from .targets import Skipped, find_targets

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """Everything eq. (1)-(3) need, measured once per model (and cached)."""

    targets: list[tuple[str, nn.Module]]
    skipped: list[Skipped]
    macs: dict[str, int]
    params: dict[str, int]
    sensitivity: Sensitivity
    accuracy_contribution: dict[str, float]
    mac_share: dict[str, float]
    redundancy: dict[str, float]
    importance: dict[str, float]


@dataclass
class CompressionResult:
    model: nn.Module  # the baked fake-quant model: what the packed file stores, exactly
    packed: bytes
    quantized: dict[str, QuantizedWeight]
    plans: list[LayerPlan]
    skipped: list[Skipped]
    allocation: Allocation
    budget: BudgetResult
    sensitivity: Sensitivity
    structured_channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    val_accuracy_before_finetune: float | None = None
    finetune: TrainResult | None = None
    regulariser: dict | None = None  # eq. (5): eta used and the term's measured share of the loss

    @property
    def sparsity(self) -> float:
        """Fraction of the compressed layers' original weights that are gone (pruned or removed)."""
        before = sum(p.params for p in self.plans)
        after = sum(p.params_after or 0 for p in self.plans)
        return 1.0 - after / before if before else 0.0


def analyse(model: nn.Module, data, example_input: torch.Tensor, config: AdaLayerConfig, *, device: str = "cpu",
            cache_dir: Path | None = None, progress=None) -> Analysis:
    """Eq. (1) inputs and outputs, R_l of eq. (2); sensitivities from the cache when present."""
    config.validate()
    model.eval()
    targets, skipped = find_targets(model)
    if not targets:
        raise_no_targets(model)
    per_module = count_macs(model, example_input).per_module
    macs = {name: int(per_module.get(name, 0)) for name, _ in targets}
    params = {name: int(mod.weight.numel()) for name, mod in targets}
    probe = {"ratio": config.probe_ratio, "bits": config.probe_bits}
    if config.importance == "hessian":
        probe.update(samples=config.hessian_samples, batches=config.hessian_batches, seed=config.seed)
    key = cache_key(model, getattr(data, "label", data.name), config.importance, probe)
    sens = load_cached(cache_dir, key)
    if sens is None or set(sens.score) != set(macs):
        if config.importance == "hessian":
            sens = hessian_sensitivity(model, targets, data.val, probe_ratio=config.probe_ratio,
                                       probe_bits=config.probe_bits, samples=config.hessian_samples,
                                       batches=config.hessian_batches, device=device, seed=config.seed)
        else:
            sens = probe_accuracy_drops(model, targets, data.val, probe_ratio=config.probe_ratio,
                                        probe_bits=config.probe_bits, metric=config.probe_metric, device=device,
                                        progress=progress)
        store_cached(cache_dir, key, sens)
    else:
        log.info("sensitivities from cache (%s)", key)
    if config.importance == "accuracy":  # the cache holds both raw measurements; the metric picks one
        sens.score = probe_score(sens.accuracy_drop, sens.loss_increase, config.probe_metric)
    a = normalise(sens.score, config.normalisation)  # A_l, eq. (1)
    f = mac_shares(macs)
    return Analysis(targets, skipped, macs, params, sens, a, f, redundancy(targets),
                    layer_importance(a, f, config.alpha, config.beta))


def raise_no_targets(model: nn.Module) -> None:
    from ..errors import LayerwiseError
    raise LayerwiseError(f"{type(model).__name__} has no Conv1d/2d/3d or Linear layer for AdaLayerNet to compress: "
                         "use a model with convolutional or linear layers")


def _size_unstructured(model, targets, arch, config):
    state = model.state_dict()

    def size(prune_ratio: dict[str, float], bits: dict[str, int]) -> int:
        q = quantize_layers(targets, make_masks(targets, prune_ratio), bits)
        return len(encode_packed(state, q, arch, passthrough_dtype=config.passthrough_dtype))
    return size


def _structured_copy(model, example_input, prune_ratio, ignored):
    m = copy.deepcopy(model).eval()
    channels = prune_channels(m, example_input, prune_ratio, ignored)
    return m, channels


def _size_structured(model, example_input, arch, config, ignored):
    def size(prune_ratio: dict[str, float], bits: dict[str, int]) -> int:
        m, _ = _structured_copy(model, example_input, prune_ratio, ignored)
        t, _ = find_targets(m)
        masks = {n: torch.ones_like(mod.weight, dtype=torch.bool) for n, mod in t}
        q = quantize_layers(t, masks, bits)
        return len(encode_packed(m.state_dict(), q, arch, passthrough_dtype=config.passthrough_dtype,
                                 structured=True))
    return size


def _ilp_allocation(an: Analysis, targets, size_fn, budget: float, dense_bytes: int, floor: int,
                    config: AdaLayerConfig) -> tuple[Allocation, BudgetResult]:
    """Eq. (6) as an integer program over per-layer (P, B) options (``allocation="ilp"``).

    The predicted accuracy loss of layer l at option (P, B) is its MEASURED eq. (1) probe damage
    s_l (the score A_l is normalised from) scaled by the option's weight perturbation relative to
    the probe's: s_l * ||Q_B(mask_P ⊙ W_l) - W_l||^2 / ||Q_probe(W_l) - W_l||^2 (a first-order
    reading: damage proportional to perturbation energy). The program minimises the summed
    prediction under the packed size (:func:`.hawq.ilp_allocate`). Unstructured only: removed
    channels change the next layer's size, so a structured plan's size is not a sum over layers.
    """
    from .budget import BudgetError, check_budget
    from .hawq import ilp_allocate
    if config.structured:
        raise BudgetError("--allocation ilp needs per-layer sizes that add up: use it without --structured")
    check_budget(budget)
    target = int(budget * dense_bytes)
    if floor > target:
        raise BudgetError(f"budget {budget:g} ({target:,} bytes) is below the smallest feasible budget "
                          f"{floor / dense_bytes:.4f}: pass a larger --budget")
    probe_err = {}
    for name, mod in targets:
        w = mod.weight.detach().float()
        q = quantize_weight(w, magnitude_mask(w, config.probe_ratio), config.probe_bits).dequantize()
        probe_err[name] = max(float(((q - w) ** 2).sum()), 1e-30)
    score = {n: max(an.sensitivity.score.get(n, 0.0), 0.0) for n, _ in targets}
    floor_s = 1e-3 * (max(score.values()) or 1.0)  # a layer whose probe did no harm still prefers less damage
    ratio, bits, _, _, solves = ilp_allocate(
        targets, size_fn, target, lambda n, r, b, err: (score[n] + floor_s) * err / probe_err[n],
        b_min=config.b_min, b_max=config.b_max, p_max=config.p_max)
    alloc = Allocation(knob=0.0, gamma=config.gamma, delta=config.delta, lam=config.lam,
                       prune_ratio=ratio, bits=bits)
    return alloc, BudgetResult(0.0, size_fn(ratio, bits), target, dense_bytes, floor, solves)


def finetune_config(config: AdaLayerConfig, device: str) -> TrainConfig:
    return TrainConfig(epochs=config.finetune_epochs, batch_size=config.finetune_batch_size, optimizer="adam",
                       lr=config.finetune_lr, schedule="cosine", seed=config.seed, device=device)


def compress_model(model: nn.Module, data, arch: Architecture, *, budget: float, example_input: torch.Tensor,
                   config: AdaLayerConfig | None = None, device: str = "cpu", cache_dir: Path | None = None,
                   progress=None, analysis: Analysis | None = None, finetune=None) -> CompressionResult:
    """Compress a trained ``model`` IN PLACE with AdaLayerNet so its packed file fits
    ``budget * dense_bytes``; returns the baked model, the packed bytes and the per-layer plan.

    ``arch`` says how the loader rebuilds the model; ``example_input`` is a batch-1 input (MACs,
    structured tracing); ``data`` gives the validation split (sensitivity) and the training split
    (fine-tune). ``dense_bytes`` is the fp32 ``torch.save(state_dict)`` size of ``model``.
    ``data.val`` may be a Dataset or a DataLoader of ``(x, y)`` batches (streamed).

    ``finetune``: ``None`` fine-tunes with :func:`layerwise.train.train` on ``data.train``
    (``config.finetune_epochs`` epochs); a callable ``finetune(model, extra_loss)`` runs instead
    (the Python API's fine-tune over a user's DataLoader), with ``extra_loss`` eq. (5)'s term.
    """
    from ..measure import artifact_size
    config = (config or AdaLayerConfig()).validate()
    an = analysis or analyse(model, data, example_input, config, device=device, cache_dir=cache_dir,
                             progress=progress)
    dense_bytes = artifact_size(model).bytes
    names = [n for n, _ in an.targets]
    an_targets = [(n, model.get_submodule(n)) for n in names]  # the analysis may come from a copy
    ignored: list[str] = []  # prune_channels protects the output layers itself (found from the graph)
    if config.structured:
        size_fn = _size_structured(model, example_input, arch, config, ignored)
    else:
        size_fn = _size_unstructured(model, an_targets, arch, config)
    floor = size_fn({n: config.p_max for n in names}, {n: config.b_min for n in names})

    def size_at(knob: float) -> int:
        alloc = allocate(an.importance, an.redundancy, knob, config)
        return size_fn(alloc.prune_ratio, alloc.bits)

    if config.allocation == "ilp":
        alloc, fit = _ilp_allocation(an, an_targets, size_fn, budget, dense_bytes, floor, config)
    else:
        # bisection to 1e-4 of the knob: lands within a fraction of a percent of the budget (also structured)
        fit = fit_budget(size_at, budget=budget, dense_bytes=dense_bytes, floor_bytes=floor,
                         knob_max=saturating_knob(an.importance, config), iterations=30)
        alloc = allocate(an.importance, an.redundancy, fit.knob, config)

    channels: dict[str, tuple[int, int]] = {}
    if config.structured:
        channels = prune_channels(model, example_input, alloc.prune_ratio, ignored)
        targets, _ = find_targets(model)
        masks = {n: torch.ones_like(mod.weight, dtype=torch.bool) for n, mod in targets}
    else:
        targets = an_targets
        masks = make_masks(targets, alloc.prune_ratio)
    attach_fake_quant(targets, masks, alloc.bits)
    before_ft = evaluate(model, data.val, device=device).accuracy
    ft, regulariser = None, None
    if config.finetune_epochs > 0:
        reg = Eq5Regularizer(targets, an.importance, eta=config.eta, share=config.eta_share)
        if finetune is None:
            ft = train(model, data, finetune_config(config, device), progress=progress, extra_loss=reg)
        else:
            ft = finetune(model, reg)
        regulariser = reg.stats()
    model.eval()
    quantized = bake(model, targets, masks, alloc.bits, config.passthrough_dtype)
    packed = encode_packed(model.state_dict(), quantized, arch, passthrough_dtype=config.passthrough_dtype,
                           structured=config.structured)
    if len(packed) != fit.packed_bytes:
        log.info("packed size after fine-tune %d bytes (budget search measured %d)", len(packed), fit.packed_bytes)
        fit.packed_bytes = len(packed)
    plans = []
    for name in names:
        qw = quantized[name]
        plans.append(LayerPlan(name=name, kind=type(dict(an_targets)[name]).__name__.lower(), params=an.params[name],
                               macs=an.macs[name], accuracy_contribution=an.accuracy_contribution[name],
                               mac_share=an.mac_share[name], redundancy=an.redundancy[name],
                               importance=an.importance[name], prune_ratio=alloc.prune_ratio[name],
                               bits=alloc.bits[name], params_after=qw.nonzero))
    return CompressionResult(model=model, packed=packed, quantized=quantized, plans=plans, skipped=an.skipped,
                             allocation=alloc, budget=fit, sensitivity=an.sensitivity, structured_channels=channels,
                             val_accuracy_before_finetune=before_ft, finetune=ft, regulariser=regulariser)


def compress_plan(model: nn.Module, data, arch: Architecture, *, prune_ratio: dict[str, float], bits: dict[str, int],
                  config: AdaLayerConfig, device: str = "cpu", progress=None,
                  finetune: bool = True) -> tuple[nn.Module, dict[str, QuantizedWeight], bytes]:
    """Eq. (4) at a given per-layer (P_l, B_l) plan, the same fine-tune recipe as AdaLayerNet
    (cross-entropy only, masks fixed, fake-quant with STE), bake, pack. Every rival goes through here."""
    targets, _ = find_targets(model)
    masks = make_masks(targets, {n: prune_ratio.get(n, 0.0) for n, _ in targets})
    bit_map = {n: int(bits[n]) for n, _ in targets}
    attach_fake_quant(targets, masks, bit_map)
    if finetune and config.finetune_epochs > 0:
        train(model, data, finetune_config(config, device), progress=progress)
    model.eval()
    quantized = bake(model, targets, masks, bit_map, config.passthrough_dtype)
    packed = encode_packed(model.state_dict(), quantized, arch, passthrough_dtype=config.passthrough_dtype)
    return model, quantized, packed


def compress_uniform(model: nn.Module, data, arch: Architecture, *, prune_ratio: float, bits: int,
                     config: AdaLayerConfig, device: str = "cpu", progress=None,
                     finetune: bool = True) -> tuple[nn.Module, dict[str, QuantizedWeight], bytes]:
    """One ratio and one bit width for every layer, same fine-tune recipe (cross-entropy only)."""
    names = [n for n, _ in find_targets(model)[0]]
    return compress_plan(model, data, arch, prune_ratio={n: prune_ratio for n in names},
                         bits={n: bits for n in names}, config=config, device=device, progress=progress,
                         finetune=finetune)


def plan_size_fn(model: nn.Module, arch: Architecture, config: AdaLayerConfig):
    """``size(prune_ratio: dict, bits: dict) -> packed bytes`` of ``model`` at a per-layer plan."""
    targets, _ = find_targets(model)
    return _size_unstructured(model, targets, arch, config)


def uniform_size_fn(model: nn.Module, arch: Architecture, config: AdaLayerConfig):
    targets, _ = find_targets(model)
    base = _size_unstructured(model, targets, arch, config)
    names = [n for n, _ in targets]
    return lambda ratio, bits: base({n: ratio for n in names}, {n: bits for n in names})
