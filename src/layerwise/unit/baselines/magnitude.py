"""Train-time global unstructured L1 magnitude pruning, iterative with fine-tune (UnIT's "TTP").

The schedule (the UnIT authors' released baseline): remove the smallest-|w| weights across ALL
prunable layers together (one global threshold), ``step`` (5 %) more of them at each step, and
fine-tune after each step with the masks held fixed; stop at the first step whose accuracy falls
more than ``max_drop`` (0.5 pt) below the dense model. Choices (docs/unit.md):

* the schedule keeps going past the stopping point up to ``max_sparsity`` (default 90 %) when
  ``record_past_stop`` is set (the default), so that every step's (sparsity, accuracy) is on the
  trade-off curve (Fig. 5); steps after the first one outside the bound are marked ``after_stop``;
* which step is chosen, ``rule``: ``"largest"`` (default) the largest-sparsity recorded step
  within the bound, the same rule as UnIT's ``--percentile auto`` (:mod:`layerwise.unit.select`);
  ``"first_failure"`` the literal REFERENCE rule, the last step before the first one outside the
  bound. Why the default: with 360 validation samples 0.5 pt is 1.8 samples, and on digits the
  first 5 % step lost 2 of them (0.9694 vs 0.9750) while 10-70 % were back within the bound, so
  the literal rule stops on sampling noise; both choices are recorded (``chosen_first_failure``);

* the stopping rule reads the VALIDATION split (the authors' release read the test split, which
  makes the chosen model depend on the data it is scored on); the returned model is the last step
  that stayed within the bound (the dense model when even the first step does not);
* prunable weights are the ``weight`` tensors of every ``nn.Linear`` / ``nn.Conv1d`` /
  ``nn.Conv2d`` (the layers UnIT converts); biases, norms and recurrent layers are left dense;
* sparsity ``s`` at step ``k`` is ``k * step`` of the prunable weights (cumulative, global):
  the ``round(s * N)`` smallest |w| are zero, ties broken by index (``torch.topk`` order), so the
  count is exact;
* masks are held fixed during fine-tune by a forward pre-hook that zeroes the masked weights
  before every forward (so every loss and gradient is the pruned network's; an optimizer step may
  move a masked weight, the next forward zeroes it again) and once more when the fine-tune ends,
  so the final model has real zeros and no reparametrisation (``torch.nn.utils.prune`` would
  leave ``weight_orig`` / ``weight_mask`` in the state_dict);
* fine-tune: ``finetune_epochs`` (default 2) epochs of :func:`layerwise.train.train` (Adam, lr
  ``finetune_lr`` = 3e-4, constant schedule) per step. A first version fine-tuned one epoch at
  1e-3: on digits the very first 5 % step then lost 1.1 pt of val accuracy (the larger lr undoes
  the trained optimum more than 5 % pruning does), so the curve had a single point.

All steps (sparsity, validation accuracy, the weights) are kept in the result so that the
experiment can draw the baseline's trade-off curve (UnIT Fig. 5) from the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...errors import LayerwiseError

log = logging.getLogger(__name__)

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class MagnitudeConfig:
    """Schedule of :func:`iterative_magnitude_prune`."""

    step: float = 0.05            # fraction of the prunable weights removed per step
    max_drop: float = 0.005       # stop when val accuracy < dense val accuracy - max_drop
    max_sparsity: float = 0.90    # never prune beyond this (the last recorded step)
    finetune_epochs: int = 2
    finetune_lr: float = 3e-4
    record_past_stop: bool = True  # keep pruning (and recording) after the stopping rule fired
    rule: str = "largest"          # "largest" within the bound, or "first_failure" (module doc)
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if not 0.0 < self.step < 1.0:
            raise LayerwiseError(f"step={self.step} must lie in (0, 1), e.g. 0.05 for 5 % per step")
        if not 0.0 <= self.max_drop < 1.0:
            raise LayerwiseError(f"max_drop={self.max_drop} must lie in [0, 1) (a fraction: 0.005 = 0.5 pt)")
        if not self.step <= self.max_sparsity < 1.0:
            raise LayerwiseError(f"max_sparsity={self.max_sparsity} must lie in [step, 1)")
        if self.rule not in ("largest", "first_failure"):
            raise LayerwiseError(f"rule={self.rule!r}: use 'largest' or 'first_failure'")
        if self.finetune_epochs < 0:
            raise LayerwiseError(f"finetune_epochs={self.finetune_epochs} must be >= 0")


@dataclass
class PruneStep:
    """One step of the schedule: its global sparsity, validation accuracy and weights."""

    sparsity: float
    val_accuracy: float
    within_bound: bool
    after_stop: bool = False       # recorded after the stopping rule fired (curve only)
    state_dict: dict = field(repr=False, default_factory=dict)


@dataclass
class MagnitudeResult:
    """What :func:`iterative_magnitude_prune` did; ``model`` holds the chosen step's weights."""

    dense_val_accuracy: float
    steps: list[PruneStep]
    chosen: int                    # index into steps; -1: no step stayed within the bound
    chosen_first_failure: int = -1  # what the literal "stop at the first failure" rule picks
    rule: str = "largest"
    model: nn.Module = field(repr=False, default=None)

    @property
    def sparsity(self) -> float:
        return self.steps[self.chosen].sparsity if self.chosen >= 0 else 0.0

    def to_json(self) -> dict:
        return {"dense_val_accuracy": self.dense_val_accuracy, "chosen": self.chosen, "rule": self.rule,
                "chosen_first_failure": self.chosen_first_failure,
                "sparsity": self.sparsity,
                "steps": [{"sparsity": s.sparsity, "val_accuracy": s.val_accuracy,
                           "within_bound": s.within_bound, "after_stop": s.after_stop}
                          for s in self.steps]}


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every Linear / Conv1d / Conv2d (subclasses such as UnIT layers too)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _PRUNABLE)]


def global_magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, Tensor]:
    """Keep-masks (bool, weight-shaped) that zero the ``round(sparsity * N)`` smallest |w| overall.

    Already-zero weights count among the smallest, so masks grow monotonically with ``sparsity``
    on a model pruned by a smaller sparsity.
    """
    if not 0.0 <= sparsity < 1.0:
        raise LayerwiseError(f"sparsity={sparsity} must lie in [0, 1)")
    layers = prunable_layers(model)
    if not layers:
        raise LayerwiseError(
            "magnitude pruning found no nn.Linear, nn.Conv1d or nn.Conv2d layer; pass a model with one")
    flat = torch.cat([m.weight.detach().abs().reshape(-1).cpu() for _, m in layers])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        keep[torch.topk(flat, k, largest=False, sorted=False).indices] = False
    masks, o = {}, 0
    for name, m in layers:
        n = m.weight.numel()
        masks[name] = keep[o:o + n].reshape(m.weight.shape).to(m.weight.device)
        o += n
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero the masked weights in place (real zeros)."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        w = modules[name].weight
        w.mul_(mask.to(w.dtype))


def sparsity_of(model: nn.Module) -> float:
    """Fraction of exactly-zero weights among the prunable layers' weights."""
    layers = prunable_layers(model)
    n = sum(m.weight.numel() for _, m in layers)
    z = sum(int((m.weight == 0).sum()) for _, m in layers)
    return z / n if n else 0.0


@contextmanager
def _masks_held(model: nn.Module, masks: dict[str, Tensor]):
    """Forward pre-hooks that re-zero the masked weights before every forward; always removed."""
    modules = dict(model.named_modules())
    handles = []

    def make(mask):
        def hook(mod, args):
            with torch.no_grad():
                mod.weight.mul_(mask.to(mod.weight.dtype))
        return hook

    try:
        for name, mask in masks.items():
            handles.append(modules[name].register_forward_pre_hook(make(mask)))
        yield
    finally:
        for h in handles:
            h.remove()
        apply_masks(model, masks)


def iterative_magnitude_prune(model: nn.Module, data, config: MagnitudeConfig | None = None, *,
                              evaluate_fn: Callable[[nn.Module], float] | None = None,
                              progress=None) -> MagnitudeResult:
    """Prune ``model`` (a trained dense model; left untouched) by the schedule of the module
    docstring. ``data`` is a :class:`~layerwise.data.DatasetSplits` (train for the fine-tune,
    val for the stopping rule). ``evaluate_fn(model) -> accuracy`` overrides the val evaluation
    (tests). Returns a :class:`MagnitudeResult` whose ``model`` is a pruned deep copy.
    """
    from ...train import TrainConfig, evaluate, train

    config = config or MagnitudeConfig()
    config.validate()
    if evaluate_fn is None:
        if len(data.val) == 0:
            raise LayerwiseError("magnitude pruning needs a non-empty validation split for its stopping rule")

        def evaluate_fn(m):
            return evaluate(m, data.val, device=config.device).accuracy

    work = copy.deepcopy(model)
    dense_acc = float(evaluate_fn(work))
    ft = TrainConfig(epochs=config.finetune_epochs, batch_size=config.batch_size, optimizer="adam",
                     lr=config.finetune_lr, schedule="none", seed=config.seed, device=config.device)
    steps: list[PruneStep] = []
    chosen = first = -1
    stopped = False
    n_steps = int(round(config.max_sparsity / config.step + 1e-9))
    it = range(1, n_steps + 1)
    if progress is not None:
        it = progress(it, total=n_steps, desc="magnitude pruning")
    for k in it:
        sparsity = min(k * config.step, config.max_sparsity)
        masks = global_magnitude_masks(work, sparsity)
        apply_masks(work, masks)
        if config.finetune_epochs > 0:
            with _masks_held(work, masks):
                train(work, data, dataclasses.replace(ft, seed=config.seed + k))
        acc = float(evaluate_fn(work))
        ok = acc >= dense_acc - config.max_drop - 1e-12
        steps.append(PruneStep(sparsity=sparsity, val_accuracy=acc, within_bound=ok, after_stop=stopped,
                               state_dict={n: t.detach().clone() for n, t in work.state_dict().items()}))
        log.info("magnitude step %d: sparsity %.2f val acc %.4f (dense %.4f)", k, sparsity, acc, dense_acc)
        if not stopped and ok:
            first = len(steps) - 1
        if ok and (config.rule == "largest" or not stopped):
            chosen = len(steps) - 1
        stopped = stopped or not ok
        if stopped and not config.record_past_stop:
            break
    final = copy.deepcopy(model)
    if chosen >= 0:
        final.load_state_dict(steps[chosen].state_dict)
    return MagnitudeResult(dense_val_accuracy=dense_acc, steps=steps, chosen=chosen,
                           chosen_first_failure=first, rule=config.rule, model=final)
