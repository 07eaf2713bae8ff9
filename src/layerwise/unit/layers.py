"""UnIT drop-in layers: ``UnITLinear``, ``UnITConv1d``, ``UnITConv2d``.

Each subclasses the torch layer it replaces and keeps its parameters and state_dict keys, plus:

* buffer ``unit_threshold`` (float32, shape ``[G]``, one threshold per group of output units;
  saved and loaded with the model's state_dict, and a loaded ``[G']`` replaces the buffer's shape);
* ``division`` (``"exact"`` or a method of :mod:`layerwise.unit.division`) and ``division_opts``;
* ``enabled`` (False: the plain dense layer, nothing counted); ``counting`` (True: every UnIT
  forward adds its exact :class:`MacCounts` to ``self.counts``; ``reset_counts()`` clears them);
* ``chunk_elems``: memory bound of the reference computation (see :mod:`.reference`).

Semantics (:mod:`layerwise.unit.reference`): Linear keeps a MAC iff ``|w| > T/|x|`` (eq. 2),
Conv iff ``|x| > T/|w|`` (eq. 3); ties are skipped; zero operands never run and count as zero
skips; the bias IS added (the authors' release drops it). With ``T = 0`` and exact division the
output is the dense layer's (a fast path through ``F.linear`` / ``F.conv*``, counts still exact).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import LayerwiseError
from .counts import MacCounts
from .reference import DEFAULT_CHUNK_ELEMS, unit_conv, unit_linear


class _UnITMixin:
    """State and helpers shared by the three UnIT layers."""

    unit_threshold: Tensor

    def _init_unit(self, threshold_groups: int, division: str, division_opts: dict | None,
                   out: int) -> None:
        if threshold_groups < 1 or out % threshold_groups:
            raise LayerwiseError(
                f"threshold groups {threshold_groups} must be >= 1 and divide the layer's {out} "
                "outputs; pick a divisor")
        device = self.weight.device if self.weight.device.type != "meta" else None
        self.register_buffer("unit_threshold",
                             torch.zeros(threshold_groups, dtype=torch.float32, device=device))
        self.division = division
        self.division_opts = dict(division_opts or {})
        self.enabled = True
        self.counting = True
        self.chunk_elems = DEFAULT_CHUNK_ELEMS
        self.counts = MacCounts()

    @property
    def threshold_groups(self) -> int:
        """Number of threshold groups ``G`` (output units per group: ``out // G``)."""
        return self.unit_threshold.numel()

    def _out_units(self) -> int:
        return self.weight.shape[0]

    def set_threshold(self, threshold: Tensor | float) -> None:
        """Set ``T`` (a number, 0-d or ``[G]``); the buffer takes the new group count."""
        t = torch.as_tensor(threshold, dtype=torch.float32).detach().reshape(-1).clone()
        out = self._out_units()
        if t.numel() < 1 or out % t.numel():
            raise LayerwiseError(
                f"{t.numel()} threshold values do not divide the layer's {out} outputs; "
                "pass one value or one per group with a group count dividing it")
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise LayerwiseError(f"threshold must be finite and >= 0, got {t.tolist()}")
        # assigning a tensor to a registered buffer name keeps it a buffer
        self.unit_threshold = t.to(self.unit_threshold.device)

    def reset_counts(self) -> None:
        """Clear the accumulated counters."""
        self.counts = MacCounts()

    def _record(self, counts: MacCounts) -> None:
        if self.counting:
            self.counts = self.counts + counts

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "unit_threshold"
        t = state_dict.get(key)
        if t is not None and t.shape != self.unit_threshold.shape:
            # A checkpoint calibrated with another group count: take its shape.
            self.set_threshold(torch.zeros(t.numel()))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _unit_repr(self) -> str:
        t = self.unit_threshold
        shown = f"{t.item():.4g}" if t.numel() == 1 else f"[{t.numel()} groups]"
        return (f", threshold={shown}, division={self.division!r}"
                f"{'' if self.enabled else ', enabled=False'}")


class UnITLinear(_UnITMixin, nn.Linear):
    """``nn.Linear`` with UnIT inference-time MAC skipping (input as control term, eq. 2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, threshold_groups: int = 1, division: str = "exact",
                 division_opts: dict | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_unit(threshold_groups, division, division_opts, out_features)

    @classmethod
    def from_module(cls, layer: nn.Linear, groups: int = 1, *, division: str = "exact",
                    division_opts: dict | None = None) -> UnITLinear:
        """A UnIT copy of ``layer`` (same weights, device, dtype); ``groups`` = threshold groups."""
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None,
                  device="meta", dtype=layer.weight.dtype, threshold_groups=groups,
                  division=division, division_opts=division_opts)
        new.weight = layer.weight
        new.bias = layer.bias
        new.unit_threshold = torch.zeros(groups, dtype=torch.float32, device=layer.weight.device)
        new.train(layer.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return super().forward(x)
        y, counts = unit_linear(x, self.weight, self.bias, self.unit_threshold,
                                division=self.division, division_opts=self.division_opts,
                                chunk_elems=self.chunk_elems)
        self._record(counts)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + self._unit_repr()


class _UnITConvNd(_UnITMixin):
    def _conv_init_unit(self, threshold_groups, division, division_opts):
        self._init_unit(threshold_groups, division, division_opts, self.out_channels)

    @classmethod
    def from_module(cls, layer, groups: int = 1, *, division: str = "exact",
                    division_opts: dict | None = None):
        """A UnIT copy of ``layer`` (same weights, device, dtype); ``groups`` = threshold groups
        (the conv's own channel ``groups`` is copied from the layer)."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                  bias=layer.bias is not None, padding_mode=layer.padding_mode, device="meta",
                  dtype=layer.weight.dtype, threshold_groups=groups, division=division,
                  division_opts=division_opts)
        new.weight = layer.weight
        new.bias = layer.bias
        new.unit_threshold = torch.zeros(groups, dtype=torch.float32, device=layer.weight.device)
        new.train(layer.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return super().forward(x)
        y, counts = unit_conv(x, self.weight, self.bias, self.unit_threshold, stride=self.stride,
                              padding=self.padding, dilation=self.dilation, groups=self.groups,
                              padding_mode=self.padding_mode, division=self.division,
                              division_opts=self.division_opts, chunk_elems=self.chunk_elems)
        self._record(counts)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + self._unit_repr()


class UnITConv1d(_UnITConvNd, nn.Conv1d):
    """``nn.Conv1d`` with UnIT inference-time MAC skipping (weight as control term, eq. 3)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, threshold_groups: int = 1, division: str = "exact",
                 division_opts: dict | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._conv_init_unit(threshold_groups, division, division_opts)


class UnITConv2d(_UnITConvNd, nn.Conv2d):
    """``nn.Conv2d`` with UnIT inference-time MAC skipping (weight as control term, eq. 3)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, threshold_groups: int = 1, division: str = "exact",
                 division_opts: dict | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._conv_init_unit(threshold_groups, division, division_opts)


UNIT_LAYER_TYPES: tuple[type[nn.Module], ...] = (UnITLinear, UnITConv1d, UnITConv2d)
