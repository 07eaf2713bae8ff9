"""Per-layer (and per-group) UnIT thresholds from held-out data, and percentile sweeps.

"A one-time calibration phase that collects statistics of activation-weight products from a
held-out batch to compute per-layer thresholds using a fixed percentile (e.g., 20th)" (paper
section 2.1). Here:

* the statistic is ``|x * w|`` over ALL the layer's MACs on the calibration data whose two
  operands are both nonzero. MACs with a zero operand are skipped anyway (and counted as zero
  skips), so including them would only pull the percentile to 0 in sparse (post-ReLU) layers:
  the percentile ``p`` therefore means "skip about p % of the MACs that would otherwise run";
* each layer keeps the threshold groups it has (``convert(model, groups=G)`` gives every
  layer ``G``; :attr:`threshold_groups`): one percentile per group of ``out // G`` output units.
  ``groups=G`` passed to :func:`calibrate` / :func:`sweep` / :func:`collect_products`
  RE-GROUPS every layer to ``G`` (logged); ``groups=None`` (the default) keeps each layer's own;
* when a layer (group) has more than ``max_samples_per_layer`` (``// G``) such products, a uniform
  sample without replacement is kept (bottom-k of seeded random keys, streamed over batches);
* the percentile is linearly interpolated between order statistics (numpy's default);
* every layer is calibrated on the inputs of the DENSE model: UnIT is disabled on every layer
  during calibration (and the model is in eval mode), and the inputs are captured by forward
  pre-hooks that are always removed afterwards. The previous ``enabled`` flags and train/eval mode
  are restored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..data.batches import BatchKeys, split_batch
from ..errors import LayerwiseError
from .counts import MacCounts
from .convert import per_layer_counts, reset_counts, total_counts, unit_layers
from .layers import UnITLinear
from .reference import DEFAULT_CHUNK_ELEMS, conv_columns

log = logging.getLogger(__name__)


@dataclass
class SweepPoint:
    """One percentile of a :func:`sweep`: accuracy and MACs with the thresholds it set."""

    percentile: float
    accuracy: float
    macs_total: int
    macs_executed: int
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    per_layer: dict[str, MacCounts] = field(default_factory=dict)

    @property
    def skipped_fraction(self) -> float:
        return 1.0 - self.macs_executed / self.macs_total if self.macs_total else 0.0

    def to_json(self) -> dict:
        return {"percentile": self.percentile, "accuracy": self.accuracy,
                "macs_total": self.macs_total, "macs_executed": self.macs_executed,
                "thresholds": self.thresholds,
                "per_layer": {k: v.to_json() for k, v in self.per_layer.items()}}


class _BottomK:
    """Uniform sample without replacement of a stream: the k values with the smallest iid
    uniform keys. Candidates are filtered by the current k-th key and trimmed with one ``topk``
    only when twice k have piled up, so the cost stays near one pass over the stream."""

    def __init__(self, k: int, generator: torch.Generator) -> None:
        self.k = k
        self.gen = generator
        self.values: list[Tensor] = []
        self.keys: list[Tensor] = []
        self.size = 0
        self.kth = float("inf")  # keys >= kth can never enter the sample again
        self.seen = 0

    def add(self, values: Tensor) -> None:
        values = values.detach().to("cpu", torch.float32).reshape(-1)
        if values.numel() == 0:
            return
        self.seen += values.numel()
        keys = torch.rand(values.numel(), generator=self.gen)
        if self.kth != float("inf"):
            sel = keys < self.kth
            values, keys = values[sel], keys[sel]
        self.values.append(values)
        self.keys.append(keys)
        self.size += values.numel()
        if self.size > 2 * self.k:
            self._trim()

    def _trim(self) -> None:
        values = torch.cat(self.values) if self.values else torch.empty(0)
        keys = torch.cat(self.keys) if self.keys else torch.empty(0)
        if values.numel() > self.k:
            idx = torch.topk(keys, self.k, largest=False, sorted=False).indices
            values, keys = values[idx], keys[idx]
            self.kth = float(keys.max())
        self.values, self.keys, self.size = [values], [keys], values.numel()

    def sample(self) -> Tensor:
        """The sampled values (all of them when the stream held at most k)."""
        self._trim()
        return self.values[0]


def _percentile(values: Tensor, q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default method); 0.0 for no
    values (a layer whose calibration inputs were all zero: see :func:`collect_products`).
    ``values`` sorted ascending (as :func:`collect_products` returns them) are not sorted again."""
    if values.numel() == 0:
        return 0.0
    s = values.to(torch.float64)
    if s.numel() > 1 and not bool((s[1:] >= s[:-1]).all()):
        s = s.sort().values
    pos = q / 100.0 * (s.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, s.numel() - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def _group_bounds(out: int, groups: int) -> list[tuple[int, int]]:
    per = out // groups
    return [(g * per, (g + 1) * per) for g in range(groups)]


def _linear_products(layer: nn.Module, x: Tensor, samplers: list[_BottomK],
                     chunk_elems: int) -> None:
    w = layer.weight.detach()
    x2 = x.detach().reshape(-1, w.shape[1])
    ax, x_nz = x2.abs(), x2 != 0
    for (o0, o1), sampler in zip(_group_bounds(w.shape[0], len(samplers)), samplers):
        wg = w[o0:o1]
        aw, w_nz = wg.abs(), wg != 0
        n_c = max(1, chunk_elems // wg.numel())
        for n0 in range(0, x2.shape[0], n_c):
            prods = ax[n0:n0 + n_c, None, :] * aw[None]                  # [nc, og, in]
            mask = x_nz[n0:n0 + n_c, None, :] & w_nz[None]
            sampler.add(prods[mask])


def _conv_products(layer: nn.Module, x: Tensor, samplers: list[_BottomK],
                   chunk_elems: int) -> None:
    w = layer.weight.detach()
    cols, w2, _ = conv_columns(x.detach(), w, stride=layer.stride, padding=layer.padding,
                               dilation=layer.dilation, groups=layer.groups,
                               padding_mode=layer.padding_mode)
    b, _, rdim, npos = cols.shape
    out = w2.shape[0]
    og_conv = out // layer.groups
    og_thr = out // len(samplers)
    per_o = rdim * npos
    o_c = max(1, chunk_elems // per_o)
    o0 = 0
    while o0 < out:
        # a chunk never crosses a conv-group or threshold-group boundary
        o1 = min(o0 + o_c, (o0 // og_conv + 1) * og_conv, (o0 // og_thr + 1) * og_thr)
        grp, sampler = o0 // og_conv, samplers[o0 // og_thr]
        wc = w2[o0:o1]
        aw, w_nz = wc.abs()[None, :, :, None], (wc != 0)[None, :, :, None]
        b_c = max(1, chunk_elems // (per_o * (o1 - o0)))
        for b0 in range(0, b, b_c):
            xs = cols[b0:b0 + b_c, grp]                                   # [bc, R, P]
            prods = xs.abs()[:, None] * aw                                # [bc, oc, R, P]
            mask = (xs != 0)[:, None] & w_nz
            sampler.add(prods[mask])
        o0 = o1


@contextmanager
def _dense_capture(model: nn.Module, hooks: dict[str, Callable]) -> Iterator[None]:
    """UnIT disabled everywhere, eval mode, forward pre-hooks; everything restored on exit."""
    layers = dict(unit_layers(model))
    flags = {n: m.enabled for n, m in layers.items()}
    was_training = model.training
    handles = []
    try:
        for n, m in layers.items():
            m.enabled = False
        model.eval()
        for name, fn in hooks.items():
            handles.append(layers[name].register_forward_pre_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()
        for n, m in layers.items():
            m.enabled = flags[n]
        model.train(was_training)


def _batch_input(batch, device: torch.device, keys: BatchKeys | None = None):
    """The input of one batch (tensor, ``(x, y)`` tuple, or dict read through ``keys``), on
    ``device``: the shared reader :func:`layerwise.data.batches.split_batch`."""
    x, _ = split_batch(batch, keys or BatchKeys())
    return x.to(device)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _layer_groups(layers, groups: int | None) -> dict[str, int]:
    """Threshold groups per layer: each layer's own (``None``) or ``groups`` for all (logged)."""
    if groups is None:
        return {name: m.threshold_groups for name, m in layers}
    if groups < 1:
        raise LayerwiseError(f"groups must be >= 1, got {groups}")
    for name, m in layers:
        if m.weight.shape[0] % groups:
            raise LayerwiseError(
                f"{groups} threshold groups do not divide the {m.weight.shape[0]} outputs of "
                f"layer {name!r}; pick a group count that divides every layer's outputs, or "
                "pass groups=None to keep each layer's own")
    changed = [f"{name} {m.threshold_groups} -> {groups}" for name, m in layers
               if m.threshold_groups != groups]
    if changed:
        log.info("UnIT calibration: re-grouping thresholds (groups=%d given): %s", groups,
                 ", ".join(changed))
    return {name: groups for name, _ in layers}


def collect_products(model: nn.Module, loader: Iterable, *, groups: int | None = None,
                     max_batches: int | None = None, max_samples_per_layer: int = 2_000_000,
                     seed: int = 0, chunk_elems: int = DEFAULT_CHUNK_ELEMS,
                     keys: BatchKeys | None = None) -> dict[str, list[Tensor]]:
    """Sampled ``|x * w|`` of every UnIT layer's nonzero-operand MACs: ``{name: [per group]}``,
    each group's sample sorted ascending.

    Pass the result as ``products=`` to :func:`calibrate` and :func:`sweep` to calibrate the same
    model on the same data at several percentiles without collecting again (collection runs the
    layer's every MAC; the thresholds are the same as collecting anew with the same seed).

    ``loader`` is any iterable of batches (a DataLoader, map-style or iterable), read one batch at
    a time: tensors, ``(x, y)`` tuples, or dicts whose input ``keys.input_key`` names.
    ``groups=None`` keeps each layer's own threshold groups; a number re-groups every layer.
    Raises :class:`LayerwiseError` when the model has no UnIT layer, the loader is empty, or a
    layer was never reached. A layer reached only by all-zero inputs (every MAC has a zero
    operand, e.g. after an upstream FATReLU) gets no products and threshold 0 (logged).
    """
    layers = unit_layers(model)
    if not layers:
        raise LayerwiseError(
            "the model has no UnIT layer to calibrate; call layerwise.unit.convert(model) first")
    per_layer_groups = _layer_groups(layers, groups)
    most = max(per_layer_groups.values())
    if max_samples_per_layer < most:
        raise LayerwiseError(
            f"max_samples_per_layer={max_samples_per_layer} leaves no sample for some of the "
            f"{most} groups; pass at least {most}")
    samplers: dict[str, list[_BottomK]] = {}
    hooks: dict[str, Callable] = {}
    reached: set[str] = set()
    for i, (name, m) in enumerate(layers):
        g = per_layer_groups[name]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        samplers[name] = [_BottomK(max_samples_per_layer // g, gen) for _ in range(g)]
        fn = _linear_products if isinstance(m, UnITLinear) else _conv_products

        def hook(mod, args, _fn=fn, _s=samplers[name], _name=name):
            reached.add(_name)
            _fn(mod, args[0], _s, chunk_elems)

        hooks[name] = hook

    device = _model_device(model)
    n_batches = 0
    with _dense_capture(model, hooks), torch.no_grad():
        for batch in loader:
            if max_batches is not None and n_batches >= max_batches:
                break
            model(_batch_input(batch, device, keys))
            n_batches += 1
    if n_batches == 0:
        raise LayerwiseError(
            "the calibration loader yielded no batches; pass a validation split with at least "
            "1 sample")
    out: dict[str, list[Tensor]] = {}
    for name, ss in samplers.items():
        for g, s in enumerate(ss):
            where = f"group {g} of layer {name!r}" if len(ss) > 1 else f"layer {name!r}"
            if s.seen == 0 and name in reached:
                # reached, but every MAC has a zero operand (e.g. an upstream FATReLU zeroed the
                # whole input): zero-skipping already skips all of them, so the threshold is 0,
                # the exact layer (the conservative choice; UnIT changes nothing there)
                log.warning("UnIT calibration: %s saw only zero inputs in %d batches: threshold 0 (its "
                            "zero MACs are skipped anyway)", where, n_batches)
            elif s.seen == 0:
                raise LayerwiseError(
                    f"{where} was never reached in {n_batches} calibration batches (not on the "
                    "forward path of these inputs); pass a validation split with at least 1 sample "
                    "that reaches it, or more batches")
        out[name] = [s.sample().sort().values for s in ss]
    return out


def _given_products(model: nn.Module, products: dict[str, list[Tensor]], groups: int | None
                    ) -> dict[str, list[Tensor]]:
    """``products`` checked against the model's UnIT layers and threshold groups."""
    want = {name: groups if groups is not None else m.threshold_groups  # as _layer_groups, unlogged
            for name, m in unit_layers(model)}
    missing = sorted(set(want) - set(products))
    extra = sorted(set(products) - set(want))
    if missing or extra:
        raise LayerwiseError(
            f"products= does not fit this model (missing layers {missing}, unknown layers {extra}); "
            "collect them with collect_products(model, loader) on this very model")
    wrong = [f"{n}: {len(products[n])} groups, the layer has {g}" for n, g in want.items()
             if len(products[n]) != g]
    if wrong:
        raise LayerwiseError(f"products= has the wrong threshold groups ({'; '.join(wrong)}); collect "
                             "them with the same groups= as this calibration")
    return products


def _check_percentile(p: float) -> float:
    p = float(p)
    if not 0.0 < p < 100.0:
        raise LayerwiseError(f"percentile must be strictly between 0 and 100, got {p}")
    return p


def _apply(model: nn.Module, products: dict[str, list[Tensor]], percentile: float
           ) -> dict[str, Tensor]:
    layers = dict(unit_layers(model))
    thresholds = {}
    for name, per_group in products.items():
        t = torch.tensor([_percentile(v, percentile) for v in per_group], dtype=torch.float32)
        layers[name].set_threshold(t)
        thresholds[name] = layers[name].unit_threshold.detach().clone()
    return thresholds


def calibrate(model: nn.Module, loader: Iterable, *, percentile: float = 20.0,
              groups: int | None = None,
              max_batches: int | None = None, max_samples_per_layer: int = 2_000_000,
              seed: int = 0, keys: BatchKeys | None = None,
              products: dict[str, list[Tensor]] | None = None) -> dict[str, Tensor]:
    """Set every UnIT layer's threshold to the ``percentile``-th percentile of ``|x * w|``.

    See the module docstring for what is sampled. ``groups=None`` (default) keeps each layer's
    own threshold groups (as :func:`~layerwise.unit.convert` set them); a number re-groups every
    layer (logged). The thresholds are stored in each layer's ``unit_threshold`` buffer (shape
    ``[groups]``, so they save with the state_dict) and returned by layer name. Raises
    :class:`LayerwiseError` for a percentile outside (0, 100), an empty
    loader, or a layer the loader never reaches (one reached only by zeros gets threshold 0).
    ``products`` from :func:`collect_products` on this model are used instead of collecting
    (``loader`` and the sampling arguments are then not read).
    """
    percentile = _check_percentile(percentile)
    if products is None:
        products = collect_products(model, loader, groups=groups, max_batches=max_batches,
                                    max_samples_per_layer=max_samples_per_layer, seed=seed, keys=keys)
    return _apply(model, _given_products(model, products, groups), percentile)


def sweep(model: nn.Module, loader_val: Iterable, evaluate_fn: Callable[[nn.Module], float],
          percentiles: Iterable[float], *, groups: int | None = None,
          max_batches: int | None = None,
          max_samples_per_layer: int = 2_000_000, seed: int = 0,
          keys: BatchKeys | None = None,
          products: dict[str, list[Tensor]] | None = None) -> list[SweepPoint]:
    """Calibrate at each percentile on ``loader_val`` and score with ``evaluate_fn(model)``.

    The products are collected once (calibration is dense, so every percentile sees the same
    statistics and this equals calling :func:`calibrate` at each; ``groups`` as there: ``None``
    keeps each layer's own). For each point UnIT is enabled
    on every layer and the counters are reset before ``evaluate_fn`` runs, so ``macs_total`` /
    ``macs_executed`` / ``per_layer`` are what ``evaluate_fn``'s forward passes executed; the
    caller decides which split it evaluates. Afterwards the model stays calibrated at the LAST
    percentile, its counters hold the last evaluation, and the previous ``enabled`` flags are
    restored. ``products`` as in :func:`calibrate`.
    """
    ps = [_check_percentile(p) for p in percentiles]
    if not ps:
        raise LayerwiseError("sweep needs at least one percentile, e.g. [10, 20, 40]")
    if products is None:
        products = collect_products(model, loader_val, groups=groups, max_batches=max_batches,
                                    max_samples_per_layer=max_samples_per_layer, seed=seed, keys=keys)
    products = _given_products(model, products, groups)
    layers = unit_layers(model)
    flags = {n: m.enabled for n, m in layers}
    points = []
    try:
        for p in ps:
            thresholds = _apply(model, products, p)
            for _, m in layers:
                m.enabled = True
            reset_counts(model)
            accuracy = float(evaluate_fn(model))
            tot = total_counts(model)
            points.append(SweepPoint(
                percentile=p, accuracy=accuracy, macs_total=tot.total,
                macs_executed=tot.executed,
                thresholds={k: v.tolist() for k, v in thresholds.items()},
                per_layer=per_layer_counts(model)))
    finally:
        for n, m in layers:
            m.enabled = flags[n]
    return points
