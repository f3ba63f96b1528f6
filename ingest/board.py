"""The hand-off from readers to the consumer: one "latest frame wins" slot per camera."""

from __future__ import annotations

import threading
import time

from ingest.frame import Frame


class FrameBoard:
    """Holds at most one unconsumed frame per camera, so a slow consumer drops (and counts)
    frames instead of growing memory. Cameras are served in the order their frames became
    ready, so a busy camera cannot starve the others."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[str, Frame] = {}
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Offer a frame; True when it replaced an unconsumed one (a drop)."""
        with self._cond:
            dropped = frame.camera_id in self._ready
            self._ready[frame.camera_id] = frame
            self._cond.notify()
            return dropped

    def offer(self, frame: Frame) -> bool:
        """Put a frame only if its camera's slot is empty; False (nothing changed) when it is taken."""
        with self._cond:
            if frame.camera_id in self._ready:
                return False
            self._ready[frame.camera_id] = frame
            self._cond.notify()
            return True

    def take(self, timeout: float | None = None, max_frames: int | None = None) -> list[Frame]:
        """Wait up to ``timeout`` for ready frames and return up to ``max_frames`` of them (oldest first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._cond.wait(remaining)
            n = len(self._ready) if max_frames is None else min(max_frames, len(self._ready))
            ids = list(self._ready)[:n]
            return [self._ready.pop(i) for i in ids]

    def discard(self, camera_id: str) -> None:
        with self._cond:
            self._ready.pop(camera_id, None)

    def close(self) -> None:
        """Wake every waiter; further takes return what is left, then empty lists at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready)
