"""The Attention Calibration Unit (section 4.3, part 1): wraps one calibratable unit.

Per inference an ACU that gates (every unit in ``soft`` mode; the bypassable ones in ``hard``
mode):

1. summarises the unit's input and asks its controller for R_i(x) in [0, 1] (``neural`` and
   ``learned`` policies: a probability), or reads the tracked relevance R_i (``heuristic``
   policy, normalised to [0, 1]);
2. reads its resource pressure p_i = lambda * m * C_i from the shared state (eq. 4 cost, kept
   up to date between inferences by the runtime);
3. computes z = gamma * R_i - p_i, alpha_i = sigmoid(z) (eq. 2);
4. ``soft``: runs the unit with its output (the residual branch of a residual block) scaled by
   alpha (eq. 1); ``hard``: alpha < threshold (z < logit(threshold)) -> the unit is NOT computed
   and its bypass (the shortcut path, or zeros for a branch) carries the signal; otherwise the
   unit runs unscaled (alpha is binarised to 1).

Batches: decisions are per sample. If every sample of a batch is bypassed the unit is not
computed; if none is, it runs for the batch; if the batch is mixed, the samples that run it are
GATHERED (``index_select``), the unit runs on them only, and its output is scattered back
(``index_add`` onto the shortcut for a residual block, ``index_copy`` onto the bypass output
otherwise): a mixed batch saves in proportion to the samples bypassed, and the counters
(``executed`` / ``bypassed``, in samples) count exactly what ran.

Joint training (``state.soft_train``, :func:`layerwise.lwac.finetune.finetune`): in hard mode the
gate is a straight-through HARD gate, forward ``1[z >= logit(threshold)]`` (the deployed
decision), backward the gradient of R_i(x) (ConvNet-AIG, Veit & Belongie, arXiv:1711.11503),
so training and deployment take the same paths; in soft mode alpha = sigmoid(z) (eq. 1).

A unit that is not gated (hard mode, not bypassable) runs as in the base model (alpha = 1).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from .controller import UnitController, summarise
from .equations import activation_entropy
from .monitor import SharedBuffer
from .state import LWACState
from .tracker import RelevanceTracker
from .units import ScaleOnlyAdapter

from torch.nn.modules import module as _torch_module

_GLOBAL_HOOKS = (_torch_module._global_forward_hooks, _torch_module._global_forward_pre_hooks,
                 _torch_module._global_backward_hooks, _torch_module._global_backward_pre_hooks)
_tracing = torch._C._get_tracing_state


def hooked(module: nn.Module) -> bool:
    """True when a hook (on ``module`` or global) or tracing needs ``nn.Module.__call__``."""
    d = module.__dict__
    return bool(d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or d["_backward_pre_hooks"]
                or _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1] or _GLOBAL_HOOKS[2] or _GLOBAL_HOOKS[3] or _tracing())


class AttentionCalibrationUnit(nn.Module):
    def __init__(self, unit: nn.Module, unit_index: int, unit_name: str, kind: str, adapter: ScaleOnlyAdapter,
                 state: LWACState, buffer: SharedBuffer, tracker: RelevanceTracker,
                 controller: UnitController | None):
        super().__init__()
        self.unit = unit
        self.controller = controller
        self.unit_index = unit_index
        self.unit_name = unit_name
        self.kind = kind
        self.bypassable = adapter.bypassable
        cfg = state.config
        self.gated = cfg.mode == "soft" or adapter.bypassable
        self.soft = cfg.mode == "soft"
        self.hard1 = self.gated and not self.soft  # the batch-1 hard-gate fast path applies
        # plain attributes (not modules): shared with the runtime and every other ACU
        self.__dict__["_adapter"] = adapter
        self.__dict__["_state"] = state
        self.__dict__["_buffer"] = buffer
        self.__dict__["_tracker"] = tracker
        # decision-time shortcuts: plain attributes, so the hot path never goes through
        # nn.Module.__getattr__ (``self.unit`` / ``self.controller`` would)
        self.__dict__["_unit"] = unit
        self.__dict__["_ctrl"] = controller

    def __call__(self, *args, **kwargs):
        """``nn.Module.__call__`` without its dispatch cost when nothing hooks this ACU.

        At batch 1 the module-call machinery costs about as much as the ACU's decision; with a
        hook registered (on this ACU or globally), or under tracing, the ordinary path runs."""
        if kwargs or len(args) != 1 or hooked(self):
            return nn.Module.__call__(self, *args, **kwargs)
        return self.forward(args[0])

    def __getattr__(self, name: str):
        # the parent model may read attributes of the unit it holds (MultiBranchCNN reads
        # branch.index at every forward): delegate without raising, since an AttributeError
        # caught per call costs microseconds at batch 1
        d = self.__dict__
        modules = d.get("_modules")
        if (modules is not None and "unit" in modules and not name.startswith("__") and name not in modules
                and name not in d["_parameters"] and name not in d["_buffers"]):
            return getattr(modules["unit"], name)
        return super().__getattr__(name)

    # ---- decision ---------------------------------------------------------------------------
    def score(self, x: torch.Tensor):
        """z = gamma * R_i - lambda * m * C_i (eq. 2's argument): a float or a (B,) tensor.

        R_i is in [0, 1] (a probability from the controller, or the max-normalised tracked
        relevance), gamma >= 0 and the pressure >= 0 (:mod:`layerwise.lwac.resources`)."""
        st, i = self._state, self.unit_index
        if self.controller is None or st.config.policy == "heuristic":
            return st.config.gamma * st.relevance[i] - st.pressure[i]
        if x.shape[0] == 1 and not st.soft_train:
            return st.config.gamma * self.controller.relevance_one(x) - st.pressure[i]
        r = self.controller.relevance(summarise(x, self.controller.summary))
        return r * st.config.gamma - st.pressure[i]

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = self._state
        if not (st.forced or st.recording or st.track_now or st.soft_train):
            # the deployment path: no bookkeeping beyond the run/bypass counters
            if not self.gated:  # hard mode, a unit that is never bypassed: as in the base model
                st.executed[self.unit_index] += x.shape[0]
                return self._unit(x)
            if self.hard1 and x.shape[0] == 1:
                return self._hard_one(st, x)
        return self._forward_general(st, x)

    def _hard_one(self, st: LWACState, x: torch.Tensor) -> torch.Tensor:
        """Hard gate at batch 1: one score (a dot product and ONE ``.item()`` for the neural
        policy, two list reads for the heuristic one), one comparison, then run or bypass."""
        i = self.unit_index
        ctrl = self._ctrl
        cfg = st.config
        if ctrl is None or cfg.policy == "heuristic":
            z = cfg.gamma * st.relevance[i] - st.pressure[i]  # eq. (2)'s argument, tracked R
        else:
            z = cfg.gamma * ctrl.relevance_one(x) - st.pressure[i]  # eq. (2)'s argument, R_i(x) in [0, 1]
        if st.pinned or z >= st.z_threshold:  # alpha >= threshold (or the overhead check): run unscaled
            st.executed[i] += 1
            return self._unit(x)
        st.bypassed[i] += 1
        return self._adapter.bypass(x)  # the unit itself is never called

    def _forward_general(self, st: LWACState, x: torch.Tensor) -> torch.Tensor:
        i = self.unit_index
        b = x.shape[0]
        adapter = self._adapter
        if not self.gated:
            out = self._timed(adapter.run, x) if st.track_now else adapter.run(x)
            st.executed[i] += b
            if st.recording or st.track_now:
                self._observe(out, 1.0, False)
            return out
        if st.soft_train and self.controller is not None:  # joint training with eq. (5): gates logged for the loss
            p = self.controller.relevance(summarise(x, self.controller.summary))  # R_i(x) in [0, 1]
            z = st.config.gamma * p - st.pressure[i]  # eq. (2)'s argument
            if self.soft:
                a = torch.sigmoid(z)  # eq. (2)
            else:  # straight-through hard gate: forward the deployed decision, backward dR/dtheta
                a = (z.detach() >= st.z_threshold).to(p.dtype) + p - p.detach()
            st.alpha_log.append((i, a))
            return adapter.scaled(x, a)  # eq. (1) on the residual branch
        forced = st.forced.get(i) if st.forced else None
        z = self.score(x) if forced is None else None
        if st.pinned:  # overhead check: decide, then ignore the decision (alpha = 1, nothing bypassed)
            out = self._timed(adapter.run, x) if st.track_now else adapter.run(x)
            st.executed[i] += b
            if st.recording or st.track_now:
                self._observe(out, 1.0, False)
            return out
        if self.soft:
            a = torch.sigmoid(z) if isinstance(z, torch.Tensor) else 1.0 / (1.0 + math.exp(-z))
            out = adapter.scaled(x, a)
            st.executed[i] += b
            if st.recording or st.track_now:
                self._observe(out, a, False)
            return out
        # hard gate
        if forced is not None:
            mask = forced
        elif isinstance(z, torch.Tensor):
            mask = z < st.config.z_threshold
        else:
            mask = bool(z < st.config.z_threshold)
        if isinstance(mask, torch.Tensor):
            n_bypass = int(mask.sum())
            if n_bypass == b:
                mask = True
            elif n_bypass == 0:
                mask = False
        if mask is True:
            out = adapter.bypass(x)  # the unit itself is never called
            st.bypassed[i] += b
        elif mask is False:
            out = self._timed(adapter.run, x) if st.track_now else adapter.run(x)
            st.executed[i] += b
        else:  # mixed batch: the unit runs on the gathered samples that need it, scattered back
            run_idx = (~mask).nonzero().flatten()
            out = adapter.mixed(x, run_idx)
            st.executed[i] += b - n_bypass
            st.bypassed[i] += n_bypass
        if st.recording or st.track_now:
            a = self._alpha_of(z, mask, b)
            self._observe(out, a, mask)
        return out

    # ---- bookkeeping (recording runs and every ``track_every``-th inference only) -------------
    def _timed(self, fn, x):
        t0 = time.perf_counter()
        out = fn(x)
        self._buffer.record_unit_latency(self.unit_index, time.perf_counter() - t0)
        return out

    @staticmethod
    def _alpha_of(z, mask, b):
        if z is None:
            m = mask if isinstance(mask, torch.Tensor) else torch.full((b,), bool(mask))
            return (~m).float()
        return torch.sigmoid(z) if isinstance(z, torch.Tensor) else 1.0 / (1.0 + math.exp(-z))

    def _observe(self, out: torch.Tensor, alpha, bypassed) -> None:
        st, i = self._state, self.unit_index
        h = activation_entropy(out)
        if st.track_now and not st.recording and bypassed is False:
            self._tracker.push(i, float(h.mean()))  # only what the unit itself produced
        if st.recording:
            b = h.shape[0]
            a = alpha.detach().float().reshape(-1).tolist() if isinstance(alpha, torch.Tensor) else [float(alpha)] * b
            if isinstance(bypassed, torch.Tensor):
                byp = bypassed.reshape(-1).tolist()
            else:
                byp = [bool(bypassed)] * b
            st.records[i].extend(zip(a, byp, h.tolist()))
