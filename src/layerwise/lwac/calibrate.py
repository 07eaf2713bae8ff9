"""Calibration on the VALIDATION split: relevance (eq. 3), the controllers, lambda's range and value.

1. :func:`gather_relevance`: forward + backward on validation batches with the ACUs pinned
   (alpha = 1, the base model's exact outputs); per unit and pass t the mean per-sample
   ||dL/dh_i||_2 and H(h_i) go into the tracker's window (T passes); R_i by eq. (3).
2. :func:`bypass_labels`: for each bypassable unit, in forward order, whether bypassing it keeps
   each validation sample's dense prediction GIVEN the earlier units bypassed where their own
   label said it was safe; the feature is the summary of the unit's input in that context.
3. :func:`train_controllers`: fits each unit's controller to those labels (logistic loss on
   "needed" = not kept), the paper's training-time mask preprocessor.
4. :func:`lambda_range` and :func:`choose_lambda`: the lambda at which nothing / everything is
   bypassed on validation, and the largest saving whose validation accuracy stays within
   ``tolerance`` of the dense model. :func:`calibrate_lambda` runs 1-4 as ``layerwise lwac`` does
   (the lambda grid included): the one call behind the CLI and :func:`layerwise.lwac.apply`.

Every function reads the validation data one batch at a time: ``val`` is a map-style Dataset
(read in order, in batches) or any DataLoader / iterable of batches, read through
:func:`layerwise.data.batches.iter_batches` (tuple, tensor or dict batches; ``keys`` names the
dict entries). Nothing holds the split in memory: what is kept per sample is a bool label, one
summary vector per bypassable unit (the controller's features) and a 32-bit content hash (the
cross-fitting fold). The loader may shuffle: per-sample decisions are made within each batch,
and folds follow the samples' content, not their position.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.batches import BatchKeys, iter_batches
from .config import LWACError
from .controller import summarise
from .equations import activation_entropy, normalise
from .runtime import LWACModel

log = logging.getLogger(__name__)


def _check_split(data, what: str) -> None:
    if data is None or (isinstance(data, Dataset) and not isinstance(data, DataLoader) and hasattr(data, "__len__")
                        and len(data) == 0):
        raise LWACError(f"the validation split is empty: LWAC calibrates {what} on validation data; "
                        "use a dataset with a validation split (never calibrate on test)")


def _tensors(data: Dataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as two tensors: used by the static drop-k baselines only (CLI)."""
    xs, ys = zip(*(data[i] for i in range(len(data))))
    return torch.stack(xs).to(device), torch.as_tensor(ys).to(device)


def batches(data, *, batch_size: int = 128, device="cpu", keys: BatchKeys = BatchKeys(),
            need_targets: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(x, y)`` batches of ``data``, streamed: a map-style Dataset is read in order in batches
    of ``batch_size``; a DataLoader (or any iterable of batches) as it comes."""
    if isinstance(data, Dataset) and not isinstance(data, DataLoader) and hasattr(data, "__getitem__") \
            and hasattr(data, "__len__"):
        data = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    return iter_batches(data, keys, need_targets=need_targets, device=device)


def sample_ids(x: torch.Tensor) -> torch.Tensor:
    """(B,) int64 CRC-32 of each sample's bytes: the same sample gets the same id in any order."""
    flat = x.detach().to("cpu").contiguous().reshape(x.shape[0], -1).numpy()
    return torch.tensor([zlib.crc32(row.tobytes()) for row in flat], dtype=torch.int64)


def fold_of(ids: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """The cross-fitting fold of each sample id (a seeded hash of the id, mod ``folds``)."""
    return torch.tensor([zlib.crc32(struct.pack("<qq", int(i), seed)) % folds for i in ids.tolist()],
                        dtype=torch.int64)


@torch.no_grad()
def dense_predictions(lwac: LWACModel, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    with lwac.pinned():
        return torch.cat([lwac.model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).argmax(1)


def gather_relevance(lwac: LWACModel, val, *, batch_size: int = 16, device: str = "cpu",
                     keys: BatchKeys = BatchKeys()) -> list[float]:
    """Eq. (3) per unit over the last T validation passes (T = config.window); sets the state's R.

    One pass is one validation batch (``batch_size`` for a Dataset; the loader's own batches)."""
    _check_split(val, "relevance (eq. 3)")
    outputs: dict[int, torch.Tensor] = {}
    hooks = []
    for acu in lwac.acus:
        def keep(mod, args, out, i=acu.unit_index):
            out.retain_grad()
            outputs[i] = out
        hooks.append(acu.register_forward_hook(keep))
    flags = [(m, m.training) for m in lwac.modules()]
    lwac.eval()
    try:
        with lwac.pinned(), torch.enable_grad():
            for xb, yb in batches(val, batch_size=batch_size, device=device, keys=keys, need_targets=True):
                outputs.clear()
                logits = lwac.model(xb)
                loss = F.cross_entropy(logits, yb, reduction="sum")  # per-sample gradients
                loss.backward()
                for i, h in outputs.items():
                    g = h.grad.flatten(1).norm(dim=1).mean().item() if h.grad is not None else 0.0
                    lwac.tracker.push(i, float(activation_entropy(h).mean()), grad_norm=g)
                lwac.model.zero_grad(set_to_none=True)
    finally:
        for h in hooks:
            h.remove()
        for m, was in flags:
            m.training = was
    lwac.tracker.freeze_gradients()
    lwac.state.step = 0
    relevance = lwac.tracker.all()
    lwac.state.relevance = normalise(relevance)
    return relevance


@dataclass
class BypassLabels:
    unit: int
    features: torch.Tensor  # (N, F) summaries of the unit's input in the labelled context
    keep: torch.Tensor  # (N,) bool: bypassing keeps the dense prediction
    ids: torch.Tensor | None = None  # (N,) content hash of each sample (:func:`sample_ids`), for the folds


@torch.no_grad()
def bypass_labels(lwac: LWACModel, val, *, device: str = "cpu", batch_size: int = 128,
                  keys: BatchKeys = BatchKeys()) -> list[BypassLabels]:
    """Labels "bypassing unit i keeps the prediction, given earlier units bypassed where safe".

    One pass over ``val``: per batch, the dense prediction, then each bypassable unit in forward
    order forced off with the earlier units off where their own label said it was safe."""
    _check_split(val, "the bypass controllers")
    units = lwac.bypassable
    feats: dict[int, list[torch.Tensor]] = {i: [] for i in units}
    keeps: dict[int, list[torch.Tensor]] = {i: [] for i in units}
    ids = []
    current = [None]
    hooks = [lwac.acus[i].register_forward_pre_hook(
        lambda mod, args, i=i: feats[i].append(summarise(args[0], mod.controller.summary if mod.controller is not None
                                                         else "mean")) if current[0] == i else None)
        for i in units]
    try:
        for xb, _ in batches(val, batch_size=batch_size, device=device, keys=keys):
            ids.append(sample_ids(xb))
            pred0 = dense_predictions(lwac, xb, len(xb))
            forced: dict[int, torch.Tensor] = {}
            for i in units:
                masks = dict(forced)
                masks[i] = torch.ones(len(xb), dtype=torch.bool, device=xb.device)
                current[0] = i
                with lwac.forced(masks):
                    keep = lwac.model(xb).argmax(1) == pred0
                current[0] = None
                forced[i] = keep
                keeps[i].append(keep)
    finally:
        for h in hooks:
            h.remove()
    all_ids = torch.cat(ids)
    out = [BypassLabels(i, torch.cat(feats[i]), torch.cat(keeps[i]), all_ids) for i in units]
    for lab in out:
        log.info("unit %s: bypass keeps the prediction on %.1f%% of validation samples",
                 lwac.units[lab.unit].name, 100 * lab.keep.float().mean().item())
    return out


def train_controllers(lwac: LWACModel, labels: list[BypassLabels], *, steps: int = 300, lr: float = 0.05,
                      weight_decay: float = 1.0, seed: int = 0) -> dict[int, float]:
    """Fit each controller: R_i(x) = logit P(needed | summary); returns each unit's training accuracy.

    Targets are smoothed by 1/(2N) (N validation samples) so a unit whose bypass never changed a
    prediction gets the finite log-odds of "0 failures in N", not minus infinity; the weights
    (not the bias) carry an L2 penalty, so with few failing samples the controller stays near
    that prior instead of memorising the validation split.
    """
    torch.manual_seed(seed)
    acc = {}
    for lab in labels:
        ctrl = lwac.acus[lab.unit].controller
        if ctrl is None:
            continue
        feats = lab.features.float()
        eps = 0.5 / len(feats)
        target = (~lab.keep).float() * (1 - 2 * eps) + eps
        ctrl.reset()
        ctrl.set_standardisation(feats)
        weights = [p for n, p in ctrl.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in ctrl.named_parameters() if n.endswith("bias")]
        opt = torch.optim.Adam([{"params": weights, "weight_decay": weight_decay},
                                {"params": biases, "weight_decay": 0.0}], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                loss = F.binary_cross_entropy_with_logits(ctrl.score(feats), target)
                loss.backward()
                opt.step()
        ctrl.fuse()
        with torch.no_grad():
            acc[lab.unit] = ((ctrl.score(feats) > 0) == ~lab.keep).float().mean().item()
    return acc


def _score_hooks(lwac: LWACModel, got: dict[int, list]) -> list:
    hooks = []
    for i in lwac.bypassable:
        acu = lwac.acus[i]
        if acu.controller is None:
            continue
        hooks.append(acu.register_forward_pre_hook(
            lambda mod, args, i=i: got[i].append(mod.controller.relevance(summarise(args[0], mod.controller.summary)))))
    return hooks


@torch.no_grad()
def _scores(lwac: LWACModel, x: torch.Tensor, forced: dict, batch_size: int = 128) -> dict[int, torch.Tensor]:
    """Each bypassable unit's R_i(x) in [0, 1] on the tensor ``x`` with ``forced`` decisions upstream."""
    got: dict[int, list] = {i: [] for i in lwac.bypassable}
    hooks = _score_hooks(lwac, got)
    try:
        with lwac.forced(forced):
            for s in range(0, len(x), batch_size):
                lwac.model(x[s:s + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {i: torch.cat(v) for i, v in got.items() if v}


@torch.no_grad()
def lambda_range(lwac: LWACModel, val, *, device: str = "cpu", keys: BatchKeys = BatchKeys(),
                 batch_size: int = 128) -> tuple[float, float]:
    """Lambda at which no unit / every unit is bypassed on the validation split.

    A unit is bypassed iff gamma * R_i - lambda * C_i < logit(threshold), i.e. iff
    lambda > (gamma * R_i - logit(threshold)) / C_i. The lower end uses R_i(x) with nothing
    bypassed upstream, the upper end with every bypassable unit bypassed (the two contexts a
    unit's input can come from at the ends of the range). Both ends are clamped to >= 0: R_i is
    a probability (or a normalised relevance), so lambda = 0 is the dense end (with the default
    threshold 0.5 nothing is bypassed there) and no negative lambda is ever needed or allowed.

    Soft mode (eq. 1, h~_i = alpha_i * h_i: every unit is scaled, none is skipped, so a model with
    no bypassable unit can still be calibrated): the range runs over every unit, from lambda = 0
    (the least down-scaling, alpha_i = sigmoid(gamma * R_i)) to the lambda at which every unit's
    alpha_i is below the threshold.
    """
    _check_split(val, "the lambda range")
    st, cfg = lwac.state, lwac.config
    r_min: dict[int, float] = {}
    r_max: dict[int, float] = {}
    if cfg.policy in ("neural", "learned"):  # R_i(x) per sample: min with nothing bypassed, max with all
        got: dict[int, list] = {i: [] for i in lwac.bypassable}
        hooks = _score_hooks(lwac, got)
        try:
            for xb, _ in batches(val, batch_size=batch_size, device=device, keys=keys):
                for ctx, agg, pick in ((False, r_min, min), (True, r_max, max)):
                    for v in got.values():
                        v.clear()
                    with lwac.forced({i: ctx for i in lwac.bypassable}):
                        lwac.model(xb)
                    for i, v in got.items():
                        if v:
                            r = torch.cat(v)
                            r = float(r.min()) if pick is min else float(r.max())
                            agg[i] = pick(agg.get(i, r), r)
        finally:
            for h in hooks:
                h.remove()
    soft = cfg.mode == "soft"
    lo, hi = float("inf"), float("-inf")
    for i in (range(len(lwac.units)) if soft else lwac.bypassable):   # soft: every unit is scaled (eq. 1)
        c = st.cost[i]
        if c <= 0:
            continue
        r_lo, r_hi = (r_min[i], r_max[i]) if i in r_min else (st.relevance[i], st.relevance[i])
        lo = min(lo, (cfg.gamma * r_lo - cfg.z_threshold) / c)
        hi = max(hi, (cfg.gamma * r_hi - cfg.z_threshold) / c)
    if lo == float("inf"):
        raise LWACError("no unit of this model can be bypassed, so lambda has no effect in hard mode: attach with "
                        "LWACConfig(mode='soft') to scale the units instead (eq. 1)")
    if soft:   # lambda = 0: the least down-scaling, alpha_i = sigmoid(gamma * R_i) (eq. 2)
        lo = 0.0
    pad = 0.02 * max(hi - lo, 1e-3)
    lwac.lam_range = (max(0.0, lo - pad), max(0.0, hi + pad))
    return lwac.lam_range


@dataclass
class LambdaPoint:
    lam: float
    accuracy: float
    agreement: float  # fraction of samples whose prediction equals the dense one
    run_share: list[float]  # per unit: fraction of samples computed
    est_latency_ratio: float  # 1 - sum_i bypassed_share_i * latency_i / dense latency (estimate)

    def to_json(self) -> dict:
        return {"lam": self.lam, "accuracy": self.accuracy, "agreement": self.agreement,
                "run_share": self.run_share, "est_latency_ratio": self.est_latency_ratio}


class _SweepTotals:
    """Per lambda: correct, agreeing with dense, and per-unit samples executed / bypassed; summed
    over batches (and folds), so a sweep never needs the split at once."""

    def __init__(self, lwac: LWACModel, lams: list[float]):
        self.lams = list(lams)
        n_units = len(lwac.units)
        self.correct = {lam: 0 for lam in self.lams}
        self.agree = {lam: 0 for lam in self.lams}
        self.executed = {lam: [0] * n_units for lam in self.lams}
        self.bypassed = {lam: [0] * n_units for lam in self.lams}
        self.n = 0
        self.dense_correct = 0

    @torch.no_grad()
    def add(self, lwac: LWACModel, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) == 0:
            return
        pred0 = dense_predictions(lwac, x, len(x))
        self.n += len(x)
        self.dense_correct += int((pred0 == y).sum())
        for lam in self.lams:
            lwac.set_lambda(lam)
            lwac.reset_counts()
            pred = lwac.model(x).argmax(1)
            self.correct[lam] += int((pred == y).sum())
            self.agree[lam] += int((pred == pred0).sum())
            st = lwac.state
            self.executed[lam] = [a + int(b) for a, b in zip(self.executed[lam], st.executed)]
            self.bypassed[lam] = [a + int(b) for a, b in zip(self.bypassed[lam], st.bypassed)]

    def points(self, lwac: LWACModel, dense_ms: float) -> list[LambdaPoint]:
        unit_ms = [u.latency_ms or 0.0 for u in lwac.units]
        out = []
        for lam in self.lams:
            share = [e / (e + b) if e + b else 0.0 for e, b in zip(self.executed[lam], self.bypassed[lam])]
            saved = sum((1 - share[i]) * unit_ms[i] for i in lwac.bypassable)
            out.append(LambdaPoint(lam, self.correct[lam] / max(self.n, 1), self.agree[lam] / max(self.n, 1), share,
                                   max(0.0, 1 - saved / dense_ms) if dense_ms > 0 else 1.0))
        return out


@torch.no_grad()
def sweep_lambda(lwac: LWACModel, data, lams: list[float], *, dense_ms: float, device: str = "cpu",
                 batch_size: int = 128, keys: BatchKeys = BatchKeys()) -> list[LambdaPoint]:
    """Accuracy and an estimated latency ratio per lambda (batched: per-sample decisions, exact outputs)."""
    totals = _SweepTotals(lwac, lams)
    old = lwac.state.lam
    try:
        for xb, yb in batches(data, batch_size=batch_size, device=device, keys=keys, need_targets=True):
            totals.add(lwac, xb, yb)
    finally:
        lwac.set_lambda(old)
        lwac.reset_counts()
    return totals.points(lwac, dense_ms)


def choose_lambda(points: list[LambdaPoint], dense_accuracy: float, tolerance: float) -> LambdaPoint:
    """The point with the lowest estimated latency whose accuracy >= dense - tolerance."""
    ok = [p for p in points if p.accuracy >= dense_accuracy - tolerance - 1e-9]
    if not ok:
        return min(points, key=lambda p: p.lam)
    return min(ok, key=lambda p: (p.est_latency_ratio, -p.accuracy))


def crossfit_sweep(lwac: LWACModel, val, labels: list[BypassLabels], lams: list[float], *,
                   dense_ms: float, folds: int = 5, device: str = "cpu", seed: int = 0,
                   keys: BatchKeys = BatchKeys(), batch_size: int = 128, **train_kwargs) -> list[LambdaPoint]:
    """The lambda sweep on validation, with the controllers CROSS-FITTED: each fold's samples are
    scored by controllers trained on the other folds, so the chosen lambda is not fooled by a
    controller that memorised the validation split. Leaves the controllers trained on all of it.

    A sample's fold is a seeded hash of its content (:func:`fold_of`), the same in the labels and
    in each of the ``folds`` streamed passes here, whatever order the loader gives."""
    if not labels:
        raise LWACError("crossfit_sweep needs the bypass labels of bypass_labels(); with no bypassable unit "
                        "there is nothing to cross-fit")
    if labels[0].ids is None:
        raise LWACError("these bypass labels carry no sample ids: make them with lwac.bypass_labels()")
    n = len(labels[0].keep)
    folds = max(2, min(folds, n))
    fold = fold_of(labels[0].ids, folds, seed)
    totals = _SweepTotals(lwac, lams)
    old = lwac.state.lam
    try:
        for f in range(folds):
            keep_idx = (fold != f).nonzero().flatten()
            sub = [BypassLabels(l.unit, l.features[keep_idx], l.keep[keep_idx], l.ids[keep_idx]) for l in labels]
            train_controllers(lwac, sub, seed=seed, **train_kwargs)
            for xb, yb in batches(val, batch_size=batch_size, device=device, keys=keys, need_targets=True):
                held = (fold_of(sample_ids(xb), folds, seed) == f).nonzero().flatten().to(xb.device)
                totals.add(lwac, xb.index_select(0, held), yb.index_select(0, held))
    finally:
        lwac.set_lambda(old)
        lwac.reset_counts()
    train_controllers(lwac, labels, seed=seed, **train_kwargs)
    return totals.points(lwac, dense_ms)


@dataclass(frozen=True)
class LambdaCalibration:
    """What :func:`calibrate_lambda` measured and chose (all on validation)."""

    relevance: list[float]  # eq. (3) per unit
    lam_range: tuple[float, float]  # lambda at which nothing / everything is bypassed
    lams: list[float]  # the grid swept
    points: list[LambdaPoint]  # the (cross-fitted, for the neural policy) sweep
    chosen: LambdaPoint  # the lowest estimated latency within tolerance of dense
    dense_val_accuracy: float
    tolerance: float
    bypass_keep_rate: dict[str, float]  # per bypassable unit: bypassing it alone keeps the prediction
    controller_fit_accuracy: dict[str, float]
    samples: int = 0  # validation samples read per pass

    @property
    def lam(self) -> float:
        return self.chosen.lam

    def to_json(self) -> dict:
        return {"relevance": list(self.relevance), "lam_range": list(self.lam_range), "lam": self.lam,
                "dense_val_accuracy": self.dense_val_accuracy, "tolerance": self.tolerance, "samples": self.samples,
                "bypass_keep_rate": dict(self.bypass_keep_rate),
                "controller_fit_accuracy": dict(self.controller_fit_accuracy),
                "sweep": [p.to_json() for p in self.points], "chosen": self.chosen.to_json()}


def calibrate_lambda(lwac: LWACModel, val, *, dense_ms: float, grid: int = 21, tolerance: float = 0.005,
                     extra_lams: Iterable[float] = (), device: str = "cpu", keys: BatchKeys = BatchKeys(),
                     seed: int = 0) -> LambdaCalibration:
    """The whole calibration of ``layerwise lwac`` on validation data, streamed: relevance (eq. 3),
    bypass labels and controllers (neural policy), the lambda range, a grid of ``grid`` lambdas
    over it (plus ``extra_lams``), the (cross-fitted) sweep, and the lambda with the lowest
    estimated latency whose validation accuracy is within ``tolerance`` of dense. Sets that lambda
    and the calibration curve (``lam_curve``, the budget controller's feed-forward) on ``lwac``.

    ``dense_ms`` is the dense model's batch-1 latency reference (:func:`dense_reference_ms`); the
    sweep's latency ratios are relative to it. ``learned`` policy: the controllers were trained
    with the network, so only the sweep runs."""
    if grid < 2:
        raise LWACError(f"the lambda grid needs at least 2 points, not {grid}")
    if not 0.0 <= tolerance < 1.0:
        raise LWACError(f"tolerance is an accuracy drop in [0, 1), not {tolerance}")
    relevance = gather_relevance(lwac, val, device=device, keys=keys)
    policy = lwac.config.policy
    labels = bypass_labels(lwac, val, device=device, keys=keys) if policy != "learned" else []
    fit = train_controllers(lwac, labels, seed=seed) if policy == "neural" else {}
    lo, hi = lambda_range(lwac, val, device=device, keys=keys)
    lams = sorted({float(v) for v in np.linspace(lo, hi, grid)} | {float(v) for v in extra_lams})
    if policy == "neural" and labels:
        totals_points = crossfit_sweep(lwac, val, labels, lams, dense_ms=dense_ms, device=device, keys=keys,
                                       seed=seed)
    else:
        totals_points = sweep_lambda(lwac, val, lams, dense_ms=dense_ms, device=device, keys=keys)
    correct, n = _dense_counts(lwac, val, device=device, keys=keys)
    dense_val = correct / max(n, 1)
    best = choose_lambda(totals_points, dense_val, tolerance)
    lwac.set_lambda(best.lam)
    lwac.lam_curve = [(p.lam, p.est_latency_ratio) for p in totals_points]
    return LambdaCalibration(relevance, (lo, hi), lams, totals_points, best, dense_val, tolerance,
                             {lwac.units[l.unit].name: l.keep.float().mean().item() for l in labels},
                             {lwac.units[i].name: a for i, a in fit.items()}, n)


@torch.no_grad()
def dense_accuracy(lwac: LWACModel, val, *, device: str = "cpu", keys: BatchKeys = BatchKeys(),
                   batch_size: int = 128) -> float:
    """Validation accuracy of the dense model (the ACUs pinned: alpha = 1, nothing bypassed), streamed."""
    correct, n = _dense_counts(lwac, val, device=device, keys=keys, batch_size=batch_size)
    return correct / max(n, 1)


@torch.no_grad()
def _dense_counts(lwac: LWACModel, val, *, device: str = "cpu", keys: BatchKeys = BatchKeys(),
                  batch_size: int = 128) -> tuple[int, int]:
    correct = n = 0
    for xb, yb in batches(val, batch_size=batch_size, device=device, keys=keys, need_targets=True):
        correct += int((dense_predictions(lwac, xb, len(xb)) == yb).sum())
        n += len(xb)
    return correct, n


class _Cycle:
    """Calls ``fn`` on the next of ``inputs`` each time (ignoring its argument): a timer's callable
    that sees a stream of different inputs, as a deployed model does."""

    def __init__(self, fn, inputs: list[torch.Tensor]):
        self.fn, self.inputs, self.i = fn, inputs, 0

    def __call__(self, *_):
        x = self.inputs[self.i % len(self.inputs)]
        self.i += 1
        return self.fn(x)


def dense_reference_ms(model, inputs: list[torch.Tensor], *, n: int = 60, warmup: int = 20,
                       threads: int | None = None) -> float:
    """The dense model's batch-1 latency reference: the median over ``n`` timed calls cycling
    through ``inputs`` (validation samples at batch 1), as ``layerwise lwac`` measures it."""
    from ..measure import compare_latency
    if not inputs:
        raise LWACError("the dense latency reference needs at least one validation input")
    with torch.no_grad():
        return float(compare_latency({"dense": (_Cycle(model, inputs), inputs[0])}, n=max(3, n), warmup=warmup,
                                     threads=threads)["dense"].median_ms)
