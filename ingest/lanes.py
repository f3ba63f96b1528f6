"""Where the pool's blocking side work runs: opening streams, closing them, trimming malloc.

Three lanes, each a small thread pool with its own FIFO queue, so that work of one kind never
waits behind slow work of another:

- ``open``: the first open of every network camera, and every open of one that has streamed in
  this pool. An open that never gets an answer holds a worker for its ``open_timeout_s``.
- ``retry``: opens of network cameras that have failed and have not streamed yet (dead,
  misconfigured or unreachable from the start). They retry among themselves and never take a
  worker from a camera that works or that is tried for the first time.
- ``local``: work that does not wait for a camera to answer: closing streams, ``malloc_trim`` and
  opening files.

``shutdown(deadline)`` drops queued opens and waits for running work only until the deadline; an
open still running then finishes on its own thread (its container is closed by the done callback
that :meth:`CameraReader.close` attaches).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ingest.source import CameraSource, open_input


class Lane:
    """A ThreadPoolExecutor whose shutdown waits at most until a deadline."""

    def __init__(self, workers: int, name: str):
        self.name = name
        self._threads: list[threading.Thread] = []
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name,
                                            initializer=self._started)

    def _started(self) -> None:
        self._threads.append(threading.current_thread())

    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)``; raises RuntimeError once the lane is shut down."""
        return self._executor.submit(fn, *args)

    def shutdown(self, cancel_queued: bool) -> None:
        """Stop taking work (and drop what is queued if ``cancel_queued``); returns at once."""
        self._executor.shutdown(wait=False, cancel_futures=cancel_queued)

    def join(self, deadline: float) -> None:
        """Wait for the lane's threads to finish, at most until ``deadline`` (monotonic)."""
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))


class Lanes:
    """The pool's three lanes (see the module docstring); ``open_workers`` threads per open lane."""

    def __init__(self, open_workers: int = 4, local_workers: int = 1):
        self.open = Lane(open_workers, "ingest-open")
        self.retry = Lane(open_workers, "ingest-retry")
        self.local = Lane(local_workers, "ingest-local")

    def open_input(self, src: CameraSource, failing: bool) -> Future:
        """Open ``src`` on its lane: files on ``local``, network cameras on ``retry`` when ``failing``
        (failed and never streamed in this pool), else on ``open``. After shutdown: a cancelled future."""
        lane = self.local if not src.live else self.retry if failing else self.open
        try:
            return lane.submit(open_input, src)
        except RuntimeError:
            future: Future = Future()
            future.cancel()
            return future

    def run_local(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the local lane, or right here once the lanes are shut down."""
        try:
            self.local.submit(fn, *args)
        except RuntimeError:
            fn(*args)

    def shutdown(self, deadline: float) -> None:
        """Drop queued opens, let queued closes and trims run, and wait for the threads until ``deadline``."""
        self.open.shutdown(cancel_queued=True)
        self.retry.shutdown(cancel_queued=True)
        self.local.shutdown(cancel_queued=False)
        for lane in (self.local, self.open, self.retry):
            lane.join(deadline)
