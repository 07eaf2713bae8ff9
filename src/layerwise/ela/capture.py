"""Find a model's attention layers and capture each one's distribution over its stage's layers.

MRLA-B: the softmax of the layer itself, averaged over batch and heads. MRLA-L has no distribution
over layers (one sigmoid gate per head); its probe is softmax_s(Q_t . K_s / sqrt(d)) over the keys
of the stage's layers so far, from MRLA-L's own Q and K, under no_grad (our inference; not from the
paper). Hooks live only inside the ``with`` block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import LayerwiseError
from ..models.mrla import LayerAttentionBlock, LayerAttentionMixin, MRLABottleneck, MRLAStage


@dataclass
class AttentionLayer:
    name: str  # the block's name in model.named_modules()
    stage: int  # 0-based stage index
    position: int  # 0-based position in its stage
    block: LayerAttentionMixin  # a zoo MRLABottleneck or a user block's LayerAttentionBlock


def find_attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """Every MRLA attention layer of ``model`` in forward order, or a LayerwiseError if it has none."""
    layers: list[AttentionLayer] = []
    stage = 0
    for name, module in model.named_modules():
        if isinstance(module, MRLAStage):
            for pos, (child, block) in enumerate(module.named_children()):
                if isinstance(block, MRLABottleneck):
                    layers.append(AttentionLayer(f"{name}.{child}" if name else child, stage, pos, block))
            stage += 1
    user = sorted(((n, m) for n, m in model.named_modules() if isinstance(m, LayerAttentionBlock)),
                  key=lambda nm: (nm[1].stage_index, nm[1].stage_position))
    for name, block in user:  # attached to a user's model by layerwise.ela.attach_layer_attention
        layers.append(AttentionLayer(name, stage + block.stage_index, block.stage_position, block))
    if not layers:
        raise LayerwiseError(f"{type(model).__name__} has no MRLA attention layers for ELA to skip: use a layer "
                             "attention model such as resnet56-ela, resnet56-mrla-b or resnet56-mrla-l, or attach "
                             "them to your model with layerwise.ela.attach_layer_attention(model, stages, x)")
    return layers


def active_stages(layers: list[AttentionLayer]) -> list[list[str]]:
    """Names of the not-skipped attention layers of each stage, in forward order."""
    stages: dict[int, list[str]] = {}
    for layer in layers:
        if not layer.block.skip_attention:
            stages.setdefault(layer.stage, []).append(layer.name)
    return [stages[s] for s in sorted(stages)]


class AttentionCapture:
    """Sum of per-batch mean distributions per layer while inside ``with``; ``means()`` averages them."""

    def __init__(self, layers: list[AttentionLayer]):
        self.layers = layers
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._handles: list = []
        self._qk: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._stage_keys: dict[int, list[torch.Tensor]] = {}

    def _add(self, name: str, dist: torch.Tensor) -> None:
        dist = dist.detach().double().cpu()
        if name in self._sums and self._sums[name].shape != dist.shape:  # the skip set changed: start over
            del self._sums[name], self._counts[name]
        self._sums[name] = self._sums.get(name, 0) + dist
        self._counts[name] = self._counts.get(name, 0) + 1

    def _softmax_hook(self, layer: AttentionLayer):
        def hook(module, inputs, output):  # output [b, g, t]: MRLA-B's weights over the stage's layers
            self._add(layer.name, output.detach().mean(dim=(0, 1)))
        return hook

    def _save_hook(self, layer: AttentionLayer, which: int):
        def hook(module, inputs, output):
            q, k = self._qk.get(layer.name, (None, None))
            self._qk[layer.name] = (output.detach(), k) if which == 0 else (q, output.detach())
        return hook

    def _probe_hook(self, layer: AttentionLayer):
        att = layer.block.attention

        def hook(module, inputs, output):
            q, k = self._qk.pop(layer.name)
            b = q.shape[0]
            q, k = q.view(b, att.heads, att.head_dim), k.view(b, att.heads, att.head_dim)
            if layer.position == 0 or layer.stage not in self._stage_keys:
                self._stage_keys[layer.stage] = []
            keys = self._stage_keys[layer.stage]
            keys.append(k)
            with torch.no_grad():
                scores = torch.einsum("bgd,bgtd->bgt", q, torch.stack(keys, dim=2)) * att.scale
                self._add(layer.name, scores.softmax(dim=-1).mean(dim=(0, 1)))
        return hook

    def __enter__(self) -> "AttentionCapture":
        for layer in self.layers:
            att = layer.block.attention
            if layer.block.variant == "b":
                self._handles.append(att.softmax.register_forward_hook(self._softmax_hook(layer)))
            else:
                self._handles.append(att.query.register_forward_hook(self._save_hook(layer, 0)))
                self._handles.append(att.key.register_forward_hook(self._save_hook(layer, 1)))
                self._handles.append(att.register_forward_hook(self._probe_hook(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._qk.clear()
        self._stage_keys.clear()

    def means(self) -> dict[str, np.ndarray]:
        """Mean distribution of every layer that ran since the last ``reset``."""
        return {k: (v / self._counts[k]).numpy() for k, v in self._sums.items()}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()


@torch.no_grad()
def capture_distributions(model: nn.Module, loader, device: str = "cpu", max_batches: int | None = None
                          ) -> dict[str, np.ndarray]:
    """Mean attention distribution of every layer over ``loader`` (eval mode), for the figures."""
    layers = find_attention_layers(model)
    was_training = model.training
    model.eval()
    try:
        with AttentionCapture(layers) as cap:
            for i, (x, _) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                model(x.to(device))
            return cap.means()
    finally:
        model.train(was_training)
