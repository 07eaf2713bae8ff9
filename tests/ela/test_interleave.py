"""Alternating-epoch training: one model at a time, order rotating each round, dependents after ELA."""

from __future__ import annotations

import threading

import pytest

from layerwise.ela.interleave import round_order, train_interleaved


def test_round_order_rotates_and_keeps_dependents_after_their_model():
    names = ["resnet", "mrla-b", "ela", "ela-random"]
    assert round_order(names, 0) == names
    assert round_order(names, 1) == ["mrla-b", "ela", "ela-random", "resnet"]
    # round 3 would start with ela-random, before ela: it is moved right after ela
    assert round_order(names, 3, {"ela-random": "ela"}) == ["resnet", "mrla-b", "ela", "ela-random"]
    firsts = {round_order(names, r)[0] for r in range(4)}
    assert firsts == set(names)  # every model leads one round: none always trains first or last


def _fake_job(name, log, epochs, active):
    def run(factory):
        for e in range(epochs):
            with active:  # fails if two epochs ever overlap
                pass
            batches = factory(range(3), total=3, desc=f"epoch {e + 1}")
            for _ in batches:
                log.append((name, e))
        return f"{name} done"
    return run


def test_epochs_alternate_one_model_at_a_time_in_rotating_order():
    log: list[tuple[str, int]] = []
    lock = threading.Lock()
    names = ["a", "b", "c"]
    runs = train_interleaved({n: _fake_job(n, log, 3, lock) for n in names}, 3)
    assert {n: r.result for n, r in runs.items()} == {"a": "a done", "b": "b done", "c": "c done"}
    epochs_in_order = [x for i, x in enumerate(log) if i == 0 or log[i - 1] != x]
    assert epochs_in_order == [(n, r) for r in range(3) for n in round_order(names, r)]
    for r in runs.values():  # wall and CPU time recorded for every epoch
        assert len(r.cpu) == 3 and all(c.wall_s >= 0 and c.process_cpu_s >= 0 for c in r.cpu)


def test_a_failing_job_stops_the_others_and_its_error_is_raised():
    def bad(factory):
        for _ in factory(range(2), total=2):
            raise ValueError("broken model")

    log: list = []
    with pytest.raises(ValueError, match="broken model"):
        train_interleaved({"a": _fake_job("a", log, 5, threading.Lock()), "b": bad}, 5)
    assert len({e for _, e in log}) < 5  # "a" did not run all its epochs
