"""Cameras that never answer must not hold up the others, nor ``stop()`` (docs/ingest.md#sources).

Silent cameras are local listeners that accept a connection and never say a word, so every open
of them runs into its ``open_timeout_s``. Timings are asserted at order of magnitude: before the
lanes, the healthy camera or ``stop()`` waited for the whole queue of silent opens (6–30 s here).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import Counter

import pytest

from ingest import pool as pool_module
from ingest.health import CameraState
from ingest.pool import IngestPool
from ingest.settings import ReconnectPolicy, SourceSettings
from ingest.source import CameraSource

from .ingest_support import wait_for

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(backoff_base_s=0.2, backoff_cap_s=1.0, stall_timeout_s=5.0)


class SilentServers:
    """``n`` listeners on 127.0.0.1 that accept connections, count them and never answer."""

    def __init__(self, n: int):
        self.listeners = []
        for _ in range(n):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            listener.setblocking(False)
            self.listeners.append(listener)
        self.accepted: Counter[int] = Counter()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as sel:
            for i, listener in enumerate(self.listeners):
                sel.register(listener, selectors.EVENT_READ, i)
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    try:
                        conn, _addr = key.fileobj.accept()
                    except OSError:
                        continue
                    self._conns.append(conn)
                    self.accepted[key.data] += 1

    def url(self, i: int) -> str:
        return f"rtsp://127.0.0.1:{self.listeners[i].getsockname()[1]}/live"

    def cameras(self, open_timeout_s: float, prefix: str = "silent") -> list[CameraSource]:
        settings = SourceSettings(open_timeout_s=open_timeout_s, read_timeout_s=open_timeout_s)
        return [CameraSource(f"{prefix}-{i:02d}", self.url(i), source=settings, reconnect=FAST)
                for i in range(len(self.listeners))]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._conns:
            conn.close()
        for listener in self.listeners:
            listener.close()


@pytest.fixture
def silent():
    servers: list[SilentServers] = []

    def make(n: int) -> SilentServers:
        servers.append(SilentServers(n))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def first_frame_after(pool: IngestPool, camera_id: str, timeout: float) -> float | None:
    """Seconds until a frame of ``camera_id`` is taken, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(f.camera_id == camera_id for f in pool.take(timeout=0.1)):
            return time.monotonic() - started
    return None


def test_stop_returns_within_its_timeout_with_silent_opens_queued(silent):
    servers = silent(12)
    pool = IngestPool(servers.cameras(open_timeout_s=4.0), threads=1, open_workers=2).start()
    assert wait_for(lambda: sum(servers.accepted.values()) >= 2, 5.0), "no open reached the silent servers"
    started = time.monotonic()
    pool.stop(timeout=1.0)
    took = time.monotonic() - started
    # before: stop() ran every queued open to its 4 s timeout, 12 / 2 workers × 4 s ≈ 24 s
    assert took < 3.0, f"stop(timeout=1.0) took {took:.1f}s"


def test_a_removed_camera_never_opens_once_its_open_was_queued(silent):
    servers = silent(4)
    cams = servers.cameras(open_timeout_s=1.5)
    with IngestPool(cams, threads=1, open_workers=1) as pool:
        assert wait_for(lambda: servers.accepted[0] >= 1, 5.0)  # camera 0 holds the only open worker
        assert all(servers.accepted[i] == 0 for i in (1, 2, 3))
        for cam in cams[1:]:
            pool.remove_camera(cam.camera_id)
        time.sleep(2 * 1.5 + 1.0)  # long enough for the queued opens to have run, had they not been cancelled
        assert [servers.accepted[i] for i in (1, 2, 3)] == [0, 0, 0]
        assert [h.camera_id for h in pool.health()] == ["silent-00"]


def test_a_file_camera_is_not_held_up_by_silent_cameras(silent, clip):
    servers = silent(12)
    demo = CameraSource("demo-file", str(clip(seconds=4, gop=25)), source=SourceSettings(loop=True))
    with IngestPool([*servers.cameras(open_timeout_s=1.0), demo], threads=1, open_workers=2) as pool:
        took = first_frame_after(pool, "demo-file", 15.0)
    # before: its open queued behind 12 silent opens, 12 / 2 workers × 1 s ≈ 6.6 s
    assert took is not None and took < 3.0, took


def test_trims_do_not_queue_behind_silent_opens(silent, clip, monkeypatch):
    trims: list[float] = []
    monkeypatch.setattr(pool_module, "trim_malloc", lambda: trims.append(time.monotonic()) or True)
    monkeypatch.setattr(pool_module, "TRIM_DELAY_S", 0.0)
    servers = silent(12)
    demo = CameraSource("demo-file", str(clip(seconds=4, gop=25)), analysis_interval_s=0.5, release_decoder=True,
                        source=SourceSettings(loop=True, realtime=True))
    with IngestPool([demo, *servers.cameras(open_timeout_s=2.0)], threads=1, open_workers=2,
                    trim_interval_s=0.01) as pool:
        took = first_frame_after(pool, "demo-file", 15.0)
        assert took is not None
        framed = time.monotonic()
        assert wait_for(lambda: trims, 10.0), "no trim at all"
        late = trims[0] - framed
    # each analysed frame frees a decoder; before, the trim waited for ~11 silent opens of 2 s on 2 workers
    assert late < 3.0, f"first trim {late:.1f}s after the first frame"


def test_a_new_rtsp_camera_opens_while_silent_cameras_keep_retrying(silent, clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=25), n=1)
    servers = silent(16)
    with IngestPool(servers.cameras(open_timeout_s=1.5), threads=1, open_workers=2) as pool:
        assert wait_for(lambda: all(h.reconnects >= 1 for h in pool.health()), 20.0, step=0.2)
        pool.add_camera(CameraSource("healthy", rig.urls[0], reconnect=FAST, analysis_interval_s=0.5))
        took = first_frame_after(pool, "healthy", 30.0)
    # before: its open waited behind the silent cameras' retries, ~14 / 2 workers × 1.5 s
    assert took is not None and took < 5.0, took


def test_a_camera_that_streamed_reconnects_while_silent_cameras_keep_retrying(silent, clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=25), n=1)
    servers = silent(16)
    healthy = CameraSource("healthy", rig.urls[0], reconnect=FAST, analysis_interval_s=0.5)
    with IngestPool([healthy, *servers.cameras(open_timeout_s=1.5)], threads=1, open_workers=2) as pool:
        assert first_frame_after(pool, "healthy", 30.0) is not None
        assert wait_for(lambda: all(h.reconnects >= 1 for h in pool.health() if h.camera_id != "healthy"),
                        20.0, step=0.2)
        rig.kill_server()
        assert wait_for(lambda: next(h for h in pool.health() if h.camera_id == "healthy").state
                        is not CameraState.streaming, 5.0)
        time.sleep(1.0)  # a few refused reconnects
        pool.take(timeout=0)
        rig.start_server()
        took = first_frame_after(pool, "healthy", 30.0)
    # backoff cap 1 s + open + first keyframe; before: also behind ~14 silent retries of 1.5 s on 2 workers
    assert took is not None and took < 5.0, took
