"""Optional fine-tune with the calibration regulariser of eq. (5).

L_total = L_task + beta * sum_i |alpha_{i+1} - alpha_i| + delta * sum_i alpha_i * C_i

During the fine-tune every gated ACU applies the SOFT gate with alpha_i(x) =
sigmoid(gamma * R_i(x) - lambda * C_i) from its (differentiable) neural controller, so the task
loss and eq. (5)'s two terms reach the controllers' weights. The sums run over the gated units in
forward order (units that are never gated keep alpha = 1 and add a constant). The base model is
frozen by default (its BatchNorm statistics too: it stays in eval mode); ``freeze_base=False``
also trains its weights, which SkipNet / ConvNet-AIG style joint training needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import make_loader
from .config import LWACError
from .equations import regulariser
from .runtime import LWACModel

log = logging.getLogger(__name__)


@dataclass
class FineTuneConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = 0.01  # eq. (5) smoothness weight
    delta: float = 0.1  # eq. (5) cost weight
    freeze_base: bool = True
    seed: int = 0


def finetune(lwac: LWACModel, train_set, config: FineTuneConfig | None = None) -> list[dict]:
    """Train the controllers (and the base when not frozen) with eq. (5); returns per-epoch losses."""
    cfg = config or FineTuneConfig()
    gated = [a for a in lwac.acus if a.gated and a.controller is not None]
    if not gated:
        raise LWACError("fine-tuning needs neural controllers on gated units: attach with policy='neural'")
    if train_set is None or len(train_set) == 0:
        raise LWACError("the fine-tune split is empty: pass a non-empty training split")
    params = [p for a in gated for p in a.controller.parameters()]
    base_params = [p for n, p in lwac.model.named_parameters() if ".controller." not in n]
    for p in base_params:
        p.requires_grad_(not cfg.freeze_base)
    for a in gated:
        a.controller.fused = False  # standardisation buffers are already folded; keep the weights as they are
        a.controller.invalidate()  # the weights are about to change: no stale batch-1 cache
    opt = torch.optim.Adam(params + ([] if cfg.freeze_base else base_params), lr=cfg.lr)
    costs = torch.tensor([lwac.state.cost[a.unit_index] for a in gated])
    st = lwac.state
    history = []
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed)
    flags = [(m, m.training) for m in lwac.modules()]
    lwac.eval()
    if not cfg.freeze_base:
        lwac.model.train()
    st.soft_train = True
    try:
        for epoch in range(cfg.epochs):
            tot, n = 0.0, 0
            for x, y in loader:
                st.alpha_log = []
                logits = lwac.model(x)
                alphas = torch.stack([a for _, a in sorted(st.alpha_log, key=lambda t: t[0])], dim=1)
                loss = F.cross_entropy(logits, y) + regulariser(alphas, costs, cfg.beta, cfg.delta)  # eq. (5)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item() * len(y)
                n += len(y)
            history.append({"epoch": epoch, "loss": tot / max(1, n)})
            log.info("LWAC fine-tune epoch %d: eq. (5) loss %.4f", epoch + 1, tot / max(1, n))
    finally:
        st.soft_train = False
        st.alpha_log = []
        for m, was in flags:
            m.training = was
        for p in base_params:
            p.requires_grad_(True)
    return history
