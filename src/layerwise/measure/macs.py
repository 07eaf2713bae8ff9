"""Multiply-accumulate counts (MACs) of one forward pass, in total and per module.

Counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which derives FLOPs from the
shapes of the aten ops that actually run, with 2 FLOPs per MAC; ``MACs = FLOPs // 2``.

Conventions (the same as the counter's formulas, and the hand formulas in the tests):

- Conv (1-D/2-D/3-D): ``out_elements * (C_in / groups) * prod(kernel)``; bias not counted.
- Linear: ``batch * in_features * out_features`` (every leading dim counts as batch); bias not
  counted. ``bmm``/``matmul``/attention likewise from their matrix shapes.
- LSTM: per layer, per direction, per time step and per sequence ``4 * H * (I + H)`` (input and
  recurrent gate matmuls; ``I`` is that layer's input size, ``2H`` above a bidirectional layer).
  GRU: ``3 * H * (I + H)``; plain RNN: ``H * (I + H)``. With ``proj_size`` P the recurrent term
  is ``H * P`` per gate plus ``H * P`` for the projection. Elementwise gate arithmetic
  (sigmoid, tanh, products) is not counted, nor are BatchNorm, activations or pooling.
- On x86 CPUs ``nn.LSTM`` runs as one ``aten.mkldnn_rnn_layer`` op per layer and direction, and on
  CUDA as ``aten._cudnn_rnn``; neither has a formula in torch, so both are registered here through
  ``custom_mapping``. GRU and RNN on CPU decompose into ``addmm``, which the counter knows.

Attribution: every MAC is credited to the innermost module (by its ``named_modules()`` name)
that was running when it executed, so ``sum(per_module.values()) == total``. ``per_module``
holds every leaf module (0 for a leaf that does no matmul/conv, such as ReLU) and any non-leaf
module that computes something itself (e.g. ``""`` for a matmul in the root's ``forward``). A
module reachable under several names is credited to its first ``named_modules()`` name.

Limits, said plainly: masked or pruned weights count as dense (zeros are multiplied too), and
after ``torch.ao.quantization.quantize_dynamic`` the quantized ops have no formula and count as 0:
the total is then 0 and ``source`` says so; count the float model instead.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ._util import call, eval_mode, module_hooks

SOURCE = "torch.utils.flop_counter.FlopCounterMode (MACs = FLOPs // 2; +RNN formulas for aten.mkldnn_rnn_layer, aten._cudnn_rnn)"


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass on the example input.

    ``per_module`` maps ``named_modules()`` names to the MACs executed by that module itself
    (not its children); ``by_op`` maps aten op names to MACs.
    """

    total: int
    per_module: dict[str, int]
    source: str
    by_op: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"total": self.total, "per_module": dict(self.per_module), "by_op": dict(self.by_op),
                "source": self.source}


def _rows(input_shape: Any) -> int:
    # every dim but the feature dim is a (time x batch) row: (T, B, I), (B, T, I) or packed (sum, I)
    return math.prod(input_shape[:-1])


def _mkldnn_rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """One layer, one direction: rows * (G*H*I + G*H*H) MACs, G = 4 for LSTM."""
    macs = _rows(input_shape) * (math.prod(w_ih_shape) + math.prod(w_hh_shape))
    return 2 * macs


def _cudnn_rnn_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    """All layers and directions: rows * (sum of the 2-D weight matrices' sizes) MACs."""
    per_row = sum(math.prod(s) for s in weight_shapes if len(s) == 2)
    return 2 * _rows(input_shape) * per_row


def rnn_flop_formulas() -> dict:
    """The ``custom_mapping`` for FlopCounterMode: RNN ops that torch has no formula for."""
    mapping: dict = {}
    aten = torch.ops.aten
    if hasattr(aten, "mkldnn_rnn_layer"):
        mapping[aten.mkldnn_rnn_layer] = _mkldnn_rnn_layer_flop
    if hasattr(aten, "_cudnn_rnn"):
        mapping[aten._cudnn_rnn] = _cudnn_rnn_flop
    return mapping


@contextlib.contextmanager
def _attribute(model: torch.nn.Module, counter: FlopCounterMode) -> Iterator[dict[str, int]]:
    """Credit the counter's FLOPs to the innermost running module, using forward hooks.

    The counter's running total is read when a module starts and ends; what a module did minus
    what its children did is its own share. Hooks are always removed.
    """
    own: dict[str, int] = defaultdict(int)
    stack: list[list] = []  # [name, total at start, total done by children]

    def pre(name: str):
        def hook(mod, args):
            stack.append([name, counter.get_total_flops(), 0])
        return hook

    def post(name: str):
        def hook(mod, args, out):
            # pop down to this module's frame (robust to a child that raised and never popped)
            while stack:
                frame = stack.pop()
                if frame[0] == name:
                    break
            else:
                return
            inclusive = counter.get_total_flops() - frame[1]
            own[name] += inclusive - frame[2]
            if stack:
                stack[-1][2] += inclusive
        return hook

    with module_hooks(dict(model.named_modules()), pre, post):
        yield own


def _is_quantized(model: torch.nn.Module) -> bool:
    return any(type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized"))
               for m in model.modules())


def count_macs(model: torch.nn.Module, example_input: Any) -> MacCount:
    """Count the MACs of ``model`` on ``example_input`` (a tensor, a tuple of positional inputs,
    or a dict of keyword inputs), in eval mode under ``torch.no_grad``.

    MACs scale with the batch: pass a batch-1 example for per-inference MACs. See the module
    docstring for the conventions and the limits (masked weights count as dense; dynamically
    quantized models count 0).
    """
    counter = FlopCounterMode(display=False, custom_mapping=rnn_flop_formulas())
    with eval_mode(model), torch.no_grad(), _attribute(model, counter) as own, counter:
        call(model, example_input)
    total = counter.get_total_flops() // 2
    by_op = {str(op).removeprefix("aten."): int(f) // 2
             for op, f in counter.get_flop_counts().get("Global", {}).items()}
    own = {name: f // 2 for name, f in own.items()}
    per_module: dict[str, int] = {}
    for name, mod in model.named_modules():
        is_leaf = next(mod.children(), None) is None
        if is_leaf or own.get(name, 0):
            per_module[name] = own.get(name, 0)
    source = SOURCE
    if total == 0 and _is_quantized(model):
        source += "; quantized modules have no formula and count as 0: count the float model instead"
    return MacCount(total=int(total), per_module=per_module, source=source, by_op=by_op)
