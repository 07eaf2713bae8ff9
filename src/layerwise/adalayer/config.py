"""AdaLayerNet's knobs and per-layer plan, as dataclasses.

Defaults and the sign convention of eq. (1) are explained in the package docstring and
docs/adalayer.md; every field names the equation it belongs to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import LayerwiseError


@dataclass
class AdaLayerConfig:
    # eq. (1) I_l = alpha * A_l + beta * F_l, clipped to [0, 1]
    alpha: float = 1.0
    beta: float = -1.0  # negative: a layer with a larger share of the MACs is protected less
    importance: str = "accuracy"  # "accuracy" (the paper's A_l, measured) or "hessian" (Hutchinson)
    probe_ratio: float = 0.8  # the probe setting that measures A_l: prune this fraction ...
    probe_bits: int = 2  # ... and quantize to this many bits, one layer at a time
    probe_metric: str = "loss"  # A_l from the val "loss" increase (default) or the val "accuracy" drop
    normalisation: str = "log"  # A_l = log1p(s/median)/log1p(max/median) ("log") or s/max ("max")
    hessian_samples: int = 8  # Hutchinson vectors per layer estimate
    hessian_batches: int = 2
    # eq. (2) P_l = gamma * (1 - I_l) + delta * R_l, clipped to [0, p_max]
    gamma: float = 1.0
    delta: float = 0.3
    p_max: float = 0.95
    # eq. (3) B_l = round(B_max - lam * (1 - I_l)), clipped to [b_min, b_max]
    lam: float = 4.0
    b_min: int = 2
    b_max: int = 8
    # eq. (5) L = CE + eta * sum_l (1 - I_l) * ||W_l||_1
    eta: float = 1e-5  # used as given only when eta_share is 0
    eta_share: float = 0.1  # > 0: eta calibrated so the term is this share of the loss at the start
    # fine-tune after compression (masks fixed, fake-quant with STE)
    finetune_epochs: int = 3
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 64
    # storage of tensors AdaLayerNet does not compress (BatchNorm, biases, unsupported layers)
    passthrough_dtype: str = "float16"
    structured: bool = False
    # eq. (6): "eq23" = the paper's P_l, B_l scaled by one knob to the budget; "ilp" = an integer
    # program over per-layer (P, B) options minimising the probe-predicted damage (pipeline._ilp_allocation)
    allocation: str = "eq23"
    seed: int = 0

    def validate(self) -> "AdaLayerConfig":
        def bad(msg: str) -> LayerwiseError:
            return LayerwiseError(f"invalid AdaLayerNet config: {msg}")
        if not 2 <= self.b_min <= self.b_max <= 16:
            raise bad(f"bit widths b_min={self.b_min}, b_max={self.b_max}; use 2 <= b_min <= b_max <= 16")
        if not 0.0 <= self.p_max < 1.0:
            raise bad(f"p_max={self.p_max}; use a maximum pruning ratio in [0, 1)")
        if not 0.0 <= self.probe_ratio < 1.0 or not 2 <= self.probe_bits <= 16:
            raise bad(f"probe setting ratio={self.probe_ratio}, bits={self.probe_bits}; use ratio in [0, 1) "
                      "and 2..16 bits")
        if self.probe_metric not in ("loss", "accuracy"):
            raise bad(f"probe_metric={self.probe_metric!r}; use 'loss' or 'accuracy'")
        if self.normalisation not in ("log", "max"):
            raise bad(f"normalisation={self.normalisation!r}; use 'log' or 'max'")
        if self.importance not in ("accuracy", "hessian"):
            raise bad(f"importance={self.importance!r}; use 'accuracy' or 'hessian'")
        if self.passthrough_dtype not in ("float16", "float32"):
            raise bad(f"passthrough_dtype={self.passthrough_dtype!r}; use 'float16' or 'float32'")
        if min(self.gamma, self.delta, self.lam, self.eta) < 0:
            raise bad("gamma, delta, lam and eta must be >= 0")
        if not 0.0 <= self.eta_share < 1.0:
            raise bad(f"eta_share={self.eta_share}; use a share of the loss in [0, 1) (0: use eta as given)")
        if self.allocation not in ("eq23", "ilp"):
            raise bad(f"allocation={self.allocation!r}; use 'eq23' or 'ilp'")
        if self.finetune_epochs < 0:
            raise bad(f"finetune_epochs={self.finetune_epochs}; use 0 or more")
        return self

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LayerPlan:
    """What AdaLayerNet decided for one layer (one row of the paper's Fig. 6)."""

    name: str
    kind: str
    params: int
    macs: int
    accuracy_contribution: float  # A_l, normalised to [0, 1]
    mac_share: float  # F_l
    redundancy: float  # R_l
    importance: float  # I_l
    prune_ratio: float = 0.0  # P_l
    bits: int = 8  # B_l
    params_after: int | None = None  # nonzero weights (unstructured) or kept weights (structured)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Allocation:
    """P_l and B_l for every layer at one setting of the budget knob."""

    knob: float
    gamma: float
    delta: float
    lam: float
    prune_ratio: dict[str, float] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)
