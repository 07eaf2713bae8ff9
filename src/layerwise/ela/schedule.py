"""The staged skipping schedule: KL averaged over each window, EBQM at its end, cumulative."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .capture import AttentionLayer, active_stages
from .config import ElaConfig
from .ebqm import select
from .kl import adjacent_kl, normalised_kl

log = logging.getLogger(__name__)


@dataclass
class SkipEvent:
    """One decision at the end of a window: what was measured and which layers were removed."""

    epoch: int  # 1-based epoch at whose end the layers were removed (they are gone from epoch + 1 on)
    window: tuple[int, int]
    kl: dict[str, float]  # window-mean eq. (8) KL of every candidate layer (the paper's)
    quantile: float | None
    mapped: dict[str, float]  # y_j of the layers in S_gamma (EBQM step 6)
    skipped: list[str]  # removed at this event
    skipped_total: int  # removed so far, this event included
    kl_uniform: dict[str, float] = field(default_factory=dict)  # the same KL / uniform-attention KL at its position
    kl_norm: str = "paper"  # which of the two the decision used
    rule: str | None = None  # EBQM's degenerate-case rule, if one applied

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SkipSchedule:
    """Drives ELA during training: ``captures(epoch)`` says whether to record distributions in an
    epoch, ``end_epoch(epoch, distributions)`` computes the KL and, at a window's end, skips layers."""

    layers: list[AttentionLayer]
    config: ElaConfig
    epochs: int
    windows: tuple[tuple[int, int], ...] = ()
    events: list[SkipEvent] = field(default_factory=list)
    kl_history: list[dict] = field(default_factory=list)  # {"epoch": e, "kl": {...}, "kl_uniform": {...}}
    _window_kl: list[dict[str, float]] = field(default_factory=list)
    _window_kl_uniform: list[dict[str, float]] = field(default_factory=list)
    #: for the count-matched strategies (fixed, random, position): how many layers to remove at window
    #: ``w``, asked at that window's end (e.g. "as many as ELA has removed so far, minus mine")
    count_source: Callable[[int], int] | None = None

    def __post_init__(self) -> None:
        self.windows = self.config.validate(self.epochs)

    def window_index(self, epoch: int) -> int | None:
        for i, (start, end) in enumerate(self.windows):
            if start <= epoch <= end:
                return i
        return None

    def captures(self, epoch: int) -> bool:
        return self.window_index(epoch) is not None

    @property
    def skipped(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.block.skip_attention]

    def end_epoch(self, epoch: int, distributions: dict[str, np.ndarray]) -> SkipEvent | None:
        """Record epoch ``epoch``'s KL (1-based); at the end of a window, skip layers and return the event."""
        w = self.window_index(epoch)
        if w is None:
            return None
        stages = active_stages(self.layers)
        kl = adjacent_kl(distributions, stages, self.config.epsilon)
        kl_u = normalised_kl(kl, distributions, stages, self.config.epsilon)
        self.kl_history.append({"epoch": epoch, "kl": kl, "kl_uniform": kl_u})
        self._window_kl.append(kl)
        self._window_kl_uniform.append(kl_u)
        if epoch != self.windows[w][1]:
            return None
        names = [n for n in self._window_kl[0] if all(n in k for k in self._window_kl)]
        mean_kl = {n: float(np.mean([k[n] for k in self._window_kl])) for n in names}  # averaged over the window
        mean_u = {n: float(np.mean([k[n] for k in self._window_kl_uniform])) for n in names}
        self._window_kl, self._window_kl_uniform = [], []
        used = mean_u if self.config.kl_norm == "uniform" else mean_kl
        config = self.config
        if self.count_source is not None and config.strategy in ("fixed", "random", "position"):
            config = dataclasses.replace(config, fixed_counts=(max(0, int(self.count_source(w))),))
        sel = select([used[n] for n in names], config, w)
        removed = [n for n, s in zip(names, sel.skip) if s]
        by_name = {layer.name: layer for layer in self.layers}
        for n in removed:
            by_name[n].block.skip_attention = True
        mapped = {n: y for n, y in zip(names, sel.mapped or []) if y is not None}
        event = SkipEvent(epoch, tuple(self.windows[w]), mean_kl, sel.quantile, mapped, removed, len(self.skipped),
                          mean_u, self.config.kl_norm, sel.rule)
        self.events.append(event)
        log.info("ELA: end of window %s (epoch %d): skipped %d attention layers (%d of %d in total): %s%s",
                 self.windows[w], epoch, len(removed), len(self.skipped), len(self.layers), ", ".join(removed),
                 f" (EBQM rule {sel.rule!r})" if sel.rule else "")
        return event
