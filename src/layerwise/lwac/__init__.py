"""LWAC: Layer-Wise Attention Calibration (Rao et al.), with a hard gate that really skips work.

``lwac.attach(model, x)`` puts an Attention Calibration Unit (ACU) after every calibratable unit
(residual block, inverted residual, branch of a multi-branch model, recurrent stage; found by
:func:`layerwise.layers.find_layers`) of any model, on a copy: the base weights are untouched.
Each ACU computes alpha_i = sigmoid(gamma * R_i - lambda * C_i) (eq. 2) from a relevance R_i
(eq. 3: gradient norm + eta * activation entropy over a window of T passes, gathered on the
validation split, with the entropy term tracked label-free at deployment; or, per input, a
compact neural controller fed by the summary of the unit's input) and a cost C_i (eq. 4:
normalised FLOPs, latency and estimated power from the resource monitor).

Two gate modes: ``soft`` is the paper's h~ = alpha * h (eq. 1; for a residual block, the
residual branch only), which saves nothing; ``hard`` bypasses a unit whose alpha is below the
threshold: the unit is not called at all and its shortcut (a projection for a block that
changes shape; zeros, for a branch) carries the signal. Units without a shortcut are scaled,
never bypassed. Decisions are per input; in a mixed batch the unit runs on the gathered samples
that need it only (see :mod:`layerwise.lwac.acu`).

Three policies: ``neural`` (a controller per unit fitted on validation to "bypassing changes
the prediction"), ``heuristic`` (training-free: the tracked R_i of eq. 3) and ``learned`` (gates
trained jointly with the network, straight-through hard gates with eq. 5:
:func:`train_learned_gates`). R_i is always in [0, 1], lambda, gamma and every resource factor
>= 0, so more cost or less battery never bypasses less (:mod:`layerwise.lwac.resources`).
Baselines: :func:`greedy_drop_sets` / :func:`static_model` (the best k blocks removed for good).
Export with the control flow kept: :func:`layerwise.lwac.export.export` (``torch.cond``).

One call, with the command line's automatic choices (the lambda grid, the dense latency
reference, the policy), on any model and a DataLoader of validation data::

    lw, report = lwac.apply(model, val_loader)       # report: lambda, dense_ms, bypassable units, ...

Step by step::

    lw = lwac.attach(model, x1)                      # x1: one example input (batch 1)
    lwac.gather_relevance(lw, data.val)              # eq. (3) on validation
    labels = lwac.bypass_labels(lw, data.val)        # does bypassing keep the prediction?
    lwac.train_controllers(lw, labels)               # the training-time mask preprocessor
    lo, hi = lwac.lambda_range(lw, labels)
    points = lwac.crossfit_sweep(lw, data.val, labels, lams, dense_ms=d)
    lw.set_lambda(lwac.choose_lambda(points, dense_val_acc, 0.005).lam)
    lw.set_budget(0.7, dense_ms=d)                   # optional: PI control of lambda
    lw.set_latency_target(2.5)                       # or an absolute budget, ms per input
    lw.set_latency_target(2.5, levels=lwac.measure_levels(lw, inputs))  # holding a measured depth
    y = lw(x)                                        # batch 1, per-input decisions

Every choice where the paper is ambiguous is listed, with the reason, in ``docs/lwac.md``.
"""

from .budget import PIController, budget_controller
from .levels import Level, LevelController, measure_levels
from .calibrate import (BypassLabels, LambdaCalibration, LambdaPoint, bypass_labels, calibrate_lambda, choose_lambda,
                        crossfit_sweep, dense_accuracy, dense_reference_ms, gather_relevance, lambda_range, sweep_lambda,
                        train_controllers)
from .config import LWACConfig, LWACError, check_budget
from .controller import UnitController, summarise
from .equations import activation_entropy, alpha, calibrate, cost, normalise, regulariser, relevance
from .finetune import FineTuneConfig, finetune, init_gates, train_learned_gates
from .policy import PolicyChoice, PolicyStats, choose_policy
from .monitor import (ResourceMonitor, ResourceState, SharedBuffer, SimulatedMonitor, cpu_contention,
                      draining_battery, merge_traces)
from .robust import branch_dropout, residual_model_kwargs
from .resources import multiplier, unit_costs
from .runtime import LWACModel, UnitInfo, attach
from .static import DropSet, greedy_drop_sets, static_model
from .api import LWACReport, apply
from .tracker import RelevanceTracker, RingBuffer

__all__ = [
    "LWACReport", "LambdaCalibration", "apply", "calibrate_lambda", "dense_accuracy", "dense_reference_ms",
    "BypassLabels", "DropSet", "FineTuneConfig", "LWACConfig", "LWACError", "LWACModel", "LambdaPoint", "Level", "LevelController", "PIController", "PolicyChoice", "PolicyStats",
    "RelevanceTracker", "ResourceMonitor", "ResourceState", "RingBuffer", "SharedBuffer", "SimulatedMonitor",
    "UnitController", "UnitInfo", "activation_entropy", "alpha", "attach", "branch_dropout", "budget_controller",
    "bypass_labels", "calibrate", "check_budget", "choose_lambda", "choose_policy", "cost", "cpu_contention", "crossfit_sweep",
    "draining_battery", "finetune", "gather_relevance", "greedy_drop_sets", "init_gates", "lambda_range", "merge_traces",
    "measure_levels", "multiplier", "normalise", "regulariser", "relevance", "residual_model_kwargs", "static_model", "summarise",
    "sweep_lambda", "train_controllers", "train_learned_gates", "unit_costs",
]
