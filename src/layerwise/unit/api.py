"""UnIT on any model in one call: ``module, report = layerwise.unit.apply(model, calib_loader)``.

UnIT (A. Neth et al., "UnIT: Scalable Unstructured Inference-Time Pruning for MAC-efficient Neural
Inference on MCUs", 2025, arXiv:2507.07885) skips a MAC when ``|x * w| <= T``, with per-layer thresholds
``T`` set from a percentile of the products seen on held-out data (paper section 2.1). This module
does what ``layerwise unit`` does automatically, on a user's own ``nn.Module`` and
``torch.utils.data.DataLoader``:

1. convert a COPY of the model (:func:`~layerwise.unit.convert`; the given model is left alone);
2. collect the activation-weight products on ``calib_loader``, streamed one batch at a time
   (:func:`~layerwise.unit.collect_products`; never the whole split in memory);
3. ``percentile="auto"`` (default): sweep the percentile grid, scoring each point's accuracy on the
   validation loader, and take the largest percentile whose validation accuracy is within
   ``max_drop_pt`` points of the dense model's (:func:`~layerwise.unit.choose_percentile`, the
   CLI's rule); a number fixes it (the paper used 20);
4. count the MACs executed and skipped on the validation loader at the chosen thresholds.

Batches are read by the shared reader (:mod:`layerwise.data.batches`): tensors, ``(x, y)`` tuples,
or dicts through ``input_key`` / ``target_key``. Without ``val_loader`` the calibration loader
is also the validation loader, as in the CLI, which calibrates and chooses on the validation split.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.batches import BatchKeys, check_reiterable, iter_batches, loader_accuracy
from ..errors import LayerwiseError
from .calibrate import sweep
from .convert import convert, per_layer_counts, reset_counts, set_enabled, total_counts, unit_layers
from .select import PercentileChoice, choose_percentile

log = logging.getLogger(__name__)

#: the percentile grid of ``layerwise unit`` (its default ``--sweep``)
DEFAULT_SWEEP: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)


@dataclass(frozen=True)
class UnITReport:
    """What :func:`apply` decided and measured.

    ``percentile``: the percentile the thresholds come from; ``choice``: the validation curve and
    rule it was chosen by (``None`` for a fixed percentile). ``thresholds``: per converted layer,
    one threshold per group. ``macs_total`` / ``macs_executed``: MACs of the converted layers summed
    over the ``samples`` inputs of the validation loader (zero-operand and threshold skips both
    count as skipped). ``val_accuracy_before`` / ``_after``: top-1 of the dense model and of the
    returned module on the validation loader (``None`` when its batches carry no targets).
    """

    percentile: float
    choice: PercentileChoice | None
    thresholds: dict[str, tuple[float, ...]]
    converted: tuple[str, ...]
    left_alone: tuple[tuple[str, str], ...]
    groups: int
    division: str
    macs_total: int
    macs_executed: int
    samples: int
    per_layer: dict[str, dict] = field(default_factory=dict)
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    val_source: str = "val_loader"

    @property
    def skipped_fraction(self) -> float:
        """Share of the converted layers' MACs that did not run on the validation loader."""
        return 1.0 - self.macs_executed / self.macs_total if self.macs_total else 0.0

    @property
    def macs_per_inference(self) -> tuple[float, float]:
        """(executed, total) MACs per input, averaged over the validation loader."""
        n = max(self.samples, 1)
        return self.macs_executed / n, self.macs_total / n

    def to_dict(self) -> dict:
        return {"method": "unit", "percentile": self.percentile,
                "percentile_choice": self.choice.to_json() if self.choice is not None else None,
                "thresholds": {k: list(v) for k, v in self.thresholds.items()},
                "converted": list(self.converted),
                "left_alone": [{"name": n, "reason": r} for n, r in self.left_alone],
                "groups": self.groups, "division": self.division,
                "macs_total": self.macs_total, "macs_executed": self.macs_executed,
                "skipped_fraction": self.skipped_fraction, "samples": self.samples,
                "per_layer": self.per_layer, "val_accuracy_before": self.val_accuracy_before,
                "val_accuracy_after": self.val_accuracy_after, "val_source": self.val_source}


def _has_targets(loader: Iterable, keys: BatchKeys) -> bool:
    _, y = next(iter_batches(loader, keys, max_batches=1))
    return y is not None


def apply(model: nn.Module, calib_loader: Iterable, *, val_loader: Iterable | None = None,
          input_key: str | None = None, target_key: str | None = None,
          percentile: float | str = "auto", sweep_percentiles: Sequence[float] = DEFAULT_SWEEP,
          max_drop_pt: float = 0.5, groups: int = 1, division: str = "exact",
          skip: Iterable[str] = (), max_batches: int | None = None, seed: int = 0
          ) -> tuple[nn.Module, UnITReport]:
    """UnIT on ``model``: returns ``(module, report)``; ``model`` itself is not modified.

    ``module`` is a converted copy whose Linear / Conv1d / Conv2d layers skip MACs with
    ``|x * w| <= T`` (their counters say how many ran: :func:`~layerwise.unit.total_counts`).
    ``percentile="auto"`` chooses from the validation curve over ``sweep_percentiles`` (bound:
    ``max_drop_pt`` points below the dense model's validation accuracy; needs targets); a number
    in (0, 100) fixes it. ``groups``, ``division`` and ``skip`` are passed to
    :func:`~layerwise.unit.convert`; ``max_batches`` caps every pass over a loader.
    Raises :class:`~layerwise.errors.LayerwiseError` (one line, with the fix) on bad input.
    """
    if not isinstance(model, nn.Module):
        raise LayerwiseError(f"apply needs a torch.nn.Module, got {type(model).__name__}")
    keys = BatchKeys(input_key, target_key)
    check_reiterable(calib_loader=calib_loader, val_loader=val_loader)
    auto = isinstance(percentile, str)
    if auto and percentile.strip().lower() != "auto":
        raise LayerwiseError(f"percentile={percentile!r}: pass 'auto' or a number in (0, 100), e.g. 20")
    if not auto and not 0.0 < float(percentile) < 100.0:
        raise LayerwiseError(f"percentile={percentile}: pass a number strictly between 0 and 100, e.g. 20, or 'auto'")
    if not 0.0 <= max_drop_pt < 100.0:
        raise LayerwiseError(f"max_drop_pt={max_drop_pt}: pass points in [0, 100), e.g. 0.5")
    val, val_source = (val_loader, "val_loader") if val_loader is not None else (calib_loader, "calib_loader")
    labelled = _has_targets(val, keys)
    if auto and not labelled:
        raise LayerwiseError("percentile='auto' chooses from validation ACCURACY, but the validation batches "
                             "carry no targets: pass a labelled val_loader= (or target_key= for dict batches), "
                             "or a fixed percentile=20")

    dense_acc, _ = loader_accuracy(model, val, keys, max_batches=max_batches)
    module = copy.deepcopy(model)
    conv = convert(module, groups=groups, division=division, skip=skip)
    if conv.left_alone:
        log.info("UnIT left alone: %s", "; ".join(f"{n} ({r})" for n, r in conv.left_alone))

    def score(m: nn.Module) -> float:
        acc, _ = loader_accuracy(m, val, keys, max_batches=max_batches)
        return acc if acc is not None else float("nan")

    grid = list(sweep_percentiles) if auto else [float(percentile)]
    points = sweep(module, calib_loader, score, grid, max_batches=max_batches, seed=seed, keys=keys)
    choice = None
    if auto:
        choice = choose_percentile([(p.percentile, p.accuracy) for p in points], dense_acc, max_drop_pt / 100.0)
        chosen = choice.percentile
        if not choice.within_bound:
            log.warning("UnIT: no percentile of %s keeps validation accuracy within %g pt of dense (%.4f); "
                        "the smallest, p%g, is used (val %.4f): pass smaller sweep_percentiles or a larger max_drop_pt",
                        grid, max_drop_pt, dense_acc, chosen, choice.val_accuracy)
    else:
        chosen = float(percentile)
    point = next(p for p in points if p.percentile == chosen)
    layers = dict(unit_layers(module))
    for name, t in point.thresholds.items():
        layers[name].set_threshold(torch.tensor(t, dtype=torch.float32))
    set_enabled(module, True)
    # one more validation pass at the chosen thresholds: its counters are the report's MACs
    reset_counts(module)
    after, samples = loader_accuracy(module, val, keys, max_batches=max_batches)
    tot = total_counts(module)
    report = UnITReport(
        percentile=chosen, choice=choice,
        thresholds={k: tuple(float(v) for v in t) for k, t in point.thresholds.items()},
        converted=tuple(conv.converted), left_alone=tuple(conv.left_alone), groups=groups, division=division,
        macs_total=int(tot.total), macs_executed=int(tot.executed), samples=samples,
        per_layer={k: v.to_json() for k, v in per_layer_counts(module).items()},
        val_accuracy_before=dense_acc if labelled else None, val_accuracy_after=after, val_source=val_source)
    log.info("UnIT p%g: %.1f %% of MACs skipped on %s, val accuracy %s -> %s", chosen,
             100 * report.skipped_fraction, val_source, dense_acc, after)
    return module, report


__all__ = ["DEFAULT_SWEEP", "UnITReport", "apply"]
