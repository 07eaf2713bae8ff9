"""Train several models with alternating epochs, so that their epoch times are measured fairly.

Models trained one after another see different machine load (another job starting, thermal
state, a cache warming up): one model's epochs then look slower or faster for reasons that have
nothing to do with it. Here every model trains in a thread of its own, but only one thread runs at
a time: round r runs epoch r of every model, in an order that rotates from round to round. A
model holds its turn from the start of its epoch until the start of its next one (validation,
checkpoint and, for ELA, the KL and skipping included), so nothing runs beside an epoch that is
being timed, and load drift falls on all models alike.

Per epoch, beside the training loop's own wall time, the CPU time is recorded:
``thread_cpu_s`` (the training thread, ``time.thread_time``) and ``process_cpu_s`` (every thread of
the process, ``time.process_time``, which under the turn-taking is this model's intra-op threads
plus its training thread).

Dependencies: a name listed in ``after`` always runs after the named model within a round (the
controls that remove as many layers as ELA did must see ELA's decision of that round first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LayerwiseError


class _Aborted(Exception):
    """Another model's thread failed: stop at the next turn."""


def round_order(names: Sequence[str], r: int, after: Mapping[str, str] | None = None) -> list[str]:
    """Round ``r``'s order: ``names`` rotated by ``r``, each dependent moved right after its model."""
    k = r % len(names)
    order = list(names[k:]) + list(names[:k])
    for dep, first in (after or {}).items():
        if dep in order and first in order and order.index(dep) < order.index(first):
            order.remove(dep)
            order.insert(order.index(first) + 1, dep)
    return order


@dataclass
class EpochCpu:
    wall_s: float
    thread_cpu_s: float
    process_cpu_s: float


class Rotation:
    """Turn-taking between the training threads: one epoch at a time, rotating order."""

    def __init__(self, names: Sequence[str], rounds: int, after: Mapping[str, str] | None = None):
        if len(set(names)) != len(names) or not names:
            raise LayerwiseError(f"interleaved training needs distinct model names, not {list(names)}")
        self.sequence = [n for r in range(rounds) for n in round_order(names, r, after)]
        self.pos = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def wait(self, name: str) -> None:
        with self._cond:
            while self.error is None and self.pos < len(self.sequence) and self.sequence[self.pos] != name:
                self._cond.wait()
            if self.error is not None:
                raise _Aborted()

    def hand_on(self, name: str) -> None:
        with self._cond:
            if self.pos < len(self.sequence) and self.sequence[self.pos] == name:
                self.pos += 1
            self._cond.notify_all()

    def finish(self, name: str) -> None:
        """``name`` trains no more: give up its current turn and drop its later ones."""
        with self._cond:
            if self.pos < len(self.sequence) and self.sequence[self.pos] == name:
                self.pos += 1
            self.sequence = self.sequence[:self.pos] + [n for n in self.sequence[self.pos:] if n != name]
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()


class _Timed:
    """Iterates one epoch's batches and records the wall and CPU time from the first to the last batch."""

    def __init__(self, inner, total, record: Callable[[EpochCpu], None]):
        self.inner, self.total, self.record = inner, total, record

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
        yield from self.inner
        self.record(EpochCpu(time.perf_counter() - w, time.thread_time() - t, time.process_time() - p))

    def set_postfix(self, **kw) -> None:
        if hasattr(self.inner, "set_postfix"):
            self.inner.set_postfix(**kw)


@dataclass
class InterleavedRun:
    """What :func:`train_interleaved` returns per model: the job's result and its epochs' CPU times."""

    result: Any = None
    cpu: list[EpochCpu] = field(default_factory=list)


def train_interleaved(jobs: Mapping[str, Callable[[Callable], Any]], epochs: int, *,
                      after: Mapping[str, str] | None = None, progress: Callable | None = None
                      ) -> dict[str, InterleavedRun]:
    """Run ``jobs[name](progress_factory)`` for every name, one epoch at a time, rotating the order.

    Each job must train for ``epochs`` epochs and pass the factory it is given as the ``progress``
    of :func:`layerwise.train.train` (or :func:`layerwise.ela.train_ela`), which calls it once at
    the start of every epoch. ``progress`` (a tqdm-like factory) is wrapped, not replaced. The
    first exception of any job stops the others at their next turn and is raised here.
    """
    names = list(jobs)
    rotation = Rotation(names, epochs, after)
    runs = {n: InterleavedRun() for n in names}

    def factory_for(name: str):
        started = [0]

        def factory(iterable, total=None, desc=None, leave=None):
            if started[0] > 0:  # the previous epoch (and its validation) is over: next model's turn
                rotation.hand_on(name)
                rotation.wait(name)
            started[0] += 1
            inner = progress(iterable, total=total, desc=f"{name}: {desc}", leave=leave) \
                if progress is not None else iterable
            return _Timed(inner, total, runs[name].cpu.append)
        return factory

    def work(name: str) -> None:
        try:
            rotation.wait(name)
            runs[name].result = jobs[name](factory_for(name))
        except _Aborted:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            rotation.fail(e)
        finally:
            rotation.finish(name)

    threads = [threading.Thread(target=work, args=(n,), name=f"train-{n}", daemon=True) for n in names]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt as e:
        rotation.fail(e)
        for t in threads:
            t.join()
        raise
    if rotation.error is not None:
        raise rotation.error
    return runs
