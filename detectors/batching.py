"""Cross-camera micro-batching: gather frames until the batch is full or the first one has waited long enough."""

from __future__ import annotations

import queue
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """A thread-safe queue read in batches of up to ``max_batch`` items.

    Like DeepStream's nvstreammux: a batch is released when it is full, or ``max_wait_ms`` after its
    first item arrived, whichever comes first. Producers (one per camera) call :meth:`put`; the
    detector thread calls :meth:`get_batch`.
    """

    def __init__(self, max_batch: int, max_wait_ms: float, maxsize: int = 0):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[T] = queue.Queue(maxsize)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        self._queue.put(item, block, timeout)

    def qsize(self) -> int:
        return self._queue.qsize()

    def get_batch(self, timeout: float | None = None) -> list[T]:
        """Wait up to ``timeout`` s for a first item (``[]`` if none), then fill the batch within the wait budget."""
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch
