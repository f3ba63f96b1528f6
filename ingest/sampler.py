"""Per-camera sampling decisions and the PTS → wall-clock mapping (pure logic, no I/O)."""

from __future__ import annotations

from ingest.settings import DecodeMode


class StreamClock:
    """Maps stream timestamps (seconds) to wall-clock capture times, monotonic per camera.

    The first timestamp of a session is anchored to the wall clock when it arrived. Live
    sources re-anchor when the mapping drifts more than ``resync_s`` from the wall clock (PTS
    jumps, wraps, a camera clock that runs fast or slow); files re-anchor when time jumps
    backwards (a loop). A missing timestamp (the first RTSP packet may have none) continues
    from the previous one.
    """

    def __init__(self, live: bool, resync_s: float = 5.0):
        self.live = live
        self.resync_s = resync_s
        self._offset: float | None = None
        self._last_pts: float | None = None
        self._last_time = float("-inf")
        self._contiguous = False
        self.frame_duration = 0.04
        self.fixed_rate = False

    def set_rate(self, fps: float | None) -> None:
        """Use the stream's nominal frame rate (else the duration is learnt from timestamps,
        which B-frame reordering makes noisy)."""
        if fps and 1.0 <= fps <= 240.0:
            self.frame_duration = 1.0 / fps
            self.fixed_rate = True

    def new_session(self, contiguous: bool = False) -> None:
        """Forget the anchor (after a reconnect or a loop); capture times stay monotonic.

        ``contiguous`` (a looping file): the next timestamp continues one frame after the last
        capture time instead of being anchored to the wall clock.
        """
        self._offset = None
        self._last_pts = None
        self._contiguous = contiguous and self._last_time > float("-inf")

    def peek(self, pts_s: float) -> float:
        """Map a timestamp of the current session without updating any state."""
        return pts_s + self._offset if self._offset is not None else pts_s

    def capture_time(self, pts_s: float | None, now: float) -> float:
        """The wall-clock capture time of a packet with stream time ``pts_s`` seen at ``now``."""
        if pts_s is None:
            pts_s = self._last_pts + self.frame_duration if self._last_pts is not None else None
        if pts_s is None:
            mapped = now
        else:
            if self._last_pts is not None:
                step = pts_s - self._last_pts
                if 0 < step < 1.0 and not self.fixed_rate:
                    self.frame_duration = 0.9 * self.frame_duration + 0.1 * step
                elif step < -1.0 and not self.live:
                    self._offset = None
            if self._offset is None:
                start = self._last_time + self.frame_duration if self._contiguous else now
                self._offset = start - pts_s
                self._contiguous = False
            mapped = pts_s + self._offset
            if self.live and abs(mapped - now) > self.resync_s:
                self._offset = now - pts_s
                mapped = now
            self._last_pts = pts_s
        t = max(mapped, self._last_time + 1e-6)
        self._last_time = t
        return t


class Sampler:
    """Decides which packets to decode and which decoded frames to emit, per camera.

    ``keyframes``: only keyframes are decoded, and only when a frame is due (within half a
    keyframe spacing of the due time, so one keyframe per interval when keyframes are denser).
    When keyframes are further apart than ``fallback_ratio`` × interval twice in a row, the
    camera falls back to ``interval`` (:attr:`fell_back` is set once).
    ``interval``: everything is decoded, one frame per interval is emitted. ``all``: every frame.
    Due times follow a fixed grid (``next_due += interval``) so the average rate matches the
    interval; the grid restarts when the stream falls a full interval behind.
    """

    def __init__(self, interval_s: float, mode: DecodeMode, fallback_ratio: float = 2.0):
        self.interval_s = interval_s
        self.mode = DecodeMode(mode)
        self.fallback_ratio = fallback_ratio
        self.fell_back = False
        self.keyframe_spacing_s: float | None = None
        self._next_due: float | None = None
        self._last_key: float | None = None
        self._long_gaps = 0
        self._need_key = True

    def new_session(self) -> None:
        """A new connection: decoding restarts at the next keyframe."""
        self._need_key = True
        self._last_key = None

    def _due(self, t: float, tolerance: float) -> bool:
        return self._next_due is None or t >= self._next_due - tolerance

    def wants_packet(self, keyframe: bool, t: float) -> bool:
        """Whether the packet at capture time ``t`` must be sent to the decoder."""
        if keyframe:
            self._note_keyframe(t)
        if self._need_key:
            if not keyframe:
                return False
            self._need_key = False
        if self.mode is DecodeMode.keyframes:
            tolerance = self.keyframe_spacing_s / 2 if self.keyframe_spacing_s else 0.0
            return keyframe and self._due(t, tolerance)
        return True

    def wants_frame(self, t: float, frame_duration: float = 0.04) -> bool:
        """Whether a decoded frame at capture time ``t`` is emitted (and, if so, schedule the next)."""
        if self.mode is DecodeMode.interval and not self._due(t, frame_duration / 2):
            return False
        if self._next_due is None or t - self._next_due > self.interval_s:
            self._next_due = t + self.interval_s
        else:
            self._next_due += self.interval_s
        return True

    def _note_keyframe(self, t: float) -> None:
        if self._last_key is not None and t > self._last_key:
            gap = t - self._last_key
            self.keyframe_spacing_s = gap if self.keyframe_spacing_s is None else 0.5 * (self.keyframe_spacing_s + gap)
            if self.mode is DecodeMode.keyframes and gap > self.fallback_ratio * self.interval_s:
                self._long_gaps += 1
                if self._long_gaps >= 2:
                    self.mode = DecodeMode.interval
                    self.fell_back = True
                    self._need_key = True
            else:
                self._long_gaps = 0
        self._last_key = t
