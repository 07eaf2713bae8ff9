"""UnIT: unstructured inference-time pruning (skip MACs whose |x*w| is at most a threshold).

``convert(model)`` swaps Linear / Conv1d / Conv2d layers for UnIT layers, ``calibrate(model,
loader)`` sets per-layer thresholds from a percentile of activation-weight products, and the
layers' counters say how many MACs ran. Semantics: :mod:`layerwise.unit.reference`.
``choose_percentile`` picks the percentile from a VALIDATION curve (``layerwise unit
--percentile auto``); ``measure_steps`` counts the division loop steps the cost model charges.
``to_row_skip(model)`` runs the UnIT Linear layers with row skipping, the form of the rule that
pays on a CPU (:mod:`layerwise.unit.rowskip`).

``module, report = apply(model, calib_loader, val_loader=...)`` does all of it on any model and
DataLoader in one call (:mod:`layerwise.unit.api`): a converted copy, thresholds calibrated on
streamed batches, the percentile chosen on the validation curve, MACs counted.
"""

from .api import UnITReport, apply
from .calibrate import SweepPoint, calibrate, collect_products, sweep
from .convert import (
    ConversionReport,
    convert,
    per_layer_counts,
    reset_counts,
    set_division,
    set_enabled,
    total_counts,
    unit_layers,
)
from .counts import MacCounts
from .counts import combine_layers
from .division import (
    METHODS,
    PivotTree,
    balanced_tree,
    calibrate_pivots,
    decision_agreement,
    division_steps,
    threshold_ratio,
)
from .fixed_point import FixedResult, QFormat, fixed_conv2d, fixed_linear, quantize_threshold
from .kernels import KernelResult, unit_conv_kernel, unit_linear_kernel
from .layers import UNIT_LAYER_TYPES, UnITConv1d, UnITConv2d, UnITLinear
from .mcu import (
    PROFILES,
    RUNTIMES,
    McuEstimate,
    McuProfile,
    McuWork,
    cost,
    estimate,
    get_profile,
    work_for,
)
from .reference import threshold_per_output, unit_conv, unit_linear
from .rowskip import RowCounts, RowPlan, RowSkipLinear, row_counts, rowskip_linear, to_row_skip
from .select import PercentileChoice, choose_percentile
from .steps import StepCount, calibrate_trees, measure_steps

__all__ = [
    # one call on any model and DataLoader: (module, report)
    "UnITReport",
    "apply",
    # core: semantics, layers, conversion, calibration, counters
    "ConversionReport",
    "MacCounts",
    "combine_layers",
    "SweepPoint",
    "UNIT_LAYER_TYPES",
    "UnITConv1d",
    "UnITConv2d",
    "UnITLinear",
    "calibrate",
    "collect_products",
    "convert",
    "per_layer_counts",
    "reset_counts",
    "set_division",
    "set_enabled",
    "sweep",
    "PercentileChoice",
    "choose_percentile",
    "threshold_per_output",
    "total_counts",
    "unit_conv",
    "unit_layers",
    "unit_linear",
    # division approximations (section 2.2)
    "METHODS",
    "PivotTree",
    "balanced_tree",
    "calibrate_pivots",
    "decision_agreement",
    "division_steps",
    "threshold_ratio",
    # compiled kernels and fixed point
    "FixedResult",
    "KernelResult",
    "QFormat",
    "fixed_conv2d",
    "fixed_linear",
    "quantize_threshold",
    "unit_conv_kernel",
    "unit_linear_kernel",
    # CPU execution: whole weight rows skipped (row skipping)
    "RowCounts",
    "RowPlan",
    "RowSkipLinear",
    "row_counts",
    "rowskip_linear",
    "to_row_skip",
    # MCU cost model
    "PROFILES",
    "RUNTIMES",
    "McuEstimate",
    "McuProfile",
    "McuWork",
    "cost",
    "estimate",
    "get_profile",
    "work_for",
    # measured division loop steps (for the cost model) and per-layer calibrated pivot trees
    "StepCount",
    "calibrate_trees",
    "measure_steps",
]
