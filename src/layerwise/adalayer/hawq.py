"""The ``hawq-ilp`` rival: a HAWQ-V3-style integer program over per-layer (pruning ratio, bits).

HAWQ-V3 (Yao et al., "HAWQ-V3: Dyadic Neural Network Quantization", ICML 2021, arXiv 2011.10680)
picks each layer's bit width by an integer linear program: minimise the summed second-order
sensitivity sum_l Omega_l(choice_l) subject to a model-size budget, one choice per layer, with
Omega_l = Tr(H_l) / n_l * ||Q(W_l) - W_l||^2 (Hessian trace by Hutchinson, :mod:`.hessian`).
Here the choices are the pairs (P, B) of ratios ``RATIOS`` (up to p_max) and bits b_min..b_max,
the perturbation is that of eq. (4) itself, Q_B(mask_P ⊙ W) - W, and the size of a choice is its
exact share of the packed file: the bit-packed codes of the kept weights, the cheapest sparsity
encoding of its mask (:func:`.bitpack.encode_mask`) and the fp16 scales. The metadata and the
passthrough tensors are a constant, measured by one real packing; the program is solved with
``scipy.optimize.milp`` (HiGHS), the real packed size is checked, and while it exceeds the target
the budget left to the layers is lowered by the excess and the program solved again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import LayerwiseError
from .bitpack import encode_mask, packed_length
from .hessian import hutchinson_traces
from .quantize import magnitude_mask, quantize_weight

log = logging.getLogger(__name__)

RATIOS = (0.0, 0.25, 0.5, 0.625, 0.75, 0.85, 0.9, 0.95)


@dataclass
class IlpChoice:
    prune_ratio: dict[str, float]
    bits: dict[str, int]
    objective: float  # sum of Omega_l at the chosen options
    predicted_bytes: int
    traces: dict[str, float]
    solves: int

    def to_json(self) -> dict:
        return {"layer_prune_ratio": self.prune_ratio, "layer_bits": self.bits, "objective": self.objective,
                "predicted_bytes": self.predicted_bytes, "hessian_traces": self.traces, "solves": self.solves}


def layer_options(weight: torch.Tensor, ratios, bits_range) -> list[tuple[float, int, float, int]]:
    """(ratio, bits, ||Q_B(mask ⊙ W) - W||^2, bytes of codes + mask + scales) for every option."""
    w = weight.detach().float()
    out = []
    for r in ratios:
        mask = magnitude_mask(w, r)
        enc_bytes = len(encode_mask(mask.cpu().numpy()).data)
        nnz = int(mask.sum())
        for b in bits_range:
            q = quantize_weight(w, mask, b).dequantize()
            out.append((float(r), int(b), float(((q - w) ** 2).sum()), packed_length(nnz, b) + enc_bytes
                        + 2 * w.shape[0]))
    return out


def solve_ilp(costs: list[list[float]], sizes: list[list[int]], budget: float) -> list[int]:
    """Index of the chosen option per layer minimising sum cost s.t. sum size <= budget (HiGHS MILP)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    n_var = sum(len(c) for c in costs)
    c = np.concatenate([np.asarray(x, dtype=float) for x in costs])
    top = float(np.abs(c).max()) if c.size else 0.0
    if top > 0:  # HiGHS' tolerances are absolute: bring the objective to O(1)
        c = c / top
    one = np.zeros((len(costs), n_var))
    start = 0
    for l, opts in enumerate(costs):
        one[l, start:start + len(opts)] = 1.0
        start += len(opts)
    size_row = np.concatenate([np.asarray(s, dtype=float) for s in sizes])[None, :]
    res = milp(c, constraints=[LinearConstraint(one, 1.0, 1.0), LinearConstraint(size_row, -np.inf, budget)],
               integrality=np.ones(n_var), bounds=Bounds(0.0, 1.0))
    if res.x is None:
        raise LayerwiseError(f"the HAWQ integer program has no solution within {budget:,.0f} bytes for the layers "
                             f"({res.message}): pass a larger --budget")
    picks, start = [], 0
    for opts in costs:
        picks.append(int(np.argmax(res.x[start:start + len(opts)])))
        start += len(opts)
    return picks


def ilp_allocate(targets: list[tuple[str, nn.Module]], size_fn, target_bytes: int, cost_of, *, b_min: int,
                 b_max: int, p_max: float, max_solves: int = 6) -> tuple[dict, dict, float, int, int]:
    """Per-layer (P, B) minimising sum_l cost_of(name, ratio, bits, ||Q - W||^2) with the packed
    file <= target_bytes: (prune_ratio, bits, objective, predicted bytes, solves).

    ``size_fn(prune_ratio, bits)`` gives the real packed bytes of a plan (checked after each solve).
    """
    ratios = [r for r in RATIOS if r <= p_max]
    bits_range = list(range(b_min, b_max + 1))
    opts = {n: layer_options(m.weight, ratios, bits_range) for n, m in targets}
    names = [n for n, _ in targets]
    costs = [[cost_of(n, o[0], o[1], o[2]) for o in opts[n]] for n in names]
    sizes = [[o[3] for o in opts[n]] for n in names]
    # the constant part of the file: one real packing minus its layers' share
    ref = {n: opts[n][-1] for n in names}
    overhead = size_fn({n: ref[n][0] for n in names}, {n: ref[n][1] for n in names}) - sum(o[3] for o in ref.values())
    layer_budget = float(target_bytes - overhead)
    for solve in range(1, max_solves + 1):
        picks = solve_ilp(costs, sizes, layer_budget)
        ratio = {n: opts[n][k][0] for n, k in zip(names, picks)}
        bits = {n: opts[n][k][1] for n, k in zip(names, picks)}
        real = size_fn(ratio, bits)
        if real <= target_bytes:
            return (ratio, bits, float(sum(costs[i][k] for i, k in enumerate(picks))),
                    int(sum(sizes[i][k] for i, k in enumerate(picks)) + overhead), solve)
        layer_budget -= real - target_bytes
        log.info("integer program: packed %d bytes > target %d, solving again with %d bytes for the layers", real,
                 target_bytes, layer_budget)
    raise LayerwiseError(f"the integer program did not fit {target_bytes:,} bytes after {max_solves} solves: "
                         "pass a larger --budget")


def hawq_ilp(model: nn.Module, targets: list[tuple[str, nn.Module]], val, size_fn, target_bytes: int, *,
             b_min: int, b_max: int, p_max: float, samples: int = 8, batches: int = 2, device: str = "cpu",
             seed: int = 0, max_solves: int = 6) -> IlpChoice:
    """Per-layer (P, B) minimising sum_l Tr(H_l)/n_l * ||Q - W||^2 with the packed file <= target_bytes."""
    traces = hutchinson_traces(model, targets, val, samples=samples, batches=batches, device=device, seed=seed)
    numel = {n: m.weight.numel() for n, m in targets}
    ratio, bits, objective, predicted, solves = ilp_allocate(
        targets, size_fn, target_bytes, lambda n, r, b, err: max(traces[n], 0.0) / numel[n] * err,
        b_min=b_min, b_max=b_max, p_max=p_max, max_solves=max_solves)
    return IlpChoice(ratio, bits, objective, predicted, traces, solves)
