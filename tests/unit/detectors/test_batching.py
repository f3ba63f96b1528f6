"""Cross-camera micro-batching."""

import threading

from detectors.batching import MicroBatcher


def test_full_batch_is_released_without_waiting_for_more():
    b = MicroBatcher[int](max_batch=3, max_wait_ms=60_000)
    for i in range(5):
        b.put(i)
    assert b.get_batch(timeout=1) == [0, 1, 2]
    assert b.qsize() == 2


def test_partial_batch_is_released_after_the_wait():
    b = MicroBatcher[int](max_batch=8, max_wait_ms=1)
    b.put(1)
    b.put(2)
    assert b.get_batch(timeout=1) == [1, 2]


def test_late_items_join_the_batch_within_the_wait():
    b = MicroBatcher[str](max_batch=2, max_wait_ms=60_000)
    b.put("cam1")
    threading.Timer(0.05, b.put, args=("cam2",)).start()
    assert b.get_batch(timeout=1) == ["cam1", "cam2"]


def test_empty_queue_returns_empty_batch():
    assert MicroBatcher[int](max_batch=2, max_wait_ms=1).get_batch(timeout=0.01) == []
