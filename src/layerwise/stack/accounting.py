"""Executed MACs of a stacked model, counted where they run, and whether the gains add up.

One counting basis for every variant (UnIT's, see :mod:`layerwise.unit.accounting`): a MAC is
executed when its layer runs, both operands are nonzero and, in a UnIT layer with a threshold,
``|x * w| > T`` (UnIT paper, eq. 2-3). The model's Linear / Conv layers must be UnIT layers
(``unit.convert``; at ``T = 0`` they compute the plain layer, so a dense or compressed model is
counted through a converted copy with thresholds 0). Layers the conversion left alone are counted
at ``T = 0`` on the same zero-skipping rule.

With LWAC on top, a bypassed block calls none of its layers, so its UnIT counters do not move:
the count IS the MACs of the blocks that ran (and of a projection shortcut, which runs in a
bypass too). LWAC's controllers' MACs (neural policy) are added per inference. Beside it,
``run_macs`` is LWAC's own figure: every MAC of the layers that ran, at full cost (a dense
kernel), so a reader can separate "blocks not run" from "MACs skipped inside the blocks run".

MACs of layers neither can count (recurrent layers) are not included; the conversion report
lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import lwac, unit
from ..errors import LayerwiseError
from ..unit.accounting import count_left_alone
from ..unit.counts import MacCounts, combine_layers


@dataclass
class ExecutedMacs:
    """Per-inference MAC figures of one model over ``samples`` inputs (averages)."""

    samples: int
    macs: int                 # the model's MACs per inference (every layer of every block)
    executed: float           # UnIT's basis: layers that ran, both operands nonzero, above T; + controllers
    run_macs: float           # layers that ran, every MAC (LWAC's count; ``macs`` without LWAC)
    controller_macs: int      # per inference, included in ``executed`` and ``run_macs``
    counts: MacCounts         # UnIT and left-alone layers' counters over all samples

    @property
    def executed_fraction(self) -> float:
        return self.executed / self.macs if self.macs else 0.0

    def to_json(self) -> dict:
        return {"samples": self.samples, "macs": self.macs, "executed": self.executed, "run_macs": self.run_macs,
                "controller_macs": self.controller_macs, "executed_fraction": self.executed_fraction,
                "counts": self.counts.to_json()}


def _network(model: nn.Module) -> tuple[nn.Module, lwac.LWACModel | None]:
    if isinstance(model, lwac.LWACModel):
        return model.model, model
    return model, None


@torch.no_grad()
def count_executed(model: nn.Module, dataset, *, macs: int, device: str = "cpu", batch_size: int = 64
                   ) -> tuple[ExecutedMacs, torch.Tensor]:
    """Run ``model`` over ``dataset`` once: (its :class:`ExecutedMacs`, per-sample hits).

    ``model``: a UnIT-converted model, or an :class:`~layerwise.lwac.LWACModel` around one. LWAC
    decides per sample inside a batch too (a mixed batch runs a unit on the gathered samples that
    need it, and its counters count per sample), so batches give batch-1 decisions and counts. ``macs``: the plain model's MACs per inference
    (:func:`layerwise.measure.count_macs`). ``hits[i]`` is True when sample ``i`` is classified
    right, from this very pass.
    """
    net, lw = _network(model)
    if not unit.unit_layers(net):
        raise LayerwiseError("count_executed needs a UnIT-converted model (layerwise.unit.convert; thresholds 0 "
                             "count a plain model exactly)")
    n = len(dataset)
    if n == 0:
        raise LayerwiseError("count_executed: the dataset is empty")
    model.eval()
    unit.reset_counts(net)
    if lw is not None:
        lw.reset_counts()
    step = batch_size
    preds, ys = [], []
    with count_left_alone(net) as left:
        for start in range(0, n, step):
            xs, y = zip(*(dataset[i] for i in range(start, min(n, start + step))))
            preds.append(model(torch.stack(xs).to(device)).argmax(1).cpu())
            ys.append(torch.as_tensor(y))
    hits = torch.cat(preds) == torch.cat(ys)
    counts = combine_layers([unit.total_counts(net), combine_layers(left.values())], samples=n)
    ctrl = int(lw.controller_macs()) if lw is not None else 0
    run = float(lw.macs_executed()) if lw is not None else float(macs)
    return ExecutedMacs(samples=n, macs=int(macs), executed=counts.executed / n + ctrl, run_macs=run,
                        controller_macs=ctrl, counts=counts), hits


def additivity(dense: dict, singles: dict[str, dict], stacked: dict) -> dict:
    """Do the single methods' gains add up in the stack?

    Each argument holds ``executed`` (MACs per inference), ``accuracy`` and ``size_bytes`` of a
    variant (test accuracies). Savings compose multiplicatively if the methods act on independent
    MACs: the predicted stack ratio is the product of the single ratios ``executed_m /
    executed_dense``; accuracy drops are compared with the sum of the single drops. Returns the
    prediction, the measurement and their quotient (``> 1``: the stack saves less than the product
    predicts, e.g. UnIT's zero-weight skips and AdaLayerNet's pruning count the same MACs).
    """
    d_exec, d_acc = float(dense["executed"]), float(dense["accuracy"])
    ratios = {k: float(v["executed"]) / d_exec for k, v in singles.items()}
    predicted = 1.0
    for r in ratios.values():
        predicted *= r
    measured = float(stacked["executed"]) / d_exec
    drops = {k: 100 * (d_acc - float(v["accuracy"])) for k, v in singles.items()}
    stack_drop = 100 * (d_acc - float(stacked["accuracy"]))
    return {"executed_ratio_single": ratios, "executed_ratio_predicted_product": predicted,
            "executed_ratio_stack": measured,
            "stack_over_product": measured / predicted if predicted else None,
            "drop_pt_single": drops, "drop_pt_sum": sum(drops.values()), "drop_pt_stack": stack_drop,
            "rule": "executed ratio vs the product of the single-method ratios (independent savings); "
                    "test accuracy drop vs the sum of the single drops"}
