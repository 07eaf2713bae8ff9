"""UnIT's baselines (paper section 3.4): train-time global magnitude pruning and FATReLU.

* :mod:`.magnitude`: global unstructured L1 magnitude pruning, iterative (5 % of the weights per
  step) with a fine-tune after each step and masks held fixed, stopping when VALIDATION accuracy
  falls more than 0.5 pt below the dense model (the authors' release used the test split for
  that rule; we do not).
* :mod:`.fatrelu`: FATReLU, ``f(x) = x if x >= t else 0`` (Kurtz et al. 2020), replacing the
  model's ``nn.ReLU`` modules, with per-layer thresholds found by binary search on validation
  data one layer at a time; :func:`calibrate_fatrelu_bounds` selects, per bound, the
  configuration that skips the most on validation among the searches at bounds up to it
  (monotone in the bound).
"""

from .fatrelu import (
    FATReLU,
    FatReluBoundSelection,
    FatReluCalibration,
    FatReluReport,
    binary_search_threshold,
    calibrate_fatrelu,
    calibrate_fatrelu_bounds,
    fatrelu_layers,
    relu_input_max,
    replace_relus,
    select_monotone,
    set_fatrelu_thresholds,
)
from .magnitude import (
    MagnitudeConfig,
    MagnitudeResult,
    PruneStep,
    apply_masks,
    global_magnitude_masks,
    iterative_magnitude_prune,
    prunable_layers,
    sparsity_of,
)

__all__ = [
    "FATReLU",
    "FatReluBoundSelection",
    "FatReluCalibration",
    "FatReluReport",
    "MagnitudeConfig",
    "MagnitudeResult",
    "PruneStep",
    "apply_masks",
    "binary_search_threshold",
    "calibrate_fatrelu",
    "calibrate_fatrelu_bounds",
    "fatrelu_layers",
    "global_magnitude_masks",
    "iterative_magnitude_prune",
    "prunable_layers",
    "relu_input_max",
    "replace_relus",
    "select_monotone",
    "set_fatrelu_thresholds",
    "sparsity_of",
]
