"""The paper's equations (1)-(5) as small pure functions, plus the activation entropy H(h).

Each function names its equation; tests check them on hand-computed numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def calibrate(h: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """Eq. (1): h~_i = alpha_i * h_i (alpha per sample when a (B,) tensor)."""
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        alpha = alpha.view(-1, *([1] * (h.dim() - 1)))
    return h * alpha


def alpha(relevance, cost, gamma: float, lam: float):
    """Eq. (2): alpha_i = sigmoid(gamma_i * R_i - lambda_i * C_i) (floats or tensors)."""
    z = gamma * relevance - lam * cost
    return torch.sigmoid(z) if isinstance(z, torch.Tensor) else sigmoid(z)


def relevance(grad_norms: Sequence[float], entropies: Sequence[float], eta: float) -> float:
    """Eq. (3): R_i = 1/T sum_t ( ||dL/dh_i^(t)||_2 + eta * H(h_i^(t)) ) over the window of T passes.

    The entropy term is read as inside the window average (the paper's bracket is ambiguous).
    """
    if len(grad_norms) != len(entropies) or not grad_norms:
        raise ValueError("relevance needs equally many (>= 1) gradient norms and entropies")
    t = len(grad_norms)
    return sum(grad_norms) / t + eta * sum(entropies) / t


def cost(flops: float, latency: float, power: float, theta: Sequence[float]) -> float:
    """Eq. (4): C_i = theta_1 * FLOPs_i + theta_2 * Latency_i + theta_3 * Power_i (normalised inputs)."""
    t1, t2, t3 = theta
    return t1 * flops + t2 * latency + t3 * power


def normalise(values: Sequence[float]) -> list[float]:
    """Divide by the largest value, so the costliest unit has 1 (all zeros stay zeros)."""
    top = max(values) if values else 0.0
    return [v / top if top > 0 else 0.0 for v in values]


def regulariser(alphas: torch.Tensor, costs: torch.Tensor, beta: float, delta: float,
                target: float | None = None) -> torch.Tensor:
    """The two terms eq. (5) adds to the task loss, averaged over the batch:

    beta * sum_{i=1}^{L-1} |alpha_{i+1} - alpha_i| + delta * sum_{i=1}^{L} alpha_i * C_i

    ``alphas``: (B, L) or (L,); ``costs``: (L,).

    ``target`` t in [0, 1] (ours, after ConvNet-AIG's target-rate loss, Veit & Belongie,
    arXiv:1711.11503): the cost term becomes ``delta * sum_i C_i * (mean_batch alpha_i - t)^2``,
    so every gate is pulled toward running on a fraction t of the inputs, weighted by its cost,
    instead of toward zero. Eq. (5)'s linear term has no such set point: its only equilibrium
    with the task loss is wherever the gradients balance, which drifts to all-on or all-off.
    """
    a = alphas if alphas.dim() == 2 else alphas.unsqueeze(0)
    smooth = (a[:, 1:] - a[:, :-1]).abs().sum(dim=1).mean()
    c = costs.to(a)
    if target is None:
        spend = (a * c).sum(dim=1).mean()
    else:
        spend = (c * (a.mean(dim=0) - target) ** 2).sum()
    return beta * smooth + delta * spend


def activation_entropy(h: torch.Tensor) -> torch.Tensor:
    """H(h) per sample, in nats: the entropy of the distribution of activation energy over channels.

    p_c = mean over positions of |h_c| / sum_c of the same (channels = dim 1; a (B, F) vector
    uses its F features). This is our reading of the paper's "entropy of the activation
    distribution"; a bypassed branch (all zeros) has H = 0.
    """
    a = h.detach().abs().float()
    if a.dim() > 2:
        a = a.flatten(2).mean(dim=2)
    total = a.sum(dim=1, keepdim=True)
    p = a / total.clamp_min(1e-12)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
