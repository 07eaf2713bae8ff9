"""The compact neural controller (section 4.3, part 4) and the feature summariser (part 1).

One controller per bypassable unit. It reads the summary of the unit's INPUT (per channel: the
mean over every position, and for small inputs also the root mean square) and returns R_i(x), a
per-input relevance: the PROBABILITY (in [0, 1]) that the unit is needed for this input
(``neural`` policy: that bypassing it would change the prediction; ``learned`` policy: the gate
trained jointly with the network). Eq. (2) then gives
alpha_i(x) = sigmoid(gamma * R_i(x) - lambda * C_i). R_i(x) is a probability, never a logit, so
that with gamma >= 0, lambda >= 0 and C_i >= 0 the sign of every term of eq. (2) is fixed by
construction: more cost or more pressure can only lower alpha (:mod:`layerwise.lwac.resources`). It is trained on the validation split by
:func:`layerwise.lwac.calibrate.train_controllers` (the paper's training-time mask
preprocessor), and at run time it costs one pooling op and two tiny matrix-vector products.

``score`` calls ``torch.nn.functional.linear`` directly, not ``nn.Module.__call__``: at batch 1
the module-call machinery would cost more than the arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


SUMMARIES = ("auto", "mean", "mean_rms")
AUTO_RMS_MAX_ELEMENTS = 4096


def summary_kind(kind: str, input_shape) -> str:
    """"auto": mean and RMS when one sample's input has at most 4096 elements (sensor series,
    small maps: the RMS is cheap and the mean of a standardised signal says little), else the
    mean only (a feature map: each extra pooling pass costs a few microseconds at batch 1)."""
    if kind != "auto":
        return kind
    per_sample = 1
    for s in input_shape[1:]:
        per_sample *= int(s)
    return "mean_rms" if per_sample <= AUTO_RMS_MAX_ELEMENTS else "mean"


def summary_features(kind: str, input_shape) -> int:
    c = int(input_shape[1])
    return 2 * c if kind == "mean_rms" else c


def summarise(x: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """(B, C, ...) -> (B, C) per-channel mean over every position, or (B, 2C) [mean, RMS].

    (Mean and RMS together carry the standard deviation; ``torch.std_mean`` costs 20-50x more on
    CPU at batch 1.) A (B, F) input has nothing to pool: ``x`` (or ``[x, |x|]``).
    """
    if x.dim() <= 2:
        return torch.cat([x, x.abs()], dim=1) if kind == "mean_rms" else x
    flat = x.flatten(2)
    mean = flat.mean(dim=2)
    if kind != "mean_rms":
        return mean
    rms = torch.linalg.vector_norm(flat, dim=2).mul_(flat.shape[2] ** -0.5)
    return torch.cat([mean, rms], dim=1)


class UnitController(nn.Module):
    """summary (B, F) -> R_i(x) (B,): standardise, [Linear -> ReLU ->] Linear."""

    def __init__(self, in_features: int, hidden: int = 16):
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("inv_std", torch.ones(in_features))
        self.fc1 = nn.Linear(in_features, hidden) if hidden else None
        self.fc2 = nn.Linear(hidden if hidden else in_features, 1)
        self.reset()
        self.summary = "mean"  # which summarise() kind feeds this controller (set by attach)

    @torch.no_grad()
    def reset(self) -> None:
        """Fresh weights (zero output), no standardisation: training starts from here every time."""
        if self.fc1 is not None:
            self.fc1.reset_parameters()
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.mean.zero_()
        self.inv_std.fill_(1.0)
        self.fused = False
        self.__dict__.pop("_fast", None)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the standardisation into the first linear layer (same scores, two ops fewer)."""
        if self.fused:
            return
        first = self.fc1 if self.fc1 is not None else self.fc2
        w = first.weight * self.inv_std
        first.bias.copy_(first.bias - w @ self.mean)
        first.weight.copy_(w)
        self.mean.zero_()
        self.inv_std.fill_(1.0)
        self.fused = True
        self.__dict__.pop("_fast", None)

    def unfuse(self) -> None:
        """Back to the trainable form (same scores: a fused controller's standardisation is the
        identity, its weights already carry it)."""
        self.fused = False
        self.invalidate()

    def invalidate(self) -> None:
        """Drop the batch-1 fast-path cache of :meth:`score_one` (call after changing weights)."""
        self.__dict__.pop("_fast", None)

    def _apply(self, fn, *args, **kwargs):  # .to(), .float(), ...: the cached weight would be stale
        self.invalidate()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.invalidate()
        return super()._load_from_state_dict(*args, **kwargs)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Per-feature mean and 1/std from ``features`` (N, F). A feature that is constant on
        these samples (std below 1e-6 of the features' overall scale, e.g. a dead ReLU channel)
        gets 1/std = 0: it carries no information here, and 1/1e-6 would turn any later
        deviation into a huge score."""
        std = features.std(dim=0, correction=0)
        scale = float(features.abs().mean()) + 1e-12
        self.mean.copy_(features.mean(dim=0))
        self.inv_std.copy_(torch.where(std > 1e-6 * scale, 1.0 / std.clamp_min(1e-12), torch.zeros_like(std)))

    def relevance_one(self, x: torch.Tensor) -> float:
        """R_i(x) in [0, 1] for ONE input (batch 1): sigmoid of :meth:`score_one`."""
        v = self.score_one(x)
        return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))

    def relevance(self, summary: torch.Tensor) -> torch.Tensor:
        """R_i(x) in [0, 1] per sample: the probability that the unit is needed."""
        return torch.sigmoid(self.score(summary))

    def score_one(self, x: torch.Tensor) -> float:
        """The LOGIT of R_i for ONE input (batch 1) of a fused linear controller on the channel means, in a
        single op: w . mean_c(x) = sum over (c, position) of x * w_c / positions, so the pooled
        summary and the linear layer become one dot product with a weight expanded per position
        (cached for the last input shape, as a plain tensor with the bias as a float: no autograd,
        no module attribute lookups), and ONE ``.item()``. Falls back to :meth:`score` otherwise."""
        fast = self.__dict__.get("_fast")
        if fast is not None and fast[0] == x.shape:
            return torch.dot(x.reshape(-1), fast[1]).item() + fast[2]
        if not (self.fused and self.fc1 is None and self.summary == "mean" and x.dim() > 2 and x.shape[0] == 1):
            return self.score(summarise(x, self.summary)).item()
        # once per input shape; a normal tensor even when first called under inference_mode, so that
        # later calls with autograd on can use it
        with torch.inference_mode(False), torch.no_grad():
            positions = x[0, 0].numel()
            w = (self.fc2.weight[0].detach() / positions).repeat_interleave(positions).to(x.device).contiguous()
            self.__dict__["_fast"] = (x.shape, w, float(self.fc2.bias.detach()[0]))
        return torch.dot(x.reshape(-1), w).item() + self.__dict__["_fast"][2]

    def score(self, summary: torch.Tensor) -> torch.Tensor:
        if self.fused and self.fc1 is None:  # one op: bias + summary @ w
            return torch.addmv(self.fc2.bias, summary, self.fc2.weight[0])
        s = summary if self.fused else (summary - self.mean) * self.inv_std
        if self.fc1 is not None:
            s = F.relu(F.linear(s, self.fc1.weight, self.fc1.bias))
        return F.linear(s, self.fc2.weight, self.fc2.bias).squeeze(-1)

    def forward(self, summary: torch.Tensor) -> torch.Tensor:
        return self.score(summary)

    def macs(self, input_shape=None) -> int:
        """Multiply-accumulates of one decision at batch 1, as it really runs: the pooling (or the
        fused dot product of :meth:`score_one`) touches every element of the unit's input once
        (counted as one MAC each), then the linear layer(s) on the summary. Without
        ``input_shape`` only the linear layers."""
        h = self.hidden
        linear = self.in_features * h + h if h else self.in_features
        if input_shape is None:
            return linear
        per_sample = 1
        for s in tuple(input_shape)[1:]:
            per_sample *= int(s)
        pooled = per_sample * (2 if self.summary == "mean_rms" else 1) if len(tuple(input_shape)) > 2 else 0
        return pooled + linear
