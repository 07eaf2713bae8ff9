"""Progress of long phases: a bar in a terminal, a periodic log line anywhere else.

Every long loop of the package (training epochs, AdaLayerNet's sensitivity probes, UnIT's stages,
magnitude pruning, ELA's variants) takes a tqdm-like ``progress(iterable, total=, desc=, leave=)``
factory. :func:`progress_factory` gives the command line's: tqdm's bar when the stream is a
terminal, else :class:`PeriodicLog`, which logs one INFO line every ``every`` seconds (phase,
step/total, elapsed, ETA, the bar's postfix such as the running loss) so a log file or CI output
shows where a run is and how long it has left. A phase shorter than ``every`` logs nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger("layerwise.progress")

DEFAULT_EVERY_S = 30.0


def _clock_text(seconds: float) -> str:
    """0:07, 1:05, 1:02:03."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PeriodicLog:
    """A tqdm-compatible progress object (iterate it, or ``update``/``close`` by hand) that logs a
    line every ``every`` seconds of ``clock`` instead of drawing a bar.

    ETA: the remaining steps at the mean time per step so far (elapsed / done * (total - done));
    left out when the total is unknown."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str | None = None,
                 leave: bool | None = None, *, every: float = DEFAULT_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, logger: logging.Logger = log, **_tqdm_kwargs):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc = iterable, total, desc or "working"
        self.every, self.clock, self.logger = float(every), clock, logger
        self.n = 0
        self.postfix = ""
        self.start = clock()
        self.last = self.start
        self.logged = False
        self.closed = False

    # ---- tqdm's interface, as the package uses it --------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("PeriodicLog was made without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self) -> "PeriodicLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.logged = True
            self.logger.info("%s", self.line(now))

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        """A last line when the phase logged before (so its end is visible too)."""
        if self.closed:
            return
        self.closed = True
        if self.logged:
            self.logger.info("%s", self.line(self.clock(), done=True))

    # ---- the line -------------------------------------------------------------------------------
    def line(self, now: float, done: bool = False) -> str:
        elapsed = now - self.start
        steps = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        parts = [f"{self.desc}: {steps}{pct}", f"{_clock_text(elapsed)} elapsed"]
        if done:
            parts[-1] = f"done in {_clock_text(elapsed)}"
        elif self.total and self.n > 0:
            parts.append(f"ETA {_clock_text(elapsed / self.n * max(self.total - self.n, 0))}")
        text = ", ".join(parts)
        return f"{text} ({self.postfix})" if self.postfix else text


def progress_factory(stream=None, *, every: float = DEFAULT_EVERY_S, clock: Callable[[], float] = time.monotonic,
                     isatty: bool | None = None) -> Callable:
    """``progress(iterable, total=, desc=, leave=)``: tqdm's bar on a terminal ``stream`` (stderr by
    default), else a :class:`PeriodicLog` every ``every`` seconds."""
    stream = sys.stderr if stream is None else stream
    tty = isatty if isatty is not None else bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        from functools import partial

        from tqdm import tqdm
        return partial(tqdm, leave=False, dynamic_ncols=True, file=stream)

    def periodic(iterable=None, total=None, desc=None, leave=None, **kw):
        return PeriodicLog(iterable, total=total, desc=desc, leave=leave, every=every, clock=clock)

    return periodic
