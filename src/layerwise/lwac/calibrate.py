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
   ``tolerance`` of the dense model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .config import LWACError
from .controller import summarise
from .equations import activation_entropy, normalise
from .runtime import LWACModel

log = logging.getLogger(__name__)


def _check_split(data: Dataset, what: str) -> None:
    if data is None or len(data) == 0:
        raise LWACError(f"the validation split is empty: LWAC calibrates {what} on validation data; "
                        "use a dataset with a validation split (never calibrate on test)")


def _tensors(data: Dataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(data[i] for i in range(len(data))))
    return torch.stack(xs).to(device), torch.as_tensor(ys).to(device)


@torch.no_grad()
def dense_predictions(lwac: LWACModel, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    with lwac.pinned():
        return torch.cat([lwac.model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).argmax(1)


def gather_relevance(lwac: LWACModel, val: Dataset, *, batch_size: int = 16, device: str = "cpu") -> list[float]:
    """Eq. (3) per unit over the last T validation passes (T = config.window); sets the state's R."""
    _check_split(val, "relevance (eq. 3)")
    x, y = _tensors(val, device)
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
            for s in range(0, len(x), batch_size):
                outputs.clear()
                logits = lwac.model(x[s:s + batch_size])
                loss = F.cross_entropy(logits, y[s:s + batch_size], reduction="sum")  # per-sample gradients
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


@torch.no_grad()
def bypass_labels(lwac: LWACModel, val: Dataset, *, device: str = "cpu", batch_size: int = 128) -> list[BypassLabels]:
    """Labels "bypassing unit i keeps the prediction, given earlier units bypassed where safe"."""
    _check_split(val, "the bypass controllers")
    x, _ = _tensors(val, device)
    pred0 = dense_predictions(lwac, x, batch_size)
    forced: dict[int, torch.Tensor] = {}
    out: list[BypassLabels] = []
    for i in lwac.bypassable:
        acu = lwac.acus[i]
        feats = []
        hook = acu.register_forward_pre_hook(
            lambda mod, args: feats.append(summarise(args[0], mod.controller.summary if mod.controller is not None
                                                     else "mean")))
        preds = []
        try:
            for s in range(0, len(x), batch_size):
                masks = {j: m[s:s + batch_size] for j, m in forced.items()}
                masks[i] = torch.ones(min(batch_size, len(x) - s), dtype=torch.bool, device=x.device)
                with lwac.forced(masks):
                    preds.append(lwac.model(x[s:s + batch_size]).argmax(1))
        finally:
            hook.remove()
        keep = torch.cat(preds) == pred0
        forced[i] = keep
        out.append(BypassLabels(i, torch.cat(feats), keep))
        log.info("unit %s: bypass keeps the prediction on %.1f%% of validation samples",
                 lwac.units[i].name, 100 * keep.float().mean().item())
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


@torch.no_grad()
def _scores(lwac: LWACModel, x: torch.Tensor, forced: dict, batch_size: int = 128) -> dict[int, torch.Tensor]:
    """Each bypassable unit's R_i(x) in [0, 1] on ``x`` with ``forced`` decisions upstream."""
    got: dict[int, list] = {i: [] for i in lwac.bypassable}
    hooks = []
    for i in lwac.bypassable:
        acu = lwac.acus[i]
        if acu.controller is None:
            continue
        hooks.append(acu.register_forward_pre_hook(
            lambda mod, args, i=i: got[i].append(mod.controller.relevance(summarise(args[0], mod.controller.summary)))))
    try:
        with lwac.forced(forced):
            for s in range(0, len(x), batch_size):
                lwac.model(x[s:s + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {i: torch.cat(v) for i, v in got.items() if v}


def lambda_range(lwac: LWACModel, val: Dataset, *, device: str = "cpu") -> tuple[float, float]:
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
    x, _ = _tensors(val, device)
    neural = cfg.policy in ("neural", "learned")
    dense_ctx = _scores(lwac, x, {i: False for i in lwac.bypassable}) if neural else {}
    skip_ctx = _scores(lwac, x, {i: True for i in lwac.bypassable}) if neural else {}
    soft = cfg.mode == "soft"
    lo, hi = float("inf"), float("-inf")
    for i in (range(len(lwac.units)) if soft else lwac.bypassable):   # soft: every unit is scaled (eq. 1)
        c = st.cost[i]
        if c <= 0:
            continue
        if i in dense_ctx:
            r_lo, r_hi = dense_ctx[i].min().item(), skip_ctx[i].max().item()
        else:
            r_lo = r_hi = st.relevance[i]
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


@torch.no_grad()
def sweep_lambda(lwac: LWACModel, data: Dataset, lams: list[float], *, dense_ms: float, device: str = "cpu",
                 batch_size: int = 128) -> list[LambdaPoint]:
    """Accuracy and an estimated latency ratio per lambda (batched: per-sample decisions, exact outputs)."""
    x, y = _tensors(data, device)
    pred0 = dense_predictions(lwac, x, batch_size)
    points = []
    old = lwac.state.lam
    unit_ms = [u.latency_ms or 0.0 for u in lwac.units]
    try:
        for lam in lams:
            lwac.set_lambda(lam)
            lwac.reset_counts()
            pred = torch.cat([lwac.model(x[s:s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)])
            share = lwac.run_share()
            saved = sum((1 - share[i]) * unit_ms[i] for i in lwac.bypassable)
            points.append(LambdaPoint(lam, (pred == y).float().mean().item(), (pred == pred0).float().mean().item(),
                                      share, max(0.0, 1 - saved / dense_ms) if dense_ms > 0 else 1.0))
    finally:
        lwac.set_lambda(old)
        lwac.reset_counts()
    return points


def choose_lambda(points: list[LambdaPoint], dense_accuracy: float, tolerance: float) -> LambdaPoint:
    """The point with the lowest estimated latency whose accuracy >= dense - tolerance."""
    ok = [p for p in points if p.accuracy >= dense_accuracy - tolerance - 1e-9]
    if not ok:
        return min(points, key=lambda p: p.lam)
    return min(ok, key=lambda p: (p.est_latency_ratio, -p.accuracy))


def crossfit_sweep(lwac: LWACModel, val: Dataset, labels: list[BypassLabels], lams: list[float], *,
                   dense_ms: float, folds: int = 5, device: str = "cpu", seed: int = 0,
                   **train_kwargs) -> list[LambdaPoint]:
    """The lambda sweep on validation, with the controllers CROSS-FITTED: each fold's samples are
    scored by controllers trained on the other folds, so the chosen lambda is not fooled by a
    controller that memorised the validation split. Leaves the controllers trained on all of it."""
    n = len(val)
    folds = max(2, min(folds, n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = [order[f::folds] for f in range(folds)]
    totals: dict[float, list] = {lam: [0.0, 0.0, [0.0] * len(lwac.units), 0.0] for lam in lams}
    for f, held in enumerate(parts):
        keep_idx = torch.cat([p for g, p in enumerate(parts) if g != f])
        sub = [BypassLabels(l.unit, l.features[keep_idx], l.keep[keep_idx]) for l in labels]
        train_controllers(lwac, sub, seed=seed, **train_kwargs)
        held_set = torch.utils.data.Subset(val, held.tolist())
        for p in sweep_lambda(lwac, held_set, lams, dense_ms=dense_ms, device=device):
            t = totals[p.lam]
            w = len(held)
            t[0] += p.accuracy * w
            t[1] += p.agreement * w
            t[2] = [a + b * w for a, b in zip(t[2], p.run_share)]
            t[3] += p.est_latency_ratio * w
    train_controllers(lwac, labels, seed=seed, **train_kwargs)
    return [LambdaPoint(lam, t[0] / n, t[1] / n, [s / n for s in t[2]], t[3] / n) for lam, t in totals.items()]
