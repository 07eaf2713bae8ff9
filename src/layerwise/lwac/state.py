"""The state every ACU of one model shares with the runtime: pressures, relevance, counters."""

from __future__ import annotations

from .config import LWACConfig


class LWACState:
    """Plain Python lists and flags: read by the ACUs at every inference, so nothing costly here.

    ``pressure[i]`` = lambda * m * C_i (eq. 2's cost term, m the battery multiplier; smoothed);
    ``relevance[i]`` the tracked R_i normalised to [0, 1] (heuristic policy); ``executed`` and
    ``bypassed`` count samples; ``pinned`` makes every ACU decide and then run its unit at
    alpha = 1 (the overhead check); ``forced`` maps a unit index to a forced bypass (bool or (B,)
    bool tensor); ``recording`` keeps per-sample (alpha, bypassed, entropy) in ``records``.
    """

    def __init__(self, num_units: int, config: LWACConfig):
        self.config = config
        self.z_threshold = config.z_threshold  # logit(threshold), read at every decision (config is fixed after attach)
        self.num_units = num_units
        self.lam = config.lam
        self.pressure = [0.0] * num_units
        self.relevance = [1.0] * num_units
        self.cost = [0.0] * num_units
        self.pinned = False
        self.forced: dict = {}
        self.track_now = False
        self.recording = False
        self.step = 0
        self.executed = [0] * num_units
        self.bypassed = [0] * num_units
        self.records: list[list[tuple[float, bool, float]]] = [[] for _ in range(num_units)]
        self.soft_train = False  # eq. (5) fine-tune: every gated unit soft-gated, alphas logged
        self.alpha_log: list = []

    def reset_counts(self) -> None:
        self.executed = [0] * self.num_units
        self.bypassed = [0] * self.num_units

    def clear_records(self) -> None:
        self.records = [[] for _ in range(self.num_units)]
