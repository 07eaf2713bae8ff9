"""The relevance tracker (section 4.3, part 3): a ring buffer of each unit's last T passes.

Each pass pushes the unit's gradient norm ||dL/dh_i|| (during calibration on the validation
split) or nothing (at deployment, no labels), and the activation entropy H(h_i). ``relevance``
is eq. (3) over what the window holds. At deployment the gradient term is the average kept from
calibration and the entropy term keeps moving with live inputs: the label-free proxy.
"""

from __future__ import annotations

from collections import deque

from .equations import relevance


class RingBuffer:
    """The last ``size`` values pushed, oldest first."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"ring buffer size must be >= 1, not {size}")
        self.size = size
        self._items: deque[float] = deque(maxlen=size)

    def push(self, value: float) -> None:
        self._items.append(float(value))

    def values(self) -> list[float]:
        return list(self._items)

    def mean(self) -> float | None:
        return sum(self._items) / len(self._items) if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class RelevanceTracker:
    """Per-unit windows of gradient norms and entropies; R_i by eq. (3)."""

    def __init__(self, num_units: int, window: int, eta: float):
        self.eta = eta
        self.grads = [RingBuffer(window) for _ in range(num_units)]
        self.entropies = [RingBuffer(window) for _ in range(num_units)]
        self.frozen_grad: list[float | None] = [None] * num_units

    def push(self, unit: int, entropy: float, grad_norm: float | None = None) -> None:
        if grad_norm is not None:
            self.grads[unit].push(grad_norm)
        self.entropies[unit].push(entropy)

    def freeze_gradients(self) -> None:
        """End of calibration: keep each unit's windowed gradient norm for deployment."""
        self.frozen_grad = [g.mean() for g in self.grads]

    def relevance(self, unit: int) -> float:
        """Eq. (3) over the window; at deployment (no new gradients) the frozen gradient term."""
        ents = self.entropies[unit].values()
        grads = self.grads[unit].values()
        if not ents:
            return 0.0
        if len(grads) == len(ents):
            return relevance(grads, ents, self.eta)
        g = self.frozen_grad[unit] if self.frozen_grad[unit] is not None else (self.grads[unit].mean() or 0.0)
        return relevance([g] * len(ents), ents, self.eta)

    def all(self) -> list[float]:
        return [self.relevance(i) for i in range(len(self.entropies))]
