"""ELA: remove redundant layer-attention (MRLA) operations during training.

Li & Huang, "Enhancing Layer Attention Efficiency through Pruning Redundant Retrievals"
(Li and Huang, "Enhancing Layer Attention Efficiency through Pruning Redundant Retrievals"). During a few windows of epochs each attention layer's
distribution over the earlier layers of its stage is captured (:mod:`.capture`), the KL divergence
between adjacent layers is computed with eq. (8)'s epsilon padding (:mod:`.kl`) and averaged over
the window, and at the window's end Algorithm 1 (EBQM, :mod:`.ebqm`) picks the layers to skip;
skips accumulate over windows (:mod:`.schedule`). :func:`train_ela` runs it inside
``layerwise.train.train``. The models are ``resnet{20,56,110}-ela`` (= MRLA-B) in
``layerwise.models.mrla``, or any ResNet-like model given its stages:
``net, report = ela.apply(model, train_loader, stages=[list(model.layer1), ...])`` attaches MRLA
layer attention (:func:`attach_layer_attention`) and trains it with the skipping, reading the
user's DataLoaders.

What a skipped layer does: its block runs as a plain bottleneck. Its attention operation is removed
entirely (no Q, K or V is computed, no output, no BN), and nothing is appended to the stage's
key/value lists, so the later layers of the stage retrieve only the keys and values of the layers
that were NOT skipped (and their distributions are one entry shorter per skipped predecessor).

Where the paper is ambiguous, and what we chose (also in docs/ela.md):

1. gamma (the quantile of Algorithm 1) has no value in the paper: default 0.5.
2. Which KL belongs to which layer: D_KL(P_l || P_{l+1}) (eq. 8) is the redundancy of layer l+1,
   the later one (the one that adds little over its predecessor); the first layer of a stage has
   none and is never skipped. After a skip, a layer is compared with the previous NOT-skipped layer
   of its stage, whose distribution is then again exactly one entry shorter, so eq. (8) applies.
3. KL between stages: none; MRLA-B's key/value lists reset at each stage, so distributions of
   different stages are over different layers. EBQM pools the KL values of all stages (Algorithm 1
   takes "KL divergences from layer 1 to layer l": the whole network).
4. "Averaged over the window": each epoch's distribution is the mean over the epoch's batches and
   the heads; its KL values are then averaged over the epochs of the window.
5. Algorithm 1 loops "for epoch e = 1 to E" without saying when it acts; the experiments section
   gives windows (epochs 1-3, 45-48, 91-93 of 180 on CIFAR): skipping happens at the end of each
   window and is cumulative. Shorter runs scale those windows (config.paper_windows).
6. Algorithm 1 calls the threshold both epsilon (parameters) and mu (step 7): it is mu.
7. min-max normalisation with max(S) = min(S) (one value, or all equal) is 0/0: nothing is skipped
   then, and no decision skips every candidate (the rules in :mod:`.ebqm`). By default the KL that
   EBQM sees is divided by eq. (8) between uniform attention at the same position (``kl_norm``,
   :mod:`.config`); the paper's raw eq. (8) is ``kl_norm="paper"``. Both are recorded.
8. Eq. (8) pads P with epsilon and does not renormalise: kept as written (epsilon = 1e-8).
9. Table 6's Normal and Gamma have no stated parameters: moment-matched to Beta(alpha, beta).
   Table 7's GQM/EQM (Algorithm 2): quantile mapping with the Hazen position (rank - 0.5)/n
   (p = rank/n maps the largest KL to infinity), then min-max normalised and thresholded with mu.
   EQM's rate cancels in the normalisation. Table 4's threshold value and fixed count are not
   given: the threshold is a parameter (``kl_threshold``) and the fixed count is matched to the
   count EBQM skipped in the same run.
10. MRLA-L has no distribution over layers; its probe is softmax_s(Q_t . K_s / sqrt(d)) from its own
    Q and K (our inference, not from the paper). ELA itself is built on MRLA-B (the layer with the lists).
"""

from .api import ELAReport, SkippedLayer, apply
from .attach import attach_layer_attention, resolve_stages
from .capture import AttentionCapture, AttentionLayer, active_stages, capture_distributions, find_attention_layers
from .config import KL_NORMS, MAPPINGS, STRATEGIES, ElaConfig, paper_windows
from .ebqm import Selection, ebqm, fixed_selection, position_selection, random_selection, select, threshold_selection
from .kl import adjacent_kl, normalised_kl, padded_kl, uniform_kl
from .schedule import SkipEvent, SkipSchedule
from .step_timing import StepTime, compare_train_steps
from .training import ElaTrainResult, train_ela

__all__ = [
    "ELAReport", "SkippedLayer", "apply", "attach_layer_attention", "resolve_stages",
    "KL_NORMS", "MAPPINGS", "STRATEGIES", "AttentionCapture", "AttentionLayer", "ElaConfig", "ElaTrainResult", "Selection",
    "SkipEvent", "SkipSchedule", "StepTime", "active_stages", "adjacent_kl", "capture_distributions",
    "compare_train_steps", "ebqm",
    "find_attention_layers", "fixed_selection", "normalised_kl", "padded_kl", "paper_windows",
    "position_selection", "random_selection", "select", "threshold_selection", "train_ela", "uniform_kl",
]
