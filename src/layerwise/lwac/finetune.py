"""Training the gates (and the network) with the calibration regulariser of eq. (5).

L_total = L_task + beta * sum_i |alpha_{i+1} - alpha_i| + delta * sum_i alpha_i * C_i

During training every gated ACU decides with its neural controller, R_i(x) in [0, 1] and
z = gamma * R_i(x) - lambda * m * C_i (eq. 2), and, in ``hard`` mode, applies the DEPLOYED
decision as a straight-through hard gate: forward ``alpha = 1[z >= logit(threshold)]`` (the
residual branch kept or dropped, exactly what the deployed model will compute), backward the
gradient of R_i(x) (ConvNet-AIG, Veit & Belongie, arXiv:1711.11503). Training and deployment thus
take the same paths; a soft-gate fine-tune, as a first version had, trained a function the
hard-gated model never computes. In ``soft`` mode alpha = sigmoid(z) (eq. 1).

``freeze_base=False`` trains the network jointly with its gates (the ``learned`` policy of
``layerwise lwac``); the base's BatchNorm layers then run in training mode. ``target`` switches
eq. (5)'s cost term to its target-rate form (:func:`layerwise.lwac.equations.regulariser`).

:func:`train_learned_gates` is the whole recipe the command uses: standardise each controller on
training summaries, open every gate (R = 0.9 at the start), set lambda so the pressure
lambda * C_i is gamma / 2 for a unit of mean cost, and train jointly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import make_loader
from .config import LWACError
from .controller import summarise
from .equations import regulariser
from .runtime import LWACModel

log = logging.getLogger(__name__)


@dataclass
class FineTuneConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-2  # the gates' (controllers') Adam learning rate
    base_lr: float = 1e-3  # the network's Adam learning rate (freeze_base=False)
    beta: float = 0.01  # eq. (5) smoothness weight
    delta: float = 0.1  # eq. (5) cost weight
    target: float | None = None  # None: eq. (5)'s linear cost term; t: its target-rate form
    freeze_base: bool = True
    seed: int = 0

    def validate(self) -> "FineTuneConfig":
        if self.epochs < 1 or self.batch_size < 1:
            raise LWACError(f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1")
        if self.target is not None and not 0.0 <= self.target <= 1.0:
            raise LWACError(f"the gate target rate must be in [0, 1], not {self.target}: e.g. 0.6")
        if self.beta < 0 or self.delta < 0:
            raise LWACError(f"beta ({self.beta}) and delta ({self.delta}) of eq. (5) must be >= 0")
        return self


def finetune(lwac: LWACModel, train_set, config: FineTuneConfig | None = None) -> list[dict]:
    """Train the controllers (and the base when not frozen) with eq. (5); returns per-epoch
    ``loss`` (eq. 5 total), ``task_loss`` and ``run_rate`` (mean gate value over gated units)."""
    cfg = (config or FineTuneConfig()).validate()
    gated = [a for a in lwac.acus if a.gated and a.controller is not None]
    if not gated:
        raise LWACError("training gates needs neural controllers on gated units: attach with policy='neural' "
                        "or policy='learned'")
    if train_set is None or len(train_set) == 0:
        raise LWACError("the training split is empty: pass a non-empty training split")
    params = [p for a in gated for p in a.controller.parameters()]
    ids = {id(p) for p in params}
    base_params = [p for p in lwac.model.parameters() if id(p) not in ids]
    for p in base_params:
        p.requires_grad_(not cfg.freeze_base)
    for a in gated:
        a.controller.unfuse()
    groups = [{"params": params, "lr": cfg.lr}]
    if not cfg.freeze_base:
        groups.append({"params": base_params, "lr": cfg.base_lr})
    opt = torch.optim.Adam(groups)
    costs = torch.tensor([lwac.state.cost[a.unit_index] for a in gated])
    st = lwac.state
    history = []
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed)
    flags = [(m, m.training) for m in lwac.modules()]
    lwac.eval()
    if not cfg.freeze_base:
        lwac.model.train()
        for a in gated:
            a.controller.eval()
    st.soft_train = True
    try:
        for epoch in range(cfg.epochs):
            tot = task = rate = 0.0
            n = 0
            for x, y in loader:
                st.alpha_log = []
                logits = lwac.model(x)
                alphas = torch.stack([a for _, a in sorted(st.alpha_log, key=lambda t: t[0])], dim=1)
                ce = F.cross_entropy(logits, y)
                loss = ce + regulariser(alphas, costs, cfg.beta, cfg.delta, cfg.target)  # eq. (5)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item() * len(y)
                task += ce.item() * len(y)
                rate += alphas.detach().mean().item() * len(y)
                n += len(y)
            history.append({"epoch": epoch, "loss": tot / max(1, n), "task_loss": task / max(1, n),
                            "run_rate": rate / max(1, n)})
            log.info("LWAC gate training epoch %d: eq. (5) loss %.4f, task %.4f, gates open %.3f",
                     epoch + 1, *(history[-1][k] for k in ("loss", "task_loss", "run_rate")))
    finally:
        st.soft_train = False
        st.alpha_log = []
        for m, was in flags:
            m.training = was
        for p in base_params:
            p.requires_grad_(True)
        for a in gated:
            a.controller.fuse()
    return history


@torch.no_grad()
def init_gates(lwac: LWACModel, train_set, *, open_prob: float = 0.9, batch_size: int = 128,
               max_samples: int = 512, seed: int = 0) -> float:
    """Standardise each controller on the summaries of its unit's input over (up to
    ``max_samples``) training samples, draw small random weights and set its bias so that
    R = ``open_prob`` for an average input;
    set lambda so that lambda * C_i = gamma / 2 for a unit of mean cost. Returns that lambda."""
    gated = [a for a in lwac.acus if a.gated and a.controller is not None]
    if not gated:
        raise LWACError("no gated unit with a controller: attach with policy='learned'")
    n = min(len(train_set), max_samples)
    x = torch.stack([train_set[i][0] for i in range(n)])
    feats: dict[int, list] = {a.unit_index: [] for a in gated}
    hooks = [a.register_forward_pre_hook(lambda m, args, i=a.unit_index: feats[i].append(
        summarise(args[0], m.controller.summary))) for a in gated]
    try:
        with lwac.pinned():
            for s in range(0, n, batch_size):
                lwac.model(x[s:s + batch_size])
    finally:
        for h in hooks:
            h.remove()
    logit = float(torch.logit(torch.tensor(open_prob)))
    gen = torch.Generator().manual_seed(seed)
    for a in gated:
        c = a.controller
        c.reset()
        c.set_standardisation(torch.cat(feats[a.unit_index]))
        # small random weights, N(0, 1/F) on standardised features: the logits of different inputs
        # start about one unit apart, so as the target-rate term lowers the bias the gate closes for
        # some inputs first instead of for all at once (zero weights would give every input the same R)
        last = c.fc2
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) / last.weight.shape[1] ** 0.5)
        c.fc2.bias.fill_(logit)
    mean_cost = sum(lwac.state.cost[a.unit_index] for a in gated) / len(gated)
    lam = 0.5 * lwac.config.gamma / max(mean_cost, 1e-9)
    lwac.set_lambda(lam)
    return lam


def train_learned_gates(lwac: LWACModel, train_set, config: FineTuneConfig) -> dict:
    """The ``learned`` policy's recipe: :func:`init_gates`, then joint training with eq. (5)."""
    lam = init_gates(lwac, train_set, seed=config.seed)
    history = finetune(lwac, train_set, config)
    return {"lam_train": lam, "history": history, "config": {k: getattr(config, k) for k in (
        "epochs", "batch_size", "lr", "base_lr", "beta", "delta", "target", "freeze_base", "seed")}}
