"""One camera's reader: the connect → stream → backoff state machine, sampling and decoding.

A :class:`CameraReader` never owns a thread. A pool thread calls :meth:`CameraReader.service`
in turn for each of its cameras; opening (which can take seconds) and closing after an error run
on the pool's :class:`~ingest.lanes.Lanes`, and a camera that has failed without ever streaming
retries on a lane of its own, so a dead camera never holds up the live ones.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import av
from av.video.reformatter import VideoReformatter

from ingest.backoff import Backoff
from ingest.board import FrameBoard
from ingest.frame import Frame
from ingest.health import CameraHealth, CameraState
from ingest.lanes import Lanes
from ingest.sampler import Sampler, StreamClock
from ingest.settings import DecodeMode
from ingest.source import CameraSource
from ingest.urls import redact_text

log = logging.getLogger(__name__)

BURST_PACKETS = 64
"""Most packets read from one camera per turn (files never block, so they need a bound)."""
BLOCKED_S = 0.002
"""A read that took longer than this waited for the network: the camera is caught up."""
ERROR_BURST_S = 10.0
"""Decode errors closer together than this are one burst, logged once."""
RATE_WINDOW_S = 5.0
BACKPRESSURE_POLL_S = 0.005
"""How often a file reader with ``backpressure`` checks whether its frame was taken."""


class CameraReader:
    """Pulls one camera, samples it and puts emitted frames on the shared :class:`FrameBoard`."""

    def __init__(self, src: CameraSource, board: FrameBoard, lanes: Lanes,
                 wake: threading.Event, rng: random.Random | None = None,
                 freed: Callable[[], object] = lambda: None):
        self.src = src
        self._board = board  # puts only land while this reader owns the camera's slot (board.claim)
        self._lanes = lanes
        self._wake = wake
        self._freed = freed  # told when a decoder or stream was freed (the pool then trims malloc)
        self._backoff = Backoff(src.reconnect.backoff_base_s, src.reconnect.backoff_cap_s, rng)
        self._clock = StreamClock(live=src.live)
        self._sampler = Sampler(src.analysis_interval_s, src.decode_mode, src.keyframe_fallback_ratio)
        # with releases_decoder the swscale context (~0.3 MB at 1080p, ~2 ms to rebuild) is made per
        # emitted frame in every mode, also in interval mode, where the decoder itself is kept
        self._reformatter = None if src.releases_decoder else VideoReformatter()
        self.state = CameraState.connecting
        self.state_since = time.time()
        self.seq = 0
        self.frames_in = 0
        self.frames_decoded = 0
        self.frames_analysed = 0
        self.dropped = 0
        self.reconnects = 0
        self.decode_errors = 0
        self.last_frame_time: float | None = None
        self.last_error_class: str | None = None
        self.last_error: str | None = None
        self._future: Future | None = None
        self._has_streamed = False  # connected at least once in this pool
        self._open_failed = False  # the last open failed (without _has_streamed: retries on the retry lane)
        self._container = None
        self._packets = None
        self._codec = None
        self._time_base = 0.0
        self._retry_at = 0.0
        self._last_packet = 0.0
        self._pending = None
        self._pace_offset: float | None = None
        self._proven_this_session = False  # a keyframe arrived: the camera works (backoff reset)
        self._last_decode_error = float("-inf")
        self._fallback_logged = False
        self._win = (time.monotonic(), 0, 0)
        self._backpressure = not src.live and src.source.backpressure
        self._held: deque[Frame] = deque()
        self._eof_held = False
        self._rates = (0.0, 0.0)
        self.closed = False

    # ---- state machine -------------------------------------------------------------------
    def service(self, now: float) -> float | None:
        """Advance this camera; None if it did I/O (call again soon), else the monotonic time it
        next needs attention."""
        if self._held:
            if not self._hand_out_held():
                return now + BACKPRESSURE_POLL_S
            if self._eof_held:
                self._eof_held = False
                self._set_state(CameraState.ended)
                log.info("camera %s: end of file", self.src.camera_id)
            return None
        if self.state is CameraState.connecting:
            if self._future is None:
                self._start_connect()
                return now + 0.5
            if not self._future.done():
                return now + 0.5
            self._adopt(self._future, now)
            return None
        if self.state is CameraState.backoff:
            if now >= self._retry_at:
                self._start_connect()
                return now + 0.5
            return self._retry_at
        if self.state is CameraState.streaming:
            return self._read_burst(now)
        return now + 3600.0

    def _set_state(self, state: CameraState) -> None:
        if state is not self.state:
            self.state = state
            self.state_since = time.time()

    def _start_connect(self) -> None:
        self._set_state(CameraState.connecting)
        failing = self._open_failed and not self._has_streamed
        self._future = self._lanes.open_input(self.src, failing)
        self._future.add_done_callback(lambda _f: self._wake.set())

    def _adopt(self, future: Future, now: float) -> None:
        self._future = None
        try:
            container = future.result()
        except Exception as exc:  # noqa: BLE001 - any open failure is a camera-level error
            self._open_failed = True
            self._fail(exc, now)
            return
        try:
            if not container.streams.video:
                raise av.error.InvalidDataError(0, "no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context
            codec.thread_count = 1  # many cameras per core; frame threading delays keyframes
            if self._sampler.mode is DecodeMode.keyframes:
                codec.skip_frame = "NONKEY"
        except Exception as exc:  # noqa: BLE001
            self._lanes.run_local(self._close_container, container)
            self._open_failed = True
            self._fail(exc, now)
            return
        self._open_failed = False
        self._has_streamed = True
        self._container = container
        self._codec = codec
        self._time_base = float(stream.time_base or 0)
        self._packets = container.demux(stream)
        self._clock.new_session()
        self._clock.set_rate(float(stream.average_rate or stream.guessed_rate or 0))
        self._sampler.new_session()
        self._pending = None
        self._pace_offset = None
        self._last_packet = now
        self._proven_this_session = False
        self._set_state(CameraState.streaming)
        self._freed()  # the open's probe decoder
        log.info("camera %s: streaming %s", self.src.camera_id, self.src.display_url)

    def _redacted(self, exc: BaseException | str) -> str:
        """The error text with this camera's URL shown redacted, and any other URL's credentials removed."""
        return redact_text(str(exc).replace(self.src.url, self.src.display_url))

    def _fail(self, exc: BaseException | str, now: float, error_class: str | None = None) -> None:
        """Record an error and go to backoff (live) or error (file)."""
        self._release()
        self.last_error_class = error_class or type(exc).__name__
        self.last_error = self._redacted(exc)[:300]
        if not self.src.live:
            log.warning("camera %s: %s: %s", self.src.camera_id, self.last_error_class, self.last_error)
            self._set_state(CameraState.error)
            return
        delay = self._backoff.next_delay()
        self._retry_at = now + delay
        self.reconnects += 1
        log.warning("camera %s: %s: %s; retrying in %.1fs", self.src.camera_id, self.last_error_class,
                    self.last_error, delay)
        self._set_state(CameraState.backoff)

    def _release(self) -> None:
        container, self._container = self._container, None
        self._packets = None
        self._codec = None
        self._pending = None
        if container is not None:
            self._lanes.run_local(self._close_container, container)

    def _close_container(self, container) -> None:
        container.close()
        self._freed()

    def close(self) -> None:
        """Stop pulling: close the stream here (the caller is the reader's thread, which no longer
        reads it), cancel an open that is still queued, close the result of one that is running
        once it is done, and mark ``stopped``."""
        self.closed = True
        future, self._future = self._future, None
        if future is not None and not future.cancel():
            future.add_done_callback(_close_result)
        container, self._container = self._container, None
        self._packets = None
        self._codec = None
        self._pending = None
        if container is not None:
            self._close_container(container)
        self._set_state(CameraState.stopped)

    # ---- reading -------------------------------------------------------------------------
    def _read_burst(self, now: float) -> float | None:
        realtime = not self.src.live and self.src.source.realtime
        # keyframes mode: a non-key packet is only counted (the per-packet path is hot at 25 fps)
        skip_nonkey = self._sampler.mode is DecodeMode.keyframes and not realtime
        packets = self._packets
        counted = False
        for _ in range(BURST_PACKETS):
            if self._held:  # backpressure: the last frame is not taken yet
                self._last_packet = time.monotonic()
                return self._last_packet + BACKPRESSURE_POLL_S
            if self._pending is not None:
                packet, self._pending = self._pending, None
                due = self._pace(packet, time.monotonic())
                if due is not None:
                    self._pending = packet
                    return due
                self._on_packet(packet)
                continue
            started = time.monotonic()
            try:
                packet = next(packets)
            except StopIteration:
                self._on_eof(time.monotonic())
                return None
            except Exception as exc:  # noqa: BLE001 - av/OS read errors: disconnect, never fatal
                self._fail(exc, time.monotonic())
                return None
            blocked = time.monotonic() - started > BLOCKED_S
            if packet.size == 0:
                continue
            if skip_nonkey and not packet.is_keyframe:
                self.frames_in += 1
                counted = True
                if blocked:
                    break
                continue
            if realtime:
                due = self._pace(packet, time.monotonic())
                if due is not None:
                    self._pending = packet
                    return due
            self._on_packet(packet)
            if self.state is not CameraState.streaming:
                return None
            if blocked:
                break
        mono = time.monotonic()
        if counted:
            self.last_frame_time = time.time()
            self._last_packet = mono
        if mono - self._last_packet > self.src.reconnect.stall_timeout_s:
            self._fail(f"no packet for {mono - self._last_packet:.1f}s", mono, "StallTimeout")
        return None

    def _pace(self, packet, mono: float) -> float | None:
        """Realtime file pacing: the monotonic time the packet is due, or None if it is due now."""
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            return None
        t = pts * self._time_base
        if self._pace_offset is None:
            self._pace_offset = mono - t
        due = t + self._pace_offset
        return due if due > mono else None

    def _on_eof(self, now: float) -> None:
        if self.src.live:
            self._fail("end of stream (server closed the connection)", now, "EndOfStream")
        elif self.src.source.loop and self.frames_in > 0 and self._container is not None:
            self._container.seek(0)
            stream = self._container.streams.video[0]
            self._packets = self._container.demux(stream)
            self._codec.flush_buffers()
            self._clock.new_session(contiguous=True)
            self._sampler.new_session()
            self._pace_offset = None
        else:
            if self._codec is not None and self._sampler.mode is not DecodeMode.keyframes:
                try:  # frames held back for B-frame reordering
                    self._emit_decoded(self._codec.decode(None), self._clock.peek(0.0), None)
                except Exception as exc:  # noqa: BLE001
                    self._decode_error(exc)
            self._release()
            if self._held:  # ends once the held frames are handed out
                self._eof_held = True
                return
            self._set_state(CameraState.ended)
            log.info("camera %s: end of file", self.src.camera_id)

    def _on_packet(self, packet) -> None:
        wall = time.time()
        self._last_packet = time.monotonic()
        self.last_frame_time = wall
        self.frames_in += 1
        if packet.is_keyframe and not self._proven_this_session:
            # not on the first emitted frame: with a long analysis interval a session may emit none
            self._proven_this_session = True
            self._backoff.reset()
        pts = packet.pts if packet.pts is not None else packet.dts
        pts_s = pts * self._time_base if pts is not None else None
        t = self._clock.capture_time(pts_s, wall)
        sampler = self._sampler
        if not sampler.wants_packet(packet.is_keyframe, t):
            return
        if sampler.fell_back and not self._fallback_logged:
            self._fallback_logged = True
            self._codec.skip_frame = "DEFAULT"
            log.warning("camera %s: keyframes are %.1fs apart (interval %.1fs): decoding every frame instead",
                        self.src.camera_id, sampler.keyframe_spacing_s or 0.0, sampler.interval_s)
        try:
            if sampler.mode is DecodeMode.keyframes and self.src.releases_decoder:
                decoder = self._fresh_decoder()
                frames = decoder.decode(packet) + decoder.decode(None)
                del decoder  # its frame pool is freed once the frames are converted
                self._freed()
            elif sampler.mode is DecodeMode.keyframes:
                # drain so the keyframe comes out now, not after two more (B-frame reordering)
                frames = self._codec.decode(packet) + self._codec.decode(None)
                self._codec.flush_buffers()
            else:
                frames = self._codec.decode(packet)
        except Exception as exc:  # noqa: BLE001 - corrupt data: count, log once per burst
            self._decode_error(exc)
            return
        self._emit_decoded(frames, t, pts_s)

    def _fresh_decoder(self):
        decoder = av.CodecContext.create(self._codec.name, "r")
        if self._codec.extradata:
            decoder.extradata = self._codec.extradata
        decoder.skip_frame = "NONKEY"
        decoder.thread_count = 1
        return decoder

    def _emit_decoded(self, frames: list, t: float, pts_s: float | None) -> None:
        self.frames_decoded += len(frames)
        sampler = self._sampler
        for frame in frames:
            if sampler.mode is DecodeMode.keyframes or frame.pts is None:
                frame_t, frame_pts = t, pts_s
            else:
                frame_pts = frame.pts * self._time_base
                frame_t = self._clock.peek(frame_pts)
            if sampler.wants_frame(frame_t, self._clock.frame_duration):
                self._emit(frame, frame_t, frame_pts)

    def _emit(self, frame, capture_time: float, pts_s: float | None) -> None:
        image = (self._reformatter or VideoReformatter()).reformat(frame, format="bgr24").to_ndarray()
        out = Frame(camera_id=self.src.camera_id, seq=self.seq, capture_time=capture_time,
                    image=image, pts=pts_s, keyframe=bool(frame.key_frame))
        self.seq += 1
        self.frames_analysed += 1
        if self._backpressure:
            self._held.append(out)
            self._hand_out_held()
        elif self._board.put(out, self):
            self.dropped += 1

    def _hand_out_held(self) -> bool:
        """Backpressure: put held frames on the board while the camera's slot is free; True when none is left."""
        while self._held and self._board.offer(self._held[0], self):
            self._held.popleft()
        return not self._held

    def _decode_error(self, exc: BaseException) -> None:
        self.decode_errors += 1
        now = time.monotonic()
        if now - self._last_decode_error > ERROR_BURST_S:
            log.warning("camera %s: decode error %s: %s (errors in this burst are counted, not logged)",
                        self.src.camera_id, type(exc).__name__, self._redacted(exc)[:200])
        self._last_decode_error = now

    # ---- health --------------------------------------------------------------------------
    def health(self) -> CameraHealth:
        """A snapshot; rates are averaged over the last few seconds."""
        mono = time.monotonic()
        t0, in0, an0 = self._win
        dt = mono - t0
        if dt >= 1.0:
            self._rates = ((self.frames_in - in0) / dt, (self.frames_analysed - an0) / dt)
        if dt >= RATE_WINDOW_S:
            self._win = (mono, self.frames_in, self.frames_analysed)
        return CameraHealth(
            camera_id=self.src.camera_id,
            state=self.state,
            url=self.src.display_url,
            decode_mode=self._sampler.mode.value,
            input_fps=round(self._rates[0], 2),
            analysed_fps=round(self._rates[1], 3),
            frames_in=self.frames_in,
            frames_decoded=self.frames_decoded,
            frames_analysed=self.frames_analysed,
            dropped=self.dropped,
            reconnects=self.reconnects,
            decode_errors=self.decode_errors,
            last_frame_time=self.last_frame_time,
            state_since=self.state_since,
            last_error_class=self.last_error_class,
            last_error=self.last_error,
            keyframe_interval_s=self._sampler.keyframe_spacing_s,
            updated_at=time.time(),
        )


def _close_result(future: Future) -> None:
    """Close a container whose open finished after its camera was stopped."""
    if not future.cancelled() and future.exception() is None:
        future.result().close()
