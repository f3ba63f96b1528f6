"""Many cameras per process: a few reader threads, each multiplexing a share of the cameras.

Why not one thread per camera: every packet wakes its thread, and with dozens of threads over
two cores the GIL hand-offs and context switches cost more than demuxing itself (see
docs/benchmarks.md). Here each thread reads its cameras in turn, draining what is buffered and
moving on after the first read that had to wait for the network, so a thread wakes about once
per camera per turn instead of once per packet. Opening streams, closing them after errors and
trimming malloc run on separate lanes of worker threads (:mod:`ingest.lanes`), so that a camera
that is slow to connect never holds up the others, nor closes, trims or ``stop()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Self

from ingest.board import FrameBoard
from ingest.camera import CameraReader
from ingest.frame import Frame
from ingest.health import CameraHealth
from ingest.lanes import Lanes
from ingest.source import CameraSource

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_DELAY_S = 1.0
"""How long after a decoder or stream was freed the pool trims malloc."""


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None (find_library runs ldconfig, hence the cache)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Raise glibc's malloc thresholds so that decoded frames reuse heap memory instead of
    mmap/munmap (and page faults) per frame. Same effect as the ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` environment variables; a no-op where glibc is absent."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) \
        and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def trim_malloc() -> bool:
    """Hand the heap pages that malloc holds free back to the kernel (glibc ``malloc_trim(0)``,
    which walks every arena, not just the top of the main heap); False where glibc is absent.

    Decoders, swscale contexts and BGR frames are freed after use, but glibc keeps their pages:
    without this, RSS settles at the peak of whatever was decoded at the same time rather than at
    what the streams hold (docs/benchmarks.md#ingest)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def default_threads() -> int:
    """Reader threads: one per usable core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class _ReaderThread(threading.Thread):
    def __init__(self, index: int, pool: IngestPool):
        super().__init__(name=f"ingest-reader-{index}", daemon=True)
        self.index = index
        self.pool = pool
        self.readers: list[CameraReader] = []
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._retired: list[CameraReader] = []

    def add(self, reader: CameraReader) -> None:
        with self._lock:
            self.readers = [*self.readers, reader]
        self.wake.set()

    def remove(self, camera_id: str) -> list[CameraReader]:
        with self._lock:
            found = [r for r in self.readers if r.src.camera_id == camera_id]
            self.readers = [r for r in self.readers if r.src.camera_id != camera_id]
            self._retired.extend(found)  # closed by this thread, never while it reads them
        for r in found:
            r.closed = True
        self.wake.set()
        return found

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for reader in retired:
            reader.close()

    def run(self) -> None:
        stopping = self.pool._stopping
        housekeeper = self.index == 0
        while not stopping.is_set():
            self._close_retired()
            now = time.monotonic()
            next_wake = now + 1.0
            if housekeeper:
                next_wake = self.pool._housekeep(now)
            busy = False
            for reader in self.readers:
                if stopping.is_set():
                    break
                if reader.closed:
                    continue
                try:
                    wake_at = reader.service(time.monotonic())
                except Exception:
                    log.exception("camera %s: unexpected error in reader", reader.src.camera_id)
                    reader._fail(RuntimeError("internal reader error"), time.monotonic(), "InternalError")
                    continue
                if wake_at is None:
                    busy = True
                else:
                    next_wake = min(next_wake, wake_at)
            if not busy:
                self.wake.wait(max(0.0, next_wake - time.monotonic()))
                self.wake.clear()
        self._close_retired()
        for reader in self.readers:
            reader.close()


class IngestPool:
    """Pull many cameras and hand out their latest sampled frames.

    >>> pool = IngestPool([CameraSource("cam-1", "rtsp://user:pw@10.0.0.5/stream1")])
    >>> with pool:
    ...     for frame in pool.frames():
    ...         detect(frame.image)

    ``take()`` returns every frame that is ready (at most one per camera), handy for batching.
    ``on_health`` (e.g. ``HealthPublisher(redis_client).publish``) is called with all cameras'
    :class:`CameraHealth` every ``health_interval_s`` from a background thread. After a decoder or
    stream is freed, the pool returns freed heap pages to the kernel (:func:`trim_malloc`, on its
    local lane), at most every ``trim_interval_s`` (None: never). ``open_workers`` threads open
    streams, and as many retry cameras that have failed without ever streaming (see
    :mod:`ingest.lanes`).
    """

    def __init__(self, cameras: Iterable[CameraSource] = (), *, threads: int | None = None,
                 open_workers: int = 4, malloc_tuning: bool = True,
                 on_health: Callable[[list[CameraHealth]], object] | None = None,
                 health_interval_s: float = 5.0, trim_interval_s: float | None = 5.0,
                 seed: int | None = None):
        self.board = FrameBoard()
        self._sources = list(cameras)
        ids = [c.camera_id for c in self._sources]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate camera id(s): {', '.join(dupes)}")
        self._n_threads = threads or default_threads()
        self._open_workers = open_workers
        self._malloc_tuning = malloc_tuning
        self._on_health = on_health
        self._health_interval_s = health_interval_s
        self._trim_interval_s = trim_interval_s
        self._trim_wanted = False
        self._trim_at: float | None = None
        self._last_trim = float("-inf")
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._threads: list[_ReaderThread] = []
        self._lanes: Lanes | None = None
        self._health_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running = False

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Start the reader threads and connect every camera."""
        with self._lock:
            if self._running:
                return self
            if self._malloc_tuning:
                tune_malloc()
            self._stopping.clear()
            self.board.reopen()
            self._lanes = Lanes(self._open_workers)
            self._threads = [_ReaderThread(i, self) for i in range(self._n_threads)]
            self._running = True
            for src in self._sources:
                self._assign(src)
            for t in self._threads:
                t.start()
            if self._on_health is not None:
                self._health_thread = threading.Thread(target=self._health_loop, name="ingest-health", daemon=True)
                self._health_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading, close every stream and wait for the threads, at most ``timeout`` seconds
        (a blocked read ends within its read timeout). Queued opens are dropped; an open still
        running then ends within its open timeout on its own thread and closes what it opened."""
        with self._lock:
            if not self._running:
                return
            self._stopping.set()
            for t in self._threads:
                t.wake.set()
            self.board.close()
            deadline = time.monotonic() + timeout
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if self._health_thread is not None:
                self._health_thread.join(max(0.0, deadline - time.monotonic()))
            self._lanes.shutdown(deadline)
            self._running = False
            self._threads = []
            if self._trim_interval_s:
                trim_malloc()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- cameras -------------------------------------------------------------------------
    def _assign(self, src: CameraSource) -> None:
        thread = min(self._threads, key=lambda t: len(t.readers))
        reader = CameraReader(src, self.board, self._lanes, thread.wake, random.Random(self._rng.random()),
                              freed=self._memory_freed)
        self.board.claim(src.camera_id, reader)  # a frame of an earlier reader of this id is dropped
        thread.add(reader)

    def add_camera(self, src: CameraSource) -> None:
        """Start pulling one more camera (e.g. after a Kafka partition assignment)."""
        with self._lock:
            if any(s.camera_id == src.camera_id for s in self._sources):
                raise ValueError(f"camera {src.camera_id} is already in the pool")
            self._sources.append(src)
            if self._running:
                self._assign(src)

    def remove_camera(self, camera_id: str) -> None:
        """Stop pulling a camera; its stream is closed by its reader thread (a queued open is
        cancelled). Once this returns, no frame of the camera is handed out, not even one its
        reader was still converting."""
        with self._lock:
            self._sources = [s for s in self._sources if s.camera_id != camera_id]
            for t in self._threads:
                for reader in t.remove(camera_id):
                    self.board.release(camera_id, reader)

    @property
    def cameras(self) -> list[CameraSource]:
        return list(self._sources)

    # ---- frames and health ---------------------------------------------------------------
    def take(self, timeout: float | None = 1.0, max_frames: int | None = None) -> list[Frame]:
        """Ready frames, oldest first, at most one per camera; [] after ``timeout`` or on stop."""
        return self.board.take(timeout, max_frames)

    def frames(self, poll_s: float = 0.5) -> Iterator[Frame]:
        """Yield frames until the pool is stopped."""
        while not self._stopping.is_set():
            yield from self.board.take(poll_s)

    def health(self) -> list[CameraHealth]:
        """One snapshot per camera."""
        return [r.health() for t in list(self._threads) for r in t.readers]

    def _memory_freed(self) -> None:
        """A reader freed a decoder or a stream (any thread)."""
        self._trim_wanted = True

    def _housekeep(self, now: float) -> float:
        """Called by the first reader thread on every turn; returns when it is next due (≤ 1 s).

        Trims TRIM_DELAY_S after something was freed (consumers have dropped the frames by then)
        and at most every ``trim_interval_s``, on the local lane (never behind a slow open): a trim
        walks every arena, and on this thread it would hold up its cameras' reads. Never on a timer
        alone: a trim also returns the pages that active cameras' next frames reuse, which then cost
        page faults again."""
        if self._trim_wanted and self._trim_at is None and self._trim_interval_s:
            self._trim_wanted = False
            self._trim_at = max(now + TRIM_DELAY_S, self._last_trim + self._trim_interval_s)
        if self._trim_at is not None and now >= self._trim_at:
            try:
                self._lanes.local.submit(trim_malloc)
            except RuntimeError:  # the lanes were shut down: stop() trims once itself
                pass
            self._last_trim, self._trim_at = now, None
        return now + 1.0 if self._trim_at is None else min(now + 1.0, self._trim_at)

    def _health_loop(self) -> None:
        while not self._stopping.wait(self._health_interval_s):
            try:
                self._on_health(self.health())
            except Exception:
                log.exception("health callback failed")
