"""``stack_model``: AdaLayerNet, then UnIT, then LWAC on one model (order: see the package docstring).

Every stage uses its method's public API only:

- AdaLayerNet: :func:`layerwise.adalayer.compress_model` (eq. 1-6), then
  :func:`layerwise.adalayer.load_packed_bytes` to rebuild the model from the packed file;
- UnIT: :func:`layerwise.unit.convert`, :func:`layerwise.unit.sweep` /
  :func:`layerwise.unit.choose_percentile` (``percentile=None``: the largest swept percentile whose
  validation accuracy is within ``max_drop`` of the stage's input model) and
  :func:`layerwise.unit.calibrate`;
- LWAC: :func:`layerwise.lwac.attach`, :func:`~layerwise.lwac.gather_relevance` (eq. 3), for the
  neural policy :func:`~layerwise.lwac.bypass_labels` / :func:`~layerwise.lwac.train_controllers` /
  :func:`~layerwise.lwac.crossfit_sweep`, else :func:`~layerwise.lwac.sweep_lambda`, then
  :func:`~layerwise.lwac.choose_lambda` with the same ``max_drop`` against the stage's input.

Choices where the issue leaves room (written here as the rules ask):

- ``max_drop`` (points) bounds EACH stage against its own input model on validation, so each
  stage of the stack obeys the rule the method obeys alone on the dense model; the stack's total
  drop is measured on test, not promised.
- The LWAC policy defaults to ``heuristic`` (training-free, no controller MACs); ``neural`` is
  available.
- Test data is never read here: every choice is made on the validation split.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import lwac, unit
from ..adalayer import AdaLayerConfig, Architecture, compress_model, load_packed_bytes
from ..adalayer.budget import check_budget
from ..adalayer.targets import find_targets
from ..data import make_loader
from ..errors import LayerwiseError
from ..layers import find_layers
from ..train import evaluate

log = logging.getLogger(__name__)

#: the stages, in the order they are applied
ORDER = ("adalayer", "unit", "lwac")
DEFAULT_SWEEP = (10.0, 20.0, 30.0, 40.0, 60.0)
POLICIES = ("heuristic", "neural")


class StackError(LayerwiseError):
    """A model or setting the stack cannot run, with the stage that refused it and the fix."""


@dataclass
class StackConfig:
    """Options of :func:`stack_model` (the ``layerwise stack`` flags)."""

    budget: float = 0.15                      # AdaLayerNet: packed bytes / dense fp32 file bytes (eq. 6)
    adalayer: AdaLayerConfig = field(default_factory=AdaLayerConfig)
    percentile: float | None = None           # UnIT: None = auto (largest val-safe sweep percentile)
    sweep: tuple[float, ...] = DEFAULT_SWEEP  # UnIT: percentiles tried by auto
    groups: int = 1                           # UnIT: threshold groups per layer
    policy: str = "heuristic"                 # LWAC: heuristic or neural
    grid: int = 11                            # LWAC: lambdas swept between no unit and every unit bypassed
    max_drop: float = 0.5                     # points of VALIDATION accuracy each stage may cost vs its input

    def validate(self) -> "StackConfig":
        check_budget(self.budget)
        self.adalayer.validate()
        if self.percentile is not None and not 0.0 < self.percentile < 100.0:
            raise StackError(f"--percentile {self.percentile:g} must lie strictly between 0 and 100, or be 'auto'")
        if not self.sweep or any(not 0.0 < p < 100.0 for p in self.sweep):
            raise StackError(f"--sweep {list(self.sweep)}: give percentiles strictly between 0 and 100, e.g. 10,20,40")
        if self.groups < 1:
            raise StackError(f"--groups {self.groups} must be >= 1")
        if self.policy not in POLICIES:
            raise StackError(f"--policy {self.policy!r}: use one of {', '.join(POLICIES)}")
        if self.grid < 2:
            raise StackError(f"--grid {self.grid}: sweep at least 2 lambdas")
        if not 0.0 <= self.max_drop < 100.0:
            raise StackError(f"--max-drop {self.max_drop:g} must be points in [0, 100), e.g. 0.5")
        return self


@dataclass
class StackReport:
    """What each stage did and chose; the models after each stage (``models``, not in JSON)."""

    order: tuple[str, ...]
    packed: bytes = field(repr=False)                 # AdaLayerNet's packed file
    adalayer: dict = field(default_factory=dict)
    unit: dict = field(default_factory=dict)
    lwac: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)       # wall time per stage
    models: dict = field(default_factory=dict, repr=False)  # "adalayer", "adalayer+unit", "adalayer+unit+lwac"

    def to_json(self) -> dict:
        return {"order": list(self.order), "packed_bytes": len(self.packed), "adalayer": self.adalayer,
                "unit": self.unit, "lwac": self.lwac, "seconds": self.seconds}


# ----------------------------------------------------------------------------- stages

def compress_stage(model: nn.Module, data, arch: Architecture, example_input: torch.Tensor, cfg: StackConfig, *,
                   device: str = "cpu", cache_dir=None, progress=None) -> tuple[nn.Module, bytes, dict]:
    """AdaLayerNet on a copy of ``model``: (model rebuilt from the packed file, packed bytes, info)."""
    try:
        res = compress_model(copy.deepcopy(model), data, arch, budget=cfg.budget, example_input=example_input,
                             config=cfg.adalayer, device=device, cache_dir=cache_dir, progress=progress)
    except LayerwiseError as exc:
        raise StackError(f"stage 1 (AdaLayerNet) refused the model: {str(exc).splitlines()[0]}") from exc
    rebuilt = load_packed_bytes(res.packed).model.to(device).eval()
    info = {"packed_bytes": len(res.packed), "budget": res.budget.to_json(), "sparsity": res.sparsity,
            "layers": [p.to_json() for p in res.plans], "skipped": [s.to_json() for s in res.skipped],
            "val_accuracy_before_finetune": res.val_accuracy_before_finetune,
            "model": "rebuilt from the packed bytes (load_packed_bytes): what ships"}
    return rebuilt, res.packed, info


def unit_stage(model: nn.Module, data, cfg: StackConfig, *, device: str = "cpu") -> tuple[nn.Module, dict]:
    """UnIT on a copy of ``model``: converted, thresholds calibrated on validation."""
    try:
        conv = unit.convert(copy.deepcopy(model), groups=cfg.groups)
    except LayerwiseError as exc:
        raise StackError(f"stage 2 (UnIT) refused the model: {str(exc).splitlines()[0]}") from exc
    m = conv.model
    val_loader = make_loader(data.val, batch_size=256)
    info: dict = {"conversion": conv.to_json(), "groups": cfg.groups}
    products = unit.collect_products(m, val_loader)  # once: the sweep and the final calibration share it
    if cfg.percentile is None:
        ref = evaluate(model, data.val, device=device).accuracy
        points = unit.sweep(m, val_loader, lambda mm: evaluate(mm, data.val, device=device).accuracy,
                            sorted(cfg.sweep), products=products)
        choice = unit.choose_percentile([(p.percentile, p.accuracy) for p in points], ref, cfg.max_drop / 100.0)
        percentile = choice.percentile
        info.update(choice=choice.to_json(), rule="auto: largest swept percentile with val accuracy >= the "
                                                  "stage input's val accuracy - max_drop")
    else:
        percentile = cfg.percentile
        info["rule"] = "fixed --percentile"
    thresholds = unit.calibrate(m, val_loader, percentile=percentile, products=products)
    info.update(percentile=percentile, thresholds={k: v.tolist() for k, v in thresholds.items()},
                threshold_bytes=4 * sum(int(v.numel()) for v in thresholds.values()))
    return m.eval(), info


def _val_accuracy_pinned(lw: lwac.LWACModel, val, device: str) -> float:
    """Validation accuracy of the LWAC model with every unit run (alpha pinned: the stage's input)."""
    xs, ys = zip(*(val[i] for i in range(len(val))))
    with torch.no_grad(), lw.pinned():
        pred = torch.cat([lw.model(torch.stack(xs[i:i + 128]).to(device)).argmax(1).cpu()
                          for i in range(0, len(xs), 128)])
    return float((pred == torch.as_tensor(ys)).float().mean())


def lwac_stage(model: nn.Module, data, example_input: torch.Tensor, cfg: StackConfig, *,
               device: str = "cpu", threads: int | None = None) -> tuple[lwac.LWACModel, dict]:
    """LWAC on a copy of ``model``: ACUs attached, calibrated on validation, lambda chosen."""
    if len(data.val) == 0:
        raise StackError("stage 3 (LWAC) needs a validation split to calibrate on; use a dataset with one")
    try:
        lw = lwac.attach(model, example_input, lwac.LWACConfig(policy=cfg.policy), threads=threads)
    except LayerwiseError as exc:
        raise StackError(f"stage 3 (LWAC) refused the model: {str(exc).splitlines()[0]}") from exc
    if not lw.bypassable:
        raise StackError("stage 3 (LWAC): no unit of this model can be bypassed (no residual block with a "
                         "shortcut, no branch): LWAC would save nothing; use a residual or multi-branch model")
    dense_ms = lw.dense_ms or 1.0
    relevance = lwac.gather_relevance(lw, data.val, device=device)  # eq. (3)
    fit: dict = {}
    labels = []
    if cfg.policy == "neural":
        labels = lwac.bypass_labels(lw, data.val, device=device)
        fit = lwac.train_controllers(lw, labels)
    lo, hi = lwac.lambda_range(lw, data.val, device=device)
    lams = sorted({float(v) for v in np.linspace(lo, hi, cfg.grid)})
    if cfg.policy == "neural":
        points = lwac.crossfit_sweep(lw, data.val, labels, lams, dense_ms=dense_ms, device=device)
    else:
        points = lwac.sweep_lambda(lw, data.val, lams, dense_ms=dense_ms, device=device)
    ref = _val_accuracy_pinned(lw, data.val, device)
    best = lwac.choose_lambda(points, ref, cfg.max_drop / 100.0)
    lw.set_lambda(best.lam)
    info = {"policy": cfg.policy, "lam": best.lam, "lam_range": [lo, hi], "relevance": relevance,
            "input_val_accuracy": ref, "chosen": best.to_json(), "sweep": [p.to_json() for p in points],
            "controller_fit_accuracy": {lw.units[i].name: a for i, a in fit.items()},
            "units": [u.to_json() for u in lw.units], "bypassable": [lw.units[i].name for i in lw.bypassable],
            "gate_bytes": _gate_bytes(lw)}
    return lw.eval(), info


def _gate_bytes(lw: lwac.LWACModel) -> int:
    """Bytes the gates add to the shipped model: their own parameters and buffers (controllers) plus
    per unit the fp32 numbers the gate rule reads (R_i, C_i, gamma, lambda, threshold)."""
    controllers = sum(t.numel() * t.element_size() for a in lw.acus if a.controller is not None
                      for t in (*a.controller.parameters(), *a.controller.buffers()))
    return int(controllers + 4 * (2 * len(lw.units) + 3))


# ----------------------------------------------------------------------------- the stack

def preflight(model: nn.Module) -> None:
    """Refuse, before any expensive work, a model one of the stages cannot take (StackError, one line)."""
    targets, _ = find_targets(model)
    if not targets:
        raise StackError(f"stage 1 (AdaLayerNet) cannot compress {type(model).__name__}: it has no Conv1d/2d/3d or "
                         "Linear layer (eq. 4 compresses their weights); use a model built from such layers")
    try:
        unit.convert(model, inplace=False)
    except LayerwiseError as exc:
        raise StackError(f"stage 2 (UnIT) cannot convert {type(model).__name__}: {str(exc).splitlines()[0]}") from exc
    if not find_layers(model, "block"):
        raise StackError(f"stage 3 (LWAC) cannot gate {type(model).__name__}: it has no calibratable unit (residual "
                         "block, inverted residual, branch or recurrent stage); use a residual or multi-branch model "
                         "such as resnet20 or multibranch-cnn")


def stack_model(model: nn.Module, data, *, arch: Architecture, example_input: torch.Tensor,
                config: StackConfig | None = None, device: str = "cpu", threads: int | None = None,
                cache_dir=None, progress=None) -> tuple[lwac.LWACModel, StackReport]:
    """Apply AdaLayerNet, then UnIT, then LWAC to a trained ``model`` (left untouched).

    ``arch`` says how AdaLayerNet's loader rebuilds the model (a registry model name and its
    options); ``example_input`` is one batch-1 validation input. Returns the stacked model (an
    :class:`~layerwise.lwac.LWACModel` around the UnIT-converted, compressed model; run it at
    batch 1 for per-input gates) and the :class:`StackReport`, whose ``models`` hold each stage's
    model. A model a stage cannot handle raises :class:`StackError` naming the stage and the fix.
    """
    cfg = (config or StackConfig()).validate()
    model = model.eval()
    preflight(model)
    report = StackReport(order=ORDER, packed=b"")
    t = time.perf_counter()
    ada, packed, report.adalayer = compress_stage(model, data, arch, example_input, cfg, device=device,
                                                  cache_dir=cache_dir, progress=progress)
    report.packed = packed
    report.seconds["adalayer"] = time.perf_counter() - t
    log.info("stack: AdaLayerNet packed %d bytes (%.1f s)", len(packed), report.seconds["adalayer"])
    t = time.perf_counter()
    ada_unit, report.unit = unit_stage(ada, data, cfg, device=device)
    report.seconds["unit"] = time.perf_counter() - t
    log.info("stack: UnIT at percentile %g (%.1f s)", report.unit["percentile"], report.seconds["unit"])
    t = time.perf_counter()
    stacked, report.lwac = lwac_stage(ada_unit, data, example_input, cfg, device=device, threads=threads)
    report.seconds["lwac"] = time.perf_counter() - t
    log.info("stack: LWAC lambda %.4g (%.1f s)", report.lwac["lam"], report.seconds["lwac"])
    report.models = {"adalayer": ada, "adalayer+unit": ada_unit, "adalayer+unit+lwac": stacked}
    return stacked, report
