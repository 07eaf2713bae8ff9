"""A second importance estimator beyond the paper: Hessian-trace sensitivity in the spirit of HAWQ
(Dong et al., HAWQ-V2, 2020).

For each layer, Tr(H_l) of the validation cross-entropy with respect to W_l is estimated with
Hutchinson's method, E_v[v^T H_l v] over Rademacher vectors v (Hessian-vector products by double
back-propagation). The sensitivity of layer l to compression at the probe setting is HAWQ-V2's
Omega_l = Tr(H_l) / n_l * ||Q(W_l) - W_l||^2, the second-order estimate of the loss increase;
A_l is Omega_l normalised by its maximum, as for the measured accuracy drops.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.base import make_loader
from ..train import evaluate
from ..train.evaluation import logits_of
from .importance import Sensitivity
from .quantize import magnitude_mask, quantize_weight


def hutchinson_traces(model: nn.Module, targets: list[tuple[str, nn.Module]], val, *, samples: int = 8,
                      batches: int = 2, batch_size: int = 64, device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """Tr(H_l) per layer, averaged over ``samples`` Rademacher vectors and ``batches`` val batches."""
    was_training = model.training
    model.eval()
    params = [mod.weight for _, mod in targets]
    traces = {name: 0.0 for name, _ in targets}
    gen = torch.Generator().manual_seed(seed)
    loader = val if isinstance(val, DataLoader) else make_loader(val, batch_size=batch_size, shuffle=False)
    n_batches = 0
    for x, y in itertools.islice(loader, batches):
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(logits_of(model(x)), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for _ in range(samples):
            vs = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params]
            hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
            for (name, _), hv, v in zip(targets, hvs, vs):
                traces[name] += float((hv * v).sum()) / samples
        n_batches += 1
    model.train(was_training)
    return {k: v / max(n_batches, 1) for k, v in traces.items()}


def hessian_sensitivity(model: nn.Module, targets: list[tuple[str, nn.Module]], val, *, probe_ratio: float,
                        probe_bits: int, samples: int = 8, batches: int = 2, device: str = "cpu",
                        seed: int = 0) -> Sensitivity:
    traces = hutchinson_traces(model, targets, val, samples=samples, batches=batches, device=device, seed=seed)
    omega = {}
    for name, mod in targets:
        w = mod.weight.detach()
        q = quantize_weight(w, magnitude_mask(w, probe_ratio), probe_bits).dequantize()
        omega[name] = max(traces[name], 0.0) / w.numel() * float(((q - w) ** 2).sum())
    base = evaluate(model, val, device=device)
    return Sensitivity("hessian", base.accuracy, base.loss, {k: 0.0 for k in omega}, dict(omega),
                       dict(omega))
