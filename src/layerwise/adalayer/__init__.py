"""AdaLayerNet: per-layer pruning ratio and bit width under a size budget, with a real packed file.

The AdaLayerNet paper (layer-wise adaptive pruning and quantization; docs/adalayer.md) gives six equations:

1. I_l = alpha * A_l + beta * F_l                      importance        (:mod:`.importance`, :mod:`.hessian`)
2. P_l = gamma * (1 - I_l) + delta * R_l                pruning ratio     (:mod:`.allocation`)
3. B_l = B_max - lambda * (1 - I_l)                     bit width         (:mod:`.allocation`)
4. W_l_opt = Q_{B_l}((1 - P_l) ⊙ W_l)                   compression       (:mod:`.quantize`, :mod:`.compress`)
5. L = L_CE + eta * sum_l (1 - I_l) * ||W_l||_1         fine-tune loss    (:mod:`.compress`)
6. max accuracy s.t. sum_l Params(W_l_opt) <= M_budget  budget            (:mod:`.budget`)

and reports sizes and latencies it calls "synthetic". Here the size is the bytes of a packed file
(:mod:`.packed`, :mod:`.bitpack`) from which a loader rebuilds a runnable model that equals the
fake-quant model exactly, and latency is measured.

Where the paper is ambiguous, and what this package does (also in docs/adalayer.md):

- **A_l** ("normalized accuracy contribution"): measured on the validation split (never test) by
  compressing only layer l at a probe setting (default: pruned 80 % by magnitude, 2 bits); the
  damage s_l is the increase of validation LOSS (continuous; the accuracy drop on a small val split
  is 0 for most layers at a mild probe), clipped at 0, and A_l = log1p(s_l/m)/log1p(max s/m) with
  m the median positive s (the raw s span 3 orders of magnitude; s/max flattens all but 2 layers
  of resnet20 to ~0). Chosen on measured evidence (docs/adalayer.md, "Choosing the probe");
  ``probe_metric="accuracy"`` and ``normalisation="max"`` give the literal reading.
- **F_l** ("computational cost (FLOPS)"): the layer's share of the compressible layers' MACs.
- **Sign of beta**: eq. (1) adds F to I, which would PROTECT costly layers; the paper's text and
  the issue want costly layers compressed harder, so the default is beta = -1 (alpha = 1), and I
  is clipped to [0, 1].
- **R_l** ("redundancy via the layer-wise weight variance"): R_l = 1 - Var(W_l) / max_k Var(W_k).
- **P_l clip**: [0, p_max] with p_max = 0.95; **B_l rounding**: half up, then [B_min, B_max] = [2, 8]
  (the same 2-8 bits every rival may use).
- **(1 - P) ⊙ W** in eq. (4): a magnitude mask keeping the largest (1 - P_l) fraction of |W_l|;
  Q_B: symmetric uniform, per output channel, codes -(2^(B-1)-1)..2^(B-1)-1, scale max|w|/qmax
  stored as fp16 (so the dequantised weight is reproducible bit for bit).
- **Eq. (5)**: ||W_l||_1 of the masked float weights, masks fixed, fake-quant with a
  straight-through estimator (gradient passes to the kept weights only); eta calibrated on the first
  fine-tune batch so the term is 10 % of the loss there (:class:`.compress.Eq5Regularizer`; its
  measured share over the fine-tune is reported), or a fixed eta with ``eta_share=0``.
- **Eq. (6)**: the budget is on the packed file's bytes, not a parameter count: packed <= F *
  dense fp32 ``torch.save`` bytes. gamma, delta and lambda are scaled together by one knob t,
  and bisection finds the least t that fits, measuring the real packed size each step.
- **What is compressed**: Conv1d/2d/3d and Linear weights. BatchNorm, biases and unsupported layers
  (LSTM/GRU, transposed conv) are stored as fp16 passthrough tensors (listed, counted in the size);
  the fake-quant model rounds them to fp16 too so the equality is exact.
- **Rivals** (:mod:`.rivals`, :mod:`.hawq`): uniform (Table 2, "fixed-rate pruning &
  quantization"), uniform with the first and output layers at 8 bits, global magnitude pruning plus
  uniform bits, and a HAWQ-V3-style integer program, all at the same packed size, fine-tuned with
  the same recipe, candidates ranked by validation accuracy after their fine-tune.
- **Structured mode** (not in the paper): whole channels removed at P_l by Torch-Pruning's
  dependency graph; a coupled group takes its members' smallest P_l; the layers producing the
  model output are found from the graph (:mod:`.graph`) and never pruned.

On a user's own model and DataLoader all of it is one call, ``module, report = apply(model,
calib_loader, budget=...)`` (:mod:`.api`); ``load_packed(path, model=module_of_same_architecture)``
reloads its packed file without the model registry, and :func:`export_onnx_int8` writes an int8 QDQ
ONNX file that onnxruntime runs (:mod:`.onnx_check`).
"""

from .allocation import allocate, bit_width, pruning_ratio, redundancy
from .bitpack import decode_mask, encode_mask, pack_signed, unpack_signed
from .budget import BudgetError, BudgetResult, fit_budget
from .compress import attach_fake_quant, bake, make_masks, sparsity_regularizer
from .config import AdaLayerConfig, Allocation, LayerPlan
from .importance import layer_importance, mac_shares, normalise
from .api import AdaLayerReport, apply
from .onnx_check import OnnxCheck, OnnxInt8, export_and_check, export_onnx_int8, onnx_accuracy
from .packed import (Architecture, PackedFileError, PackedModel, encode_packed, load_packed, load_packed_bytes,
                     write_packed)
from .graph import execution_order, output_layers
from .pipeline import CompressionResult, analyse, compress_model, compress_plan, compress_uniform, uniform_size_fn
from .quantize import FakeQuantize, QuantizedWeight, dequantize, fake_quantize, magnitude_mask, quantize_weight
from .structured import StructuredError, prune_channels
from .targets import find_targets
from .uniform import UniformCandidate, uniform_candidates

__all__ = [
    "AdaLayerReport", "apply", "OnnxInt8", "export_onnx_int8", "onnx_accuracy",
    "AdaLayerConfig", "Allocation", "Architecture", "BudgetError", "BudgetResult", "CompressionResult",
    "FakeQuantize", "LayerPlan", "OnnxCheck", "PackedFileError", "PackedModel", "QuantizedWeight", "StructuredError",
    "UniformCandidate", "allocate", "analyse", "attach_fake_quant", "bake", "bit_width", "compress_model",
    "compress_plan", "compress_uniform", "execution_order", "output_layers", "decode_mask", "dequantize", "encode_mask", "encode_packed", "export_and_check",
    "fake_quantize", "find_targets", "fit_budget", "layer_importance", "load_packed", "load_packed_bytes",
    "mac_shares", "magnitude_mask", "make_masks", "normalise", "pack_signed", "prune_channels", "pruning_ratio",
    "quantize_weight", "redundancy", "sparsity_regularizer", "uniform_candidates", "uniform_size_fn",
    "unpack_signed", "write_packed",
]
