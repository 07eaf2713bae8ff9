"""``lwac.apply(model, calib_loader)``: LWAC on any model, with the command line's automatic choices.

One call does what ``layerwise lwac`` does before it reads a test split:

1. :func:`~layerwise.lwac.attach` an ACU to every calibratable unit. Residual blocks written for
   other libraries (``x + self.conv(x)``, torchvision's ``use_res_connect``) are bypassable for
   real: their residual add is found by tracing (:class:`~layerwise.lwac.units.TracedResidualAdapter`);
   every unit that cannot be bypassed is reported with the reason.
2. Measure the dense model's batch-1 latency reference on calibration inputs
   (:func:`~layerwise.lwac.calibrate.dense_reference_ms`), the denominator of every latency ratio.
3. :func:`~layerwise.lwac.calibrate.calibrate_lambda`: relevance (eq. 3), bypass labels, the
   controllers, the lambda range, the grid over it, the cross-fitted sweep and the lambda with
   the lowest estimated latency within ``tolerance`` of dense accuracy, all streamed from the
   loader, one batch at a time.
4. ``policy="auto"``: both the neural controller and the heuristic rule are calibrated and timed
   interleaved on calibration inputs; :func:`~layerwise.lwac.choose_policy` keeps the faster one
   within tolerance.
5. Accuracy of the dense model and of the adapted one on ``val_loader`` (or, without it, on the
   calibration loader, which the report says).

Rao et al. calibrate on a validation split, never on test: ``calib_loader`` plays that role.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from ..data.batches import BatchKeys, check_reiterable, first_input, iter_batches
from ..measure import compare_latency
from .calibrate import LambdaCalibration, _Cycle, calibrate_lambda, dense_reference_ms
from .config import LWACConfig, LWACError
from .policy import PolicyStats, choose_policy
from .runtime import LWACModel, attach

log = logging.getLogger(__name__)

POLICIES = ("auto", "neural", "heuristic")


@dataclass(frozen=True)
class LWACReport:
    """What :func:`apply` measured and decided."""

    policy: str  # the control policy in use ("neural" or "heuristic")
    policy_reason: str  # why (auto: the validation latency / accuracy rule; else "given")
    lam: float  # the lambda chosen from the grid
    lam_range: tuple[float, float]  # lambda at which nothing / everything is bypassed on calibration data
    lam_grid: tuple[float, ...]  # the lambdas swept
    tolerance: float  # accuracy drop allowed when choosing lambda
    dense_ms: float  # the dense model's measured batch-1 latency reference (median, ms)
    est_latency_ratio: float  # at the chosen lambda: estimated latency / dense_ms (calibration data)
    bypassable: tuple[str, ...]  # units that are really bypassed (never called) when their gate is off
    not_bypassable: dict[str, str] = field(default_factory=dict)  # unit -> the reason it always runs
    run_share: dict[str, float] = field(default_factory=dict)  # unit -> fraction of val samples it ran on
    calib_samples: int = 0
    calib_dense_accuracy: float = 0.0
    calib_accuracy: float = 0.0  # at the chosen lambda (cross-fitted for the neural policy)
    val_split: str = "val_loader"  # where the two accuracies below were measured
    val_samples: int = 0
    val_accuracy_before: float = 0.0  # the dense model
    val_accuracy_after: float = 0.0  # the adapted model at the chosen lambda, per-sample decisions
    dense_macs: int = 0
    macs_after: float = 0.0  # mean MACs per val sample actually run (controllers included)
    sweep: tuple[dict, ...] = ()  # every lambda point of the sweep (accuracy, agreement, shares, latency)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lam_range"] = list(self.lam_range)
        d["lam_grid"] = list(self.lam_grid)
        d["bypassable"] = list(self.bypassable)
        d["sweep"] = [dict(p) for p in self.sweep]
        return d


def _val_inputs(loader, keys: BatchKeys, n: int, device) -> list[torch.Tensor]:
    """Up to ``n`` single inputs (batch 1) from the first batches of ``loader``: the timer's stream."""
    out: list[torch.Tensor] = []
    for x, _ in iter_batches(loader, keys, device=device):
        out.extend(x[i:i + 1] for i in range(len(x)))
        if len(out) >= n:
            break
    return out[:n]


@torch.no_grad()
def _accuracy(lw: LWACModel, loader, keys: BatchKeys, device, dense: bool) -> tuple[float, int]:
    correct = n = 0
    lw.reset_counts()
    for x, y in iter_batches(loader, keys, need_targets=True, device=device):
        if dense:
            with lw.pinned():
                pred = lw.model(x).argmax(1)
        else:
            pred = lw.model(x).argmax(1)
        correct += int((pred == y).sum())
        n += len(x)
    return correct / max(n, 1), n


def apply(model: nn.Module, calib_loader: Iterable, *, val_loader: Iterable | None = None,
          input_key: str | None = None, target_key: str | None = None, policy: str = "auto",
          mode: str = "hard", tolerance: float = 0.005, grid: int = 21, config: LWACConfig | None = None,
          block_types: Iterable[type] = (), latency_inputs: int = 100, latency_n: int = 60,
          threads: int | None = None, device: str | torch.device = "cpu", seed: int = 0
          ) -> tuple[LWACModel, LWACReport]:
    """LWAC on ``model`` calibrated on ``calib_loader``; returns ``(lwac_model, report)``.

    ``calib_loader``: a DataLoader (map-style or iterable; tuple batches ``(x, y)``, or dict
    batches read through ``input_key``/``target_key``) of VALIDATION data: relevance, the
    controllers and lambda are all fitted on it, streamed. ``val_loader``: held-out data for the
    report's before/after accuracy (default: the calibration loader, labelled so).
    ``policy``: ``"auto"`` (neural or heuristic, whichever is faster within ``tolerance``,
    as ``layerwise lwac``), ``"neural"`` or ``"heuristic"``. ``mode``: ``"hard"`` (bypass:
    saves work) or ``"soft"`` (the paper's scaling, eq. 1). ``grid``: lambdas in the sweep.
    ``config``: any other :class:`LWACConfig` field (its policy and mode are overridden).
    ``block_types``: extra block classes to treat as units. The base model is not modified.
    """
    if policy not in POLICIES:
        raise LWACError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r} (the learned policy "
                        "trains with the network: use lwac.train_learned_gates)")
    if not isinstance(latency_inputs, int) or latency_inputs < 1:
        raise LWACError(f"latency_inputs must be a positive number of inputs, not {latency_inputs!r}")
    check_reiterable(calib_loader=calib_loader, val_loader=val_loader)
    keys = BatchKeys(input_key, target_key)
    device = torch.device(device)
    base_config = replace(config or LWACConfig(), mode=mode)
    x1 = first_input(calib_loader, keys).to(device)
    was_training = model.training
    model.eval()
    try:
        inputs = _val_inputs(calib_loader, keys, latency_inputs, device)
        dense_ms = dense_reference_ms(model, inputs, n=latency_n, warmup=min(20, latency_n), threads=threads)
        log.info("LWAC: dense batch-1 latency reference %.3f ms (median of %d calls over %d inputs)",
                 dense_ms, max(3, latency_n), len(inputs))
        candidates = ["neural", "heuristic"] if policy == "auto" else [policy]
        models: dict[str, LWACModel] = {}
        calibs: dict[str, LambdaCalibration] = {}
        for pol in candidates:
            models[pol] = attach(model, x1, replace(base_config, policy=pol), block_types=block_types,
                                 latency_n=latency_n, threads=threads)
            calibs[pol] = calibrate_lambda(models[pol], calib_loader, dense_ms=dense_ms, grid=grid,
                                           tolerance=tolerance, device=str(device), keys=keys, seed=seed)
        if len(candidates) > 1:
            lat = compare_latency({k: (_Cycle(m, inputs), x1) for k, m in models.items()}, n=max(20, latency_n),
                                  warmup=min(20, latency_n), threads=threads)
            stats = {k: PolicyStats(val_accuracy=calibs[k].chosen.accuracy, val_latency_ms=lat[k].median_ms,
                                    val_iqr_ms=lat[k].iqr_ms, est_latency_ratio=calibs[k].chosen.est_latency_ratio)
                     for k in models}
            choice = choose_policy(stats, max(c.dense_val_accuracy for c in calibs.values()), tolerance)
            chosen, reason = choice.policy, choice.reason
        else:
            chosen, reason = policy, "given"
        lw, cal = models[chosen], calibs[chosen]
        split = "val_loader" if val_loader is not None else "calib_loader"
        data = val_loader if val_loader is not None else calib_loader
        before, n_val = _accuracy(lw, data, keys, device, dense=True)
        after, _ = _accuracy(lw, data, keys, device, dense=False)
        share = lw.run_share()
        macs_after = lw.macs_executed()
        lw.reset_counts()
    finally:
        model.train(was_training)
    report = LWACReport(
        policy=chosen, policy_reason=reason, lam=cal.lam, lam_range=tuple(cal.lam_range), lam_grid=tuple(cal.lams),
        tolerance=tolerance, dense_ms=dense_ms, est_latency_ratio=cal.chosen.est_latency_ratio,
        bypassable=tuple(u.name for u in lw.units if u.bypassable),
        not_bypassable={u.name: u.reason or "not bypassable" for u in lw.units if not u.bypassable},
        run_share={u.name: share[u.index] for u in lw.units}, calib_samples=cal.samples,
        calib_dense_accuracy=cal.dense_val_accuracy, calib_accuracy=cal.chosen.accuracy, val_split=split,
        val_samples=n_val, val_accuracy_before=before, val_accuracy_after=after, dense_macs=int(lw.dense_macs),
        macs_after=float(macs_after), sweep=tuple(p.to_json() for p in cal.points))
    log.info("LWAC: policy %s, lambda %.4g (grid of %d over [%.4g, %.4g]); %d of %d units bypassable; "
             "%s accuracy %.4f -> %.4f", chosen, cal.lam, len(cal.lams), *cal.lam_range, len(report.bypassable),
             len(lw.units), split, before, after)
    return lw, report
