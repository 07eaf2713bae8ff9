"""Long phases outside a terminal: one INFO line every 30 s (phase, step/total, elapsed, ETA), with
a fake clock; in a terminal, tqdm's bar; and the training loop's epochs report through it."""

from __future__ import annotations

import io
import logging

import torch

from layerwise.progress import PeriodicLog, progress_factory


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "layerwise.progress"]


def test_a_line_every_30_seconds_with_elapsed_and_eta(caplog):
    clock = FakeClock()
    progress = progress_factory(io.StringIO(), clock=clock)     # not a terminal
    seen = []
    with caplog.at_level(logging.INFO, logger="layerwise.progress"):
        for i in progress(range(10), desc="epoch 2/5"):
            clock.t += 7.0                                        # each step takes 7 s
            seen.append(i)
    assert seen == list(range(10))
    # 70 s in all: lines after steps 5 (35 s) and 10 (70 s, >= 30 s after the first), then the end
    assert _lines(caplog) == [
        "epoch 2/5: 5/10 (50 %), 0:35 elapsed, ETA 0:35",        # 35 s / 5 steps x 5 steps left
        "epoch 2/5: 10/10 (100 %), 1:10 elapsed, ETA 0:00",
        "epoch 2/5: 10/10 (100 %), done in 1:10",
    ]


def test_a_short_phase_logs_nothing_and_update_by_hand_works(caplog):
    clock = FakeClock()
    progress = progress_factory(io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="layerwise.progress"):
        for _ in progress([1, 2, 3], desc="quick"):
            clock.t += 1.0
        bar = progress(None, total=3, desc="unit")
        bar.set_description("unit: dense")
        clock.t += 45.0
        bar.set_postfix(loss="0.4213")
        bar.update(1)
        bar.close()
    assert _lines(caplog) == ["unit: dense: 1/3 (33 %), 0:45 elapsed, ETA 1:30 (loss=0.4213)",
                              "unit: dense: 1/3 (33 %), done in 0:45 (loss=0.4213)"]


def test_unknown_total_has_no_eta():
    clock = FakeClock()
    p = PeriodicLog(iter([1, 2]), desc="stream", clock=clock)
    clock.t += 61.0
    p.n = 2
    assert p.line(clock()) == "stream: 2, 1:01 elapsed"


def test_a_terminal_gets_a_bar():
    from tqdm import tqdm
    bar = progress_factory(io.StringIO(), isatty=True)(range(3), total=3, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()


def test_training_reports_through_the_periodic_line(caplog):
    """The training loop's epochs go through the factory: a slow epoch (fake clock, 20 s per
    batch) logs its step count and the running loss."""
    from layerwise.data import DatasetSplits
    from layerwise.train import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    data = DatasetSplits(name="toy", train=ds, val=ds, test=ds, input_shape=(4,), num_classes=2, kind="series")
    clock = FakeClock()
    inner = progress_factory(io.StringIO(), clock=clock)

    def progress(iterable, **kw):
        def ticking():
            for item in iterable:
                clock.t += 20.0
                yield item
        return inner(ticking(), **kw)

    with caplog.at_level(logging.INFO, logger="layerwise.progress"):
        train(torch.nn.Linear(4, 2), data, TrainConfig(epochs=1, batch_size=16, seed=0), progress=progress)
    lines = _lines(caplog)
    assert lines[0].startswith("epoch 1/1: 2/4 (50 %), 0:40 elapsed, ETA 0:40 (loss=")
    assert lines[-1].startswith("epoch 1/1: 4/4 (100 %), done in 1:20")
