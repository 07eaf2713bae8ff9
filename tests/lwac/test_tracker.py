import pytest

from layerwise.lwac import RelevanceTracker, RingBuffer


def test_ring_buffer_keeps_the_last_window():
    rb = RingBuffer(3)
    for v in range(1, 6):
        rb.push(v)
    assert rb.values() == [3.0, 4.0, 5.0]
    assert rb.mean() == pytest.approx(4.0)
    assert len(rb) == 3


def test_tracker_eq3_window_then_label_free_proxy():
    tr = RelevanceTracker(num_units=1, window=2, eta=0.5)
    tr.push(0, entropy=1.0, grad_norm=10.0)
    tr.push(0, entropy=3.0, grad_norm=2.0)
    tr.push(0, entropy=5.0, grad_norm=4.0)  # window 2: grads (2, 4), entropies (3, 5)
    assert tr.relevance(0) == pytest.approx(3.0 + 0.5 * 4.0)
    tr.freeze_gradients()  # deployment: gradient term frozen at 3, entropy keeps moving
    tr.push(0, entropy=1.0)
    tr.push(0, entropy=1.0)
    assert tr.relevance(0) == pytest.approx(3.0 + 0.5 * 1.0)
