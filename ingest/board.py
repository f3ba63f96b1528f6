"""The hand-off from readers to the consumer: one "latest frame wins" slot per camera."""

from __future__ import annotations

import threading
import time

from ingest.frame import Frame


class FrameBoard:
    """Holds at most one unconsumed frame per camera, so a slow consumer drops (and counts)
    frames instead of growing memory. Cameras are served in the order their frames became
    ready, so a busy camera cannot starve the others.

    A slot takes frames only from its owner: the reader that :meth:`claim` gave it to (or, for a
    slot nobody claimed, from callers that pass no owner). A reader that was removed may still be
    converting a frame when its camera is released or re-added; that late frame is dropped here
    instead of reaching the consumer after ``remove_camera`` returned, or under the new config."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[str, Frame] = {}
        self._owners: dict[str, object] = {}
        self._closed = False

    def claim(self, camera_id: str, owner: object) -> None:
        """Give the camera's slot to ``owner``; a frame left by a previous owner is dropped."""
        with self._cond:
            self._owners[camera_id] = owner
            self._ready.pop(camera_id, None)

    def release(self, camera_id: str, owner: object = None) -> None:
        """Drop the camera's frame and refuse its owner's later frames; a no-op if ``owner``
        no longer owns the slot (the camera was claimed again since)."""
        with self._cond:
            if self._owners.get(camera_id) is owner:
                self._owners.pop(camera_id, None)
                self._ready.pop(camera_id, None)

    def put(self, frame: Frame, owner: object = None) -> bool:
        """Offer a frame; True when it replaced an unconsumed one (a drop). A frame from a reader
        that does not own the slot is dropped silently (False)."""
        with self._cond:
            if self._owners.get(frame.camera_id) is not owner:
                return False
            dropped = frame.camera_id in self._ready
            self._ready[frame.camera_id] = frame
            self._cond.notify()
            return dropped

    def offer(self, frame: Frame, owner: object = None) -> bool:
        """Put a frame only if its camera's slot is empty; False (nothing changed) when it is
        taken, or when ``owner`` does not own the slot."""
        with self._cond:
            if self._owners.get(frame.camera_id) is not owner or frame.camera_id in self._ready:
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
