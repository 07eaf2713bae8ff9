"""FATReLU (Kurtz et al. 2020): a ReLU with a threshold, and its per-layer calibration.

``f(x) = x if x >= t else 0`` (so ``t = 0`` is exactly ``nn.ReLU``: ``relu(x) = x if x >= 0``,
and NaN maps to 0 in both). A higher ``t`` zeroes more activations, which an activation-sparsity
runtime (SONIC's zero skipping) then skips: FATReLU is UnIT's inference-time rival.

Only ``nn.ReLU`` MODULES can be swapped: a ``torch.relu`` / ``F.relu`` call inside a
``forward`` is invisible from outside and stays a plain ReLU (such models report "no nn.ReLU
module" and FATReLU cannot act on them). ``nn.ReLU6``, GELU and friends are left alone too
(FATReLU is defined for ReLU); :func:`replace_relus` lists what it swapped.

Calibration (Kurtz et al.'s procedure, as the UnIT authors' released code applies it):

* one layer at a time, keeping the thresholds already chosen for the others;
* order: from the LAST FATReLU to the first (the authors' greedy order; ``order="first"`` reverses
  it);
* for each layer, a binary search for the largest ``t`` in ``[0, t_max]`` whose accuracy stays
  within the bound ``acc(t) >= reference - max_drop`` (``reference``: the dense model's
  accuracy on the same calibration split, so the bound is on the TOTAL drop and later layers get
  what earlier ones left);
* ``t_max``: the layer's largest input on the calibration data (``t >= max`` zeroes every
  activation; Kurtz et al. search ``[0, 1]`` for their normalised activations, ours are not
  normalised); precision ``1e-3 * t_max`` (Kurtz et al.'s 1e-3 on [0, 1], scaled), i.e. 10
  evaluations per layer;
* the search assumes accuracy falls as ``t`` grows (not guaranteed: a non-monotone accuracy can
  make it miss a larger feasible ``t``, never return an infeasible one, since every accepted
  ``t`` was evaluated).

The greedy search is not monotone in its bound: a larger bound can let the first layer searched
spend the whole budget and leave the others nothing, so that the model skips LESS than at a
smaller bound (on digits: 41.8 % skipped at 1 pt against 46.6 % at 0.5 pt).
:func:`calibrate_fatrelu_bounds` runs the greedy search at every bound of a grid and selects, for
each bound ``b``, among the configurations found at bounds ``<= b`` whose VALIDATION drop is
within ``b``, the one that skips the most MACs on the VALIDATION split (:func:`select_monotone`),
so the selected configuration's validation skip share never falls as ``b`` grows. The test split
never enters the choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...errors import LayerwiseError

log = logging.getLogger(__name__)


class FATReLU(nn.Module):
    """Forced-activation-threshold ReLU: ``x if x >= threshold else 0`` (buffer ``threshold``)."""

    def __init__(self, threshold: float = 0.0, inplace: bool = False) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))
        self.inplace = inplace  # kept for nn.ReLU compatibility; the result is never in place

    def set_threshold(self, t: float) -> None:
        t = float(t)
        if not t >= 0.0 or t == float("inf"):
            raise LayerwiseError(f"FATReLU threshold must be finite and >= 0, got {t}")
        self.threshold.fill_(t)

    def forward(self, x: Tensor) -> Tensor:
        # x >= t keeps x; NaN compares False and becomes 0, as in torch.relu
        return torch.where(x >= self.threshold.to(x.dtype), x, torch.zeros((), dtype=x.dtype, device=x.device))

    def extra_repr(self) -> str:
        return f"threshold={float(self.threshold):.4g}"


@dataclass
class FatReluReport:
    """What :func:`replace_relus` swapped, and the activations it left alone and why."""

    replaced: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"replaced": list(self.replaced),
                "left_alone": [{"name": n, "reason": r} for n, r in self.left_alone]}


_OTHER_ACTS = (nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Hardswish, nn.PReLU)


def replace_relus(model: nn.Module, threshold: float = 0.0) -> FatReluReport:
    """Swap every ``nn.ReLU`` module of ``model`` (in place) for a :class:`FATReLU`.

    Raises :class:`LayerwiseError` when there is none (e.g. a model calling ``F.relu``).
    """
    report = FatReluReport()
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is nn.ReLU:
                parent._modules[child_name] = FATReLU(threshold)
                report.replaced.append(full)
            elif isinstance(child, _OTHER_ACTS):
                report.left_alone.append((full, f"{type(child).__name__}: FATReLU replaces nn.ReLU only"))
    if not report.replaced and not any(isinstance(m, FATReLU) for m in model.modules()):
        raise LayerwiseError(
            "FATReLU found no nn.ReLU module to replace (a functional torch.relu / F.relu inside "
            "forward cannot be swapped); pass a model whose activations are nn.ReLU modules")
    return report


def fatrelu_layers(model: nn.Module) -> list[tuple[str, FATReLU]]:
    """``(name, module)`` of every FATReLU, in forward-definition (``named_modules``) order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FATReLU)]


def set_fatrelu_thresholds(model: nn.Module, thresholds: dict[str, float]) -> None:
    layers = dict(fatrelu_layers(model))
    for name, t in thresholds.items():
        if name not in layers:
            raise LayerwiseError(f"no FATReLU named {name!r}; known: {', '.join(layers) or 'none'}")
        layers[name].set_threshold(t)


@contextmanager
def _capture_max(model: nn.Module, names: list[str]):
    layers = dict(fatrelu_layers(model))
    peak = {n: 0.0 for n in names}
    handles = []

    def make(n):
        def hook(mod, args):
            if args[0].numel():
                peak[n] = max(peak[n], float(args[0].detach().max()))
        return hook

    try:
        for n in names:
            handles.append(layers[n].register_forward_pre_hook(make(n)))
        yield peak
    finally:
        for h in handles:
            h.remove()


def relu_input_max(model: nn.Module, batches: Iterable, device: str | torch.device = "cpu") -> dict[str, float]:
    """Largest input each FATReLU sees on ``batches`` (``(x, y)`` pairs or tensors), thresholds 0."""
    layers = fatrelu_layers(model)
    saved = {n: float(m.threshold) for n, m in layers}
    was_training = model.training
    model.eval()
    try:
        for _, m in layers:
            m.set_threshold(0.0)
        with _capture_max(model, [n for n, _ in layers]) as peak, torch.no_grad():
            seen = 0
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x.to(device))
                seen += 1
        if seen == 0:
            raise LayerwiseError("FATReLU calibration data yielded no batch; pass a non-empty validation split")
    finally:
        set_fatrelu_thresholds(model, saved)
        model.train(was_training)
    return dict(peak)


def binary_search_threshold(feasible: Callable[[float], bool], t_max: float, precision: float
                            ) -> tuple[float, int]:
    """Largest ``t`` in ``[0, t_max]`` with ``feasible(t)`` to within ``precision``, assuming
    feasibility is monotone (true up to some point, false after). ``t = 0`` is taken as feasible.
    Returns ``(t, evaluations)``; the returned ``t`` was evaluated feasible (or is 0).
    """
    if not t_max >= 0 or precision <= 0:
        raise LayerwiseError(f"binary search needs t_max >= 0 and precision > 0, got {t_max}, {precision}")
    if t_max == 0:
        return 0.0, 0
    evals = 1
    if feasible(t_max):
        return float(t_max), evals
    lo, hi = 0.0, float(t_max)
    while hi - lo > precision:
        mid = 0.5 * (lo + hi)
        evals += 1
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo, evals


@dataclass
class FatReluCalibration:
    """Thresholds chosen by :func:`calibrate_fatrelu` and how."""

    thresholds: dict[str, float]
    t_max: dict[str, float]
    reference_accuracy: float
    accuracy: float
    max_drop: float
    order: list[str]
    evaluations: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def calibrate_fatrelu(model: nn.Module, evaluate_fn: Callable[[nn.Module], float], *,
                      max_drop: float = 0.005, t_max: dict[str, float] | None = None,
                      calibration_batches: Iterable | None = None, precision: float = 1e-3,
                      order: str = "last", device: str | torch.device = "cpu") -> FatReluCalibration:
    """Per-layer FATReLU thresholds by binary search (module docstring), set in ``model``.

    ``evaluate_fn(model) -> accuracy`` must score the CALIBRATION (validation) split. ``t_max``
    per layer defaults to the largest input seen on ``calibration_batches``. ``precision`` is
    relative to ``t_max``. Starts from thresholds 0 (plain ReLU) on every layer.
    """
    layers = fatrelu_layers(model)
    if not layers:
        raise LayerwiseError("the model has no FATReLU; call replace_relus(model) first")
    if not 0.0 <= max_drop < 1.0:
        raise LayerwiseError(f"max_drop={max_drop} must lie in [0, 1) (a fraction: 0.005 = 0.5 pt)")
    if order not in ("last", "first"):
        raise LayerwiseError(f"order must be 'last' (last layer first, the authors') or 'first', got {order!r}")
    for _, m in layers:
        m.set_threshold(0.0)
    if t_max is None:
        if calibration_batches is None:
            raise LayerwiseError("pass t_max or calibration_batches (the validation loader) to bound the search")
        t_max = relu_input_max(model, calibration_batches, device)
    names = [n for n, _ in layers]
    if order == "last":
        names = names[::-1]
    reference = float(evaluate_fn(model))
    chosen: dict[str, float] = {n: 0.0 for n, _ in layers}
    mods = dict(layers)
    evals = 1
    for name in names:
        top = max(float(t_max.get(name, 0.0)), 0.0)

        def feasible(t: float, _m=mods[name]) -> bool:
            _m.set_threshold(t)
            return float(evaluate_fn(model)) >= reference - max_drop - 1e-12

        t, n_eval = binary_search_threshold(feasible, top, precision * top if top > 0 else 1.0)
        evals += n_eval
        mods[name].set_threshold(t)
        chosen[name] = t
        log.info("FATReLU %s: t=%.4g (t_max %.4g, %d evaluations)", name, t, top, n_eval)
    final = float(evaluate_fn(model))
    return FatReluCalibration(thresholds=chosen, t_max={n: float(t_max.get(n, 0.0)) for n in chosen},
                              reference_accuracy=reference, accuracy=final, max_drop=max_drop,
                              order=names, evaluations=evals + 1)


def select_monotone(bounds: Sequence[float], val_drops: Sequence[float],
                    val_skipped: Sequence[float]) -> list[int]:
    """For each bound ``bounds[k]``, the index ``i`` of the configuration to use: among those found
    at ``bounds[i] <= bounds[k]`` whose validation drop ``val_drops[i] <= bounds[k]``, the one
    with the largest validation skip share ``val_skipped[i]`` (ties: the smaller bound); ``-1``
    when none qualifies. The candidates only grow with the bound, so the selected skip share
    never decreases. All three sequences are indexed alike (any order of bounds).
    """
    if not len(bounds) == len(val_drops) == len(val_skipped):
        raise LayerwiseError("select_monotone needs one drop and one skip share per bound")
    order = sorted(range(len(bounds)), key=lambda i: (bounds[i], i))
    out = []
    for b in bounds:
        best = -1
        for i in order:
            if bounds[i] <= b and val_drops[i] <= b + 1e-12:
                if best < 0 or val_skipped[i] > val_skipped[best]:
                    best = i
        out.append(best)
    return out


@dataclass
class FatReluBoundSelection:
    """Greedy FATReLU searches at several bounds and the monotone selection among them.

    ``bounds`` ascending (fractions: 0.005 = 0.5 pt); ``greedy[k]`` the search at ``bounds[k]``;
    ``val_drop[k]`` / ``val_skipped[k]`` its validation accuracy drop and MAC skip share;
    ``selected[k]`` the index of the configuration used for ``bounds[k]`` (:func:`select_monotone`).
    """

    bounds: list[float]
    greedy: list[FatReluCalibration]
    val_drop: list[float]
    val_skipped: list[float]
    selected: list[int]

    def index(self, bound: float) -> int:
        """The selected configuration's index for ``bound`` (one of ``bounds``)."""
        for b, i in zip(self.bounds, self.selected):
            if abs(b - bound) <= 1e-12:
                return i
        raise LayerwiseError(f"bound {bound} was not searched; searched: {self.bounds}")

    def thresholds(self, bound: float) -> dict[str, float]:
        return dict(self.greedy[self.index(bound)].thresholds)

    def to_json(self) -> dict:
        return {"bounds": self.bounds, "val_drop": self.val_drop, "val_skipped": self.val_skipped,
                "selected": self.selected,
                "selected_bound": [self.bounds[i] for i in self.selected],
                "greedy": [g.to_json() for g in self.greedy],
                "rule": ("for bound b: among the greedy searches at bounds <= b whose val drop is "
                         "within b, the one skipping the most MACs on val"), "split": "val"}


def calibrate_fatrelu_bounds(model: nn.Module, evaluate_fn: Callable[[nn.Module], float],
                             skipped_fn: Callable[[nn.Module], float], bounds: Iterable[float], *,
                             t_max: dict[str, float] | None = None,
                             calibration_batches: Iterable | None = None, precision: float = 1e-3,
                             order: str = "last", device: str | torch.device = "cpu"
                             ) -> FatReluBoundSelection:
    """Greedy :func:`calibrate_fatrelu` at every bound of ``bounds`` (fractions), then the
    monotone selection (module docstring). ``evaluate_fn(model)`` -> accuracy and
    ``skipped_fn(model)`` -> share of MACs skipped must both score the VALIDATION split.
    ``t_max`` is computed once (from ``calibration_batches``) and shared by every search. The
    model is left with the configuration selected for the largest bound.
    """
    bounds = sorted({float(b) for b in bounds})
    if not bounds:
        raise LayerwiseError("calibrate_fatrelu_bounds needs at least one bound, e.g. [0.005]")
    layers = fatrelu_layers(model)
    if not layers:
        raise LayerwiseError("the model has no FATReLU; call replace_relus(model) first")
    if t_max is None:
        if calibration_batches is None:
            raise LayerwiseError("pass t_max or calibration_batches (the validation loader) to bound the search")
        for _, m in layers:
            m.set_threshold(0.0)
        t_max = relu_input_max(model, calibration_batches, device)
    greedy, drops, skipped = [], [], []
    for b in bounds:
        cal = calibrate_fatrelu(model, evaluate_fn, max_drop=b, t_max=t_max, precision=precision,
                                order=order, device=device)
        greedy.append(cal)
        drops.append(cal.reference_accuracy - cal.accuracy)
        skipped.append(float(skipped_fn(model)))
        log.info("FATReLU bound %.4g: greedy val drop %.4g, val skipped %.4g", b, drops[-1],
                 skipped[-1])
    selected = select_monotone(bounds, drops, skipped)
    if any(i < 0 for i in selected):
        raise LayerwiseError("internal: a greedy FATReLU search ended outside its own bound")
    set_fatrelu_thresholds(model, greedy[selected[-1]].thresholds)
    return FatReluBoundSelection(bounds=bounds, greedy=greedy, val_drop=drops, val_skipped=skipped,
                                 selected=selected)
