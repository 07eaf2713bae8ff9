"""Stacking the methods on one model: AdaLayerNet, then UnIT, then LWAC (none of the papers does).

A deployment compresses once, then skips work at run time. :func:`stack_model` applies, each with
its own public API and in this order:

1. **AdaLayerNet** (layer-wise adaptive pruning and quantization): per-layer pruning ratio and bit
   width under a packed-size budget; the model that goes on is the one REBUILT FROM THE PACKED
   FILE (what ships).
2. **UnIT** (unstructured inference-time pruning, Neth et al.): every Linear / Conv layer
   converted, thresholds calibrated on the validation split OF THE COMPRESSED MODEL.
3. **LWAC** (a layer-wise attention calibration framework, Rao et al.): ACUs attached to the UnIT model, relevance,
   costs and lambda calibrated on the validation split of that final model.

Why this order (also in docs/stack.md):

- Compression changes the weights (magnitude masks, B-bit codes, a fine-tune). UnIT's threshold is
  a percentile of ``|x * w|`` and LWAC's relevance (eq. 3) is a gradient norm and an activation
  entropy: both are functions of the weights, so both must be measured after compression, never
  before. AdaLayerNet, in turn, measures its sensitivities (eq. 1) with dense layers; it cannot
  see UnIT's thresholds or LWAC's gates, and it must not need to: it comes first.
- UnIT before LWAC: LWAC decides per input whether a block's result is needed for the
  prediction; that prediction must be the one the deployed model makes, UnIT's skipped MACs
  included. Calibrating LWAC first and then UnIT would leave gates tuned to a model that no
  longer exists. LWAC's per-block costs (eq. 4: MACs, measured latency) are taken last, on the
  final blocks.
- UnIT counts MACs where they run. A bypassed block runs none of its layers, so its UnIT
  counters do not move: the stack's executed MACs are UnIT's counts over the blocks that ran
  (plus a projection shortcut that still runs in a bypass, plus the LWAC controllers' MACs),
  never the product of two separate savings. :mod:`layerwise.stack.accounting` counts them.
- Pruned weights are exact zeros: UnIT's zero-weight test skips them (the same runtime credits
  AdaLayerNet's sparsity), so the first two stages' MAC savings overlap by construction.

Each stage's accuracy bound is against ITS INPUT model on validation (``max_drop`` points), so a
stage in the stack faces the same rule as the method alone on the dense model; whether the
single-method savings and drops add up is measured, not assumed (:func:`additivity`).
"""

from .accounting import ExecutedMacs, additivity, count_executed
from .pipeline import StackConfig, StackError, StackReport, stack_model

__all__ = ["ExecutedMacs", "StackConfig", "StackError", "StackReport", "additivity", "count_executed",
           "stack_model"]
