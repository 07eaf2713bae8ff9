"""MRLA-B's weighted sum over a stage's values, with every value stored once (``values="buffer"``).

MRLA-B (Fang et al., "Cross-Layer Retrospective Retrieving via Layer Attention", arXiv 2302.03985,
eq. 1-2; ELA, arXiv 2503.06473, eq. 1-2) computes at layer t of a stage, per sample and head,

    O_t = sum_{s <= t} a_{t,s} V_s,        a_t = softmax_s(Q_t . K_s / sqrt(d)),

where V_s = F_v^s(x^s) is layer s's value (a [d, H, W] block of channels per head). The reference
concatenates the values of every earlier layer again at each layer (``torch.cat``: t copies at
layer t). No exact running summary exists: a_{t,s} depends on this layer's query, so O_t is a new
combination of all earlier V_s at every layer (MRLA-L is the paper's recurrent approximation). What
can be avoided is copying and re-reading more than needed:

* forward: V_t is written once into slot t of a per-stage buffer [b*g, capacity, d*H*W]; O_t is
  one batched matrix product ``a_t [b*g, 1, t+1] @ V[:, :t+1]`` (reads each stored value once);
* backward (autograd on a buffer that later layers write into is not possible, so it is written
  out here): with G_t = dL/dO_t,

      dL/da_{t,s} = <G_t, V_s>                     one batched product over the stored values,
      dL/dV_s     = sum_{t >= s} a_{t,s} G_t        one batched product over the stored G_t.

  The second sum needs the G_t of later layers. Layer t's backward runs only after every later
  layer's of the stage: O_t feeds x_t, every later x_{t'} depends on x_t, and V_{t'} = F_v(x_{t'})
  joins layer t''s product, so dL/dx_t (hence G_t) is complete only after those nodes ran. Each
  layer stores its G_t (and the attention rows are stored in the forward) for the earlier layers;
  the slot of a later layer whose output never reached the loss (its backward never ran) is zeroed
  when first read; the buffer is not zero-filled as a whole (a full pass over it).

Outputs and gradients equal the stacked reference up to float32 summation order (tested against
an explicit computation). One backward per forward; a second backward over a retained graph
rewrites every slot before it is read, so it gives the same gradients. Not twice differentiable.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class ValueStore:
    """The values (and, in the backward, the output gradients) of one stage's MRLA-B layers."""

    def __init__(self, capacity: int = 4):
        self.capacity = max(int(capacity), 1)
        self.count = 0
        self.values: torch.Tensor | None = None  # [b*g, capacity, D]: V_s in slot s
        self.attn: torch.Tensor | None = None  # [b*g, capacity, capacity]: row t holds a_{t, 0..t}
        self.grads: torch.Tensor | None = None  # [b*g, capacity, D]: G_t in slot t (backward only)
        self.written: set[int] = set()  # slots of ``grads`` that hold a G_t (or were zeroed)

    def _grow(self, capacity: int) -> None:
        values = self.values.new_empty(self.values.shape[0], capacity, self.values.shape[2])
        values[:, :self.count] = self.values[:, :self.count]
        attn = self.attn.new_zeros(self.attn.shape[0], capacity, capacity)
        attn[:, :self.count, :self.count] = self.attn[:, :self.count, :self.count]
        self.values, self.attn, self.capacity = values, attn, capacity

    def append(self, v: torch.Tensor, heads: int, attn: torch.Tensor) -> int:
        """Store V_t ([b, C, H, W]) and a_t ([b, g, t+1]); return t."""
        b, c, h, w = v.shape
        bg, width = b * heads, (c // heads) * h * w
        if self.values is None:
            self.values = v.new_empty(bg, self.capacity, width)
            self.attn = v.new_zeros(bg, self.capacity, self.capacity)
        elif self.values.shape[0] != bg or self.values.shape[2] != width:
            raise ValueError(f"MRLA-B layers of one stage need values of one shape, got {tuple(v.shape)}")
        if self.count == self.capacity:
            self._grow(2 * self.capacity)
        t = self.count
        self.values[:, t].view(b, heads, c // heads, h, w).copy_(v.unflatten(1, (heads, c // heads)))
        self.attn[:, t, :t + 1] = attn.detach().reshape(bg, t + 1)
        self.count += 1
        return t


class _WeightedValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, store: ValueStore) -> torch.Tensor:
        b, g, n = attn.shape
        t = store.append(v, g, attn)
        if n != t + 1:
            raise ValueError(f"layer {t} of the stage got {n} attention weights, not {t + 1}")
        # O_t = sum_{s<=t} a_{t,s} V_s  (eq. 2): [b*g, 1, t+1] @ [b*g, t+1, D]
        out = torch.bmm(attn.reshape(b * g, 1, n), store.values[:, :n])
        ctx.store, ctx.t, ctx.heads, ctx.v_shape = store, t, g, v.shape
        return out.view(v.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        store, t = ctx.store, ctx.t
        bg, _, width = store.values.shape
        g = grad.reshape(bg, 1, width)
        grad_attn = grad_v = None
        if ctx.needs_input_grad[0]:  # dL/da_{t,s} = <G_t, V_s>, s <= t
            grad_attn = torch.bmm(g, store.values[:, :t + 1].transpose(1, 2)).view(-1, ctx.heads, t + 1)
        if ctx.needs_input_grad[1]:  # dL/dV_t = sum_{t' >= t} a_{t',t} G_{t'}
            if store.grads is None or store.grads.shape[1] < store.count:
                # not zero-filled (a full pass over the stage's buffer): each layer's backward writes
                # its own slot, and only the slots of layers that never ran backward are zeroed below
                store.grads = store.values.new_empty(bg, store.count, width)
                store.written = set()
            store.grads[:, t].copy_(g.view(bg, width))
            store.written.add(t)
            n = store.count
            for s in range(t + 1, n):  # a later layer whose output never reached the loss: G = 0
                if s not in store.written:
                    store.grads[:, s].zero_()
                    store.written.add(s)
            weights = store.attn[:, t:n, t].unsqueeze(1)  # a_{t', t} for t' = t .. n-1: [b*g, 1, n-t]
            grad_v = torch.bmm(weights, store.grads[:, t:n]).view(ctx.v_shape)
        return grad_attn, grad_v, None


def weighted_values(attn: torch.Tensor, v: torch.Tensor, store: ValueStore) -> torch.Tensor:
    """Store layer t's value ``v`` [b, C, H, W] and return sum_s a_{t,s} V_s over the stage's
    stored values (``attn`` [b, g, t+1], t = the number of values stored before)."""
    return _WeightedValues.apply(attn, v, store)
