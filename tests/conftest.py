"""One torch thread for the tests: on a shared 2-core machine two intra-op threads spin-wait
on each other and make the tiny convolutions of these tests ~100x slower (measured: a seeded
calibration on 40 8x8 samples took 5.9 s with 2 threads, 0.06 s with 1)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
