"""Layer attention (MRLA, Fang et al. 2023) on the CIFAR bottleneck ResNets: MRLA-B and MRLA-L.

ELA (Li & Huang, "Enhancing Layer Attention Efficiency through Pruning Redundant Retrievals")
prunes MRLA-B's attention layers during training; ``resnet{20,56,110}-ela`` is the MRLA-B network
that :mod:`layerwise.ela` trains with that skipping. Shapes, heads, kernel sizes and placement come
from the CIFAR reference code (the MRLA ResNets of Dynamic Layer Attention, arXiv 2406.13392):

* every bottleneck block with output ``x`` [b, C, H, W] gets one attention layer;
  ``y = GAP(x)`` as [b, 1, C]; Q and K are 1-channel Conv1d over the channel axis of ``y`` (ECA
  kernel size ``k``), V a depthwise 3x3 Conv2d on ``x``; ``g = C / 32`` heads of size ``d = C / g``;
* MRLA-B (ELA eq. 1-2, with the softmax and 1/sqrt(d) the paper omits for clarity): the block's
  K and V join the stage's lists, ``a = softmax_s(Q . K_s / sqrt(d))`` over the stage's layers so
  far, output ``sum_s a_s V_s`` per head; the lists reset at the first block of each stage;
  placed after the block's add + ReLU as ``out = out + ReLU(BN(mrla(out)))``;
* MRLA-L (ELA eq. 3-4): per head a scalar gate ``sigmoid(Q . K / sqrt(d))`` on V's channels plus
  ``lambda (.) o_prev`` (learnable per-channel ``lambda``, N(0, 1) init; ``o_prev`` is the block's
  identity input, as in the reference code); placed as ``out = out + BN(mrla(out, identity))``.

Parameters per block: ``2k + 9C`` (Q, K, depthwise V) ``+ C`` (lambda, MRLA-L) ``+ 2C`` (BN):
at 10 classes 230,286 / 621,046 / 1,207,186 (MRLA-B) and 231,182 / 623,734 / 1,212,562 (MRLA-L).

Any other model: :class:`LayerAttentionBlock` puts the same attention layer after each block of
the stages a user names (:func:`layerwise.ela.attach_layer_attention`).

A block whose ``skip_attention`` is True runs as a plain bottleneck: no Q, K or V is computed,
nothing is added to its output and nothing joins the stage's key/value lists, so the later layers
of the stage attend over the keys and values of the NON-skipped layers only. The flag is stored in
a boolean buffer ``attention_skip`` of the block, so it is part of the state dict: a saved ELA
model remembers which attention layers were removed. A state dict written before that buffer
existed loads as "none skipped", with a logged note (:meth:`MRLABottleneck._load_from_state_dict`).

Values (MRLA-B's ``sum_s a_s V_s``), three ways to compute the same output (tested):
``values="sum"`` (the default) writes each layer's V once into a per-stage buffer and takes the
weighted sum as one batched matrix product, with a hand-written backward over the same buffer
(:mod:`layerwise.models.mrla_values`); ``values="stack"`` stacks the stage's values at every layer
(a fresh copy of t tensors at layer t, as the reference's ``torch.cat`` growth) and sums with one
einsum; ``values="loop"`` keeps them in a list and accumulates ``a_s V_s`` term by term.
``bench/ela_values.py`` compares their speed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from .blocks import Bottleneck, finish_residual_model
from .cifar_resnet import CifarResNet
from .droppath import DropPath, check_drop_path
from .mrla_values import ValueStore, weighted_values
from .registry import ModelConfigError, register_model
from .shapes import expect_image

log = logging.getLogger(__name__)

VARIANTS = ("b", "l")
VALUE_MODES = ("sum", "stack", "loop")
HEAD_WIDTH = 32  # g = C / 32 heads on CIFAR (the CIFAR reference code)


def eca_kernel_size(channels: int) -> int:
    """ECA's adaptive kernel: t = int((log2(C) + 1) / 2), made odd (C=64 -> 3, 128/256 -> 5)."""
    t = int((math.log2(channels) + 1) / 2)
    return t if t % 2 else t + 1


@dataclass
class StageContext:
    """Keys [b, g, d] and values of the attention layers of one stage that ran so far: the values
    in ``store`` (mode "sum", created at the first layer with room for ``capacity`` layers, grown
    when needed) or in the list ``values`` [b, C, H, W] (modes "stack" and "loop")."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    capacity: int = 4
    store: ValueStore | None = None


class _Attention(nn.Module):
    """Q, K (1-channel Conv1d over channels of the pooled map) and V (depthwise 3x3) of one layer."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.heads = max(channels // HEAD_WIDTH, 1)
        if channels % self.heads:
            raise ModelConfigError(f"MRLA needs channels divisible by {self.heads} heads, not {channels}")
        self.head_dim = channels // self.heads
        self.scale = self.head_dim ** -0.5
        k = eca_kernel_size(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.query = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.key = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.value = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        y = self.pool(x).view(b, 1, self.channels)
        q = self.query(y).view(b, self.heads, self.head_dim)  # F_q^l(x^l), eq. (1)
        k = self.key(y).view(b, self.heads, self.head_dim)  # F_k^l(x^l)
        return q, k, self.value(x)  # F_v^l(x^l)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, head_dim={self.head_dim}"


class MRLABase(_Attention):
    """MRLA-B: attention of this layer's query over the keys/values of the stage so far (eq. 1-2)."""

    def __init__(self, channels: int, values: str = "sum"):
        super().__init__(channels)
        if values not in VALUE_MODES:
            raise ModelConfigError(f"values must be one of {', '.join(VALUE_MODES)}, not {values!r}")
        self.values_mode = values
        self.softmax = nn.Softmax(dim=-1)  # a module, so layerwise.ela can hook the distribution

    def forward(self, x: torch.Tensor, context: StageContext) -> torch.Tensor:
        b, c, h, w = x.shape
        g, d = self.heads, self.head_dim
        q, k, v = self.qkv(x)
        if context.values if self.values_mode == "sum" else context.store is not None:
            raise ModelConfigError("the MRLA-B layers of one stage must share one values mode (sum, stack or loop)")
        context.keys.append(k)
        keys = torch.stack(context.keys, dim=2)  # K^l = Concat[F_k^1(x^1), ..., F_k^l(x^l)], eq. (1): [b, g, t, d]
        attn = self.softmax(torch.einsum("bgd,bgtd->bgt", q, keys) * self.scale)  # softmax(Q K^T / sqrt(d))
        if self.values_mode == "sum":  # V^l stored once per stage; O^l = sum_i a_i F_v^i(x^i), eq. (2)
            if context.store is None:
                context.store = ValueStore(context.capacity)
            return weighted_values(attn, v, context.store)
        context.values.append(v)
        if self.values_mode == "stack":
            vals = torch.stack(context.values, dim=1).view(b, -1, g, d, h, w)  # V^l = Concat[...], eq. (1)
            out = torch.einsum("bgt,btgdhw->bgdhw", attn, vals)  # O^l = sum_i a_i F_v^i(x^i), eq. (2)
        else:
            out = None
            for s, vs in enumerate(context.values):  # the same sum, without copying the values
                term = attn[:, :, s].reshape(b, g, 1, 1, 1) * vs.view(b, g, d, h, w)
                out = term if out is None else out + term
        return out.reshape(b, c, h, w)


class MRLALight(_Attention):
    """MRLA-L: O^l = lambda (.) O^{l-1} + gate(Q^l K^l / sqrt(d)) V^l (eq. 4), O^{l-1} = identity."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.gate = nn.Sigmoid()
        self.lambda_ = nn.Parameter(torch.randn(channels))  # lambda_o^l of eq. (3)-(4)

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x)
        gate = self.gate((q * k).sum(-1) * self.scale)  # Q^l [F_k^l(x^l)]^T per head: [b, g]
        out = gate.view(b, self.heads, 1, 1, 1) * v.view(b, self.heads, self.head_dim, h, w)
        return out.view(b, c, h, w) + self.lambda_.view(1, c, 1, 1) * identity  # eq. (4)


class LayerAttentionMixin:
    """The attention branch of one layer: MRLA-B or MRLA-L, its BN (and ReLU), drop-path, and
    ELA's skip flag (the ``attention_skip`` buffer). Used by :class:`MRLABottleneck` (the zoo) and
    :class:`LayerAttentionBlock` (any user block, :func:`layerwise.ela.attach_layer_attention`)."""

    def _init_attention(self, channels: int, variant: str, values: str) -> None:
        if variant not in VARIANTS:
            raise ModelConfigError(f"MRLA variant must be 'b' or 'l', not {variant!r}")
        self.variant = variant
        self.attention = MRLABase(channels, values) if variant == "b" else MRLALight(channels)
        self.attention_norm = nn.BatchNorm2d(channels)
        # in place: BN's backward needs its input, not its output
        self.attention_act = nn.ReLU(inplace=True) if variant == "b" else nn.Identity()
        # stochastic depth on the attention branch (the reference recipe's drop-path, 0 = off)
        self.attention_drop = DropPath(0.0)
        # ELA's skip flag, a buffer so that it travels with the weights (state dict, checkpoints)
        self.register_buffer("attention_skip", torch.zeros((), dtype=torch.bool))

    @property
    def skip_attention(self) -> bool:
        """True when ELA removed this block's attention layer (stored in the ``attention_skip`` buffer)."""
        return bool(self.attention_skip)

    @skip_attention.setter
    def skip_attention(self, value: bool) -> None:
        self.attention_skip.fill_(bool(value))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "attention_skip"
        if key not in state_dict:  # written before the skip set was part of the model: none skipped
            log.info("the state dict has no %s (saved before ELA's skip set was part of the model): this "
                     "attention layer is loaded as not skipped", key)
            state_dict[key] = torch.zeros((), dtype=torch.bool)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _attend(self, out: torch.Tensor, context: StageContext | None, identity: torch.Tensor | None) -> torch.Tensor:
        """``out`` plus this layer's attention output (ELA eq. 1-2 for MRLA-B, eq. 3-4 for MRLA-L)."""
        if self.skip_attention:  # removed entirely: no Q, K, V, no output, nothing joins the stage
            return out
        if self.variant == "b":
            a = self.attention(out, context if context is not None else StageContext())
        else:
            a = self.attention(out, identity if identity is not None else torch.zeros_like(out))
        return out + self.attention_drop(self.attention_act(self.attention_norm(a)))


class MRLABottleneck(LayerAttentionMixin, Bottleneck):
    """A bottleneck block followed by one MRLA attention layer (``variant`` "b" or "l")."""

    block_kind = "bottleneck-mrla"

    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "projection",
                 act_layer: type[nn.Module] = nn.ReLU, variant: str = "b", values: str = "sum"):
        super().__init__(in_ch, planes, stride, shortcut, act_layer)
        self._init_attention(self.out_channels, variant, values)

    def forward(self, x: torch.Tensor, context: StageContext | None = None) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act(identity + self.drop_path(self.residual(x)))  # x_t = ReLU(res_t + o_{t-1})
        return self._attend(out, context, identity)


class _SharedStage:
    """The key/value lists of one stage of a user's model, shared by its LayerAttentionBlocks."""

    def __init__(self) -> None:
        self.context: StageContext | None = None


class LayerAttentionBlock(LayerAttentionMixin, nn.Module):
    """Any block of a user's model followed by one MRLA layer: ``out = block(x)``, then
    ``out + ReLU(BN(MRLA-B(out)))`` (or ``out + BN(MRLA-L(out, x))``), placed as in the zoo's
    :class:`MRLABottleneck`.

    The model's own forward calls the block as before (``block(x)``), so the stage's key/value
    lists cannot be passed along: the blocks of one stage share them through a plain object. The
    first block of the stage starts fresh lists at every forward, the last one drops them, so
    nothing is kept between forwards. MRLA-L's O^{l-1} is the block's input when it has the
    output's shape, else that term is zero (a block that changes shape has no earlier output of
    its size)."""

    block_kind = "layer-attention"

    def __init__(self, block: nn.Module, channels: int, stage: _SharedStage, stage_index: int, position: int,
                 stage_length: int, variant: str = "b", values: str = "sum"):
        super().__init__()
        self.block = block
        self._init_attention(channels, variant, values)
        self.__dict__["_stage"] = stage  # shared with the other blocks of the stage, not a submodule
        self.stage_index, self.stage_position, self.stage_length = stage_index, position, stage_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        stage = self._stage
        if self.stage_position == 0 or stage.context is None:
            stage.context = StageContext()  # MRLA-B's lists reset at the first layer of a stage
        context = stage.context
        try:
            return self._attend(out, context, x if x.shape == out.shape else None)
        finally:
            if self.stage_position == self.stage_length - 1:
                stage.context = None

    def extra_repr(self) -> str:
        return f"stage={self.stage_index}, position={self.stage_position}, variant={self.variant!r}"


class MRLAStage(nn.Sequential):
    """A stage of MRLA blocks: one fresh key/value context per forward (MRLA-B's lists reset here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = StageContext(capacity=len(self))
        for block in self:
            x = block(x, context)
        return x


class MRLAResNet(CifarResNet):
    """CIFAR bottleneck ResNet (9n+2) with an MRLA layer after every block."""

    def __init__(self, n: int, in_channels: int, num_classes: int, variant: str, values: str):
        super().__init__(partial(MRLABottleneck, variant=variant, values=values), n, in_channels,
                         num_classes, "projection")
        self.mrla_variant = variant
        for i in (1, 2, 3):
            setattr(self, f"layer{i}", MRLAStage(*getattr(self, f"layer{i}")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A state dict without the ``attention_skip`` buffers (saved before the skip set was part of
        the model) loads with no attention layer skipped; one note is logged for the whole model."""
        missing = [f"{prefix}{name}.attention_skip" for name, _ in mrla_blocks(self)
                   if f"{prefix}{name}.attention_skip" not in state_dict]
        if missing:
            log.warning("the state dict has no ELA skip set (%d attention_skip buffers missing, e.g. %s): it was "
                        "saved before the skip set was part of the model; loading it with no attention layer "
                        "skipped", len(missing), missing[0])
            for key in missing:
                state_dict[key] = torch.zeros((), dtype=torch.bool)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def mrla_blocks(model: nn.Module) -> list[tuple[str, LayerAttentionMixin]]:
    """``(name, block)`` of every MRLA block of ``model`` (a zoo :class:`MRLABottleneck` or a user
    block wrapped in a :class:`LayerAttentionBlock`) in forward order."""
    zoo = [(name, m) for name, m in model.named_modules() if isinstance(m, MRLABottleneck)]
    user = [(name, m) for name, m in model.named_modules() if isinstance(m, LayerAttentionBlock)]
    return zoo + sorted(user, key=lambda nm: (nm[1].stage_index, nm[1].stage_position))


def _build(name: str, n: int, variant: str, input_shape, num_classes: int, drop_path: float,
           drop_path_schedule: str, zero_init_residual: bool, values: str,
           attention_drop_path: float = 0.0) -> MRLAResNet:
    c, _, _ = expect_image(name, input_shape)
    model = MRLAResNet(n, c, num_classes, variant, values)
    finish_residual_model(model, drop_path, drop_path_schedule, zero_init_residual)
    reference_init(model)
    set_attention_drop_path(model, attention_drop_path)
    return model


def set_attention_drop_path(model: nn.Module, p: float) -> None:
    """Drop-path with probability ``p`` on every block's attention branch (the output added after
    the block's BN (and ReLU)), per sample and scaled by 1/(1 - p) when kept, as the references'
    recipe (0.2 there) does. The same ``p`` for every block: the references use one rate."""
    p = check_drop_path(p)
    for _, block in mrla_blocks(model):
        block.attention_drop = DropPath(p)


def reference_init(model: nn.Module) -> None:
    """Re-initialise the attention layers as the reference implementations do.

    ``finish_residual_model`` gives every Conv1d and Conv2d Kaiming-normal (fan_out) weights. The
    CIFAR reference (the MRLA ResNets in the code of Dynamic Layer Attention, arXiv 2406.13392) and
    the official MRLA code (Fang et al., arXiv 2302.03985) run their init loop over ``nn.Conv2d``
    (normal with std sqrt(2 / (k*k*out))) and BatchNorm only, so the 1-channel Conv1d Q and K
    layers keep PyTorch's default init (``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(k), 1/sqrt(k))).
    The CIFAR reference is the one followed, as these models are its CIFAR ResNets. With Kaiming on
    Q and K the attention scores come out several times larger and the softmax starts saturated, so
    ELA's first KL measurement (epochs 1-3) would be taken on near one-hot distributions. The
    depthwise V conv is a Conv2d and keeps the N(0, sqrt(2 / (9 C))) both references give it; MRLA-L's
    lambda is N(0, 1) (``torch.randn`` in the reference).
    """
    for _, block in mrla_blocks(model):
        block.attention.query.reset_parameters()  # PyTorch's default Conv1d init, as the references
        block.attention.key.reset_parameters()
        if block.variant == "l":  # init_weights leaves Parameters alone; restate lambda's N(0, 1) init
            nn.init.normal_(block.attention.lambda_)


def _register(name: str, n: int, variant: str, what: str) -> None:
    @register_model(name)
    def factory(input_shape, num_classes, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False, values: str = "sum", attention_drop_path: float = 0.0
                ) -> MRLAResNet:
        return _build(name, n, variant, input_shape, num_classes, drop_path, drop_path_schedule,
                      zero_init_residual, values, attention_drop_path)

    factory.__doc__ = f"CIFAR bottleneck ResNet 9n+2 (n={n}) with {what}."


for _depth, _n in ((20, 2), (56, 6), (110, 12)):
    _register(f"resnet{_depth}-mrla-b", _n, "b", "MRLA-B layer attention")
    _register(f"resnet{_depth}-mrla-l", _n, "l", "MRLA-L layer attention")
    _register(f"resnet{_depth}-ela", _n, "b", "MRLA-B layer attention, trained with ELA's skipping (layerwise.ela)")
