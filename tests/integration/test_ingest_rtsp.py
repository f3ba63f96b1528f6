"""Ingest against a real GstRtspServer on 127.0.0.1 fed by ffmpeg (no mocks)."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from collections import Counter

import pytest

from ingest.health import CameraState, HealthPublisher, down_cameras, read_health
from ingest.pool import IngestPool
from ingest.rig import free_port
from ingest.settings import ReconnectPolicy, SourceSettings
from ingest.source import CameraSource

from .ingest_support import wait_for

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(backoff_base_s=0.2, backoff_cap_s=1.0, stall_timeout_s=5.0)


def state_of(pool: IngestPool, camera_id: str) -> CameraState:
    return next(h.state for h in pool.health() if h.camera_id == camera_id)


def collect(pool: IngestPool, seconds: float) -> list:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += pool.take(timeout=0.2)
    return frames


def test_frames_arrive_at_the_configured_interval(clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=25), n=1)  # keyframes every 1.0 s
    cam = CameraSource("cam-a", rig.urls[0], reconnect=FAST, analysis_interval_s=2.0)
    with IngestPool([cam], threads=1) as pool:
        assert pool.take(timeout=15), "no first frame from the RTSP server"
        frames = collect(pool, 8.5)
    assert len(frames) >= 3
    times = [f.capture_time for f in frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(1.0 - 0.05 <= g <= 3.0 + 0.05 for g in gaps), gaps  # 2 s ± one keyframe
    assert abs(sum(gaps) / len(gaps) - 2.0) < 0.35, gaps
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + len(frames)))
    assert all(f.image.shape == (240, 320, 3) and f.keyframe for f in frames)


def test_killed_server_backs_off_and_resumes_within_cap_plus_2s(clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=12), n=1)
    cam = CameraSource("cam-k", rig.urls[0], reconnect=FAST, analysis_interval_s=0.5)
    with IngestPool([cam], threads=1, seed=1) as pool:
        assert pool.take(timeout=15)
        rig.kill_server()
        assert wait_for(lambda: state_of(pool, "cam-k") is CameraState.backoff, 5.0), "EOF not seen as a disconnect"
        time.sleep(2.0)
        down = next(h for h in pool.health() if h.camera_id == "cam-k")
        assert down.reconnects >= 2 and down.state in (CameraState.backoff, CameraState.connecting)
        assert down.last_error_class in ("ConnectionRefusedError", "EndOfStream")
        pool.take(timeout=0)
        rig.start_server()
        returned = time.monotonic()
        assert wait_for(lambda: state_of(pool, "cam-k") is CameraState.streaming, FAST.backoff_cap_s + 2.0)
        frames = pool.take(timeout=FAST.backoff_cap_s + 2.0 - (time.monotonic() - returned))
        assert frames, f"no frame within cap + 2 s of the server's return ({time.monotonic() - returned:.1f}s)"
        assert frames[0].seq > 0  # numbering continues across the reconnect


def test_a_sparsely_analysed_camera_that_comes_back_starts_its_backoff_over(clip, rtsp_rig):
    """Backoff resets on the first keyframe of a session, not on the first analysed frame: with an
    hour between analysed frames a camera that drops now and then would otherwise wait at the cap."""
    rig = rtsp_rig(clip(seconds=10, gop=12), n=1)
    cam = CameraSource("cam-s", rig.urls[0], reconnect=FAST, analysis_interval_s=3600)
    with IngestPool([cam], threads=1, seed=1) as pool:
        assert pool.take(timeout=15)  # the one analysed frame of the hour
        reader = next(r for thread in pool._threads for r in thread.readers if r.src.camera_id == "cam-s")
        rig.kill_server()
        assert wait_for(lambda: reader._backoff.attempt >= 3, 10.0), "no failed reconnects while the server was down"
        rig.start_server()
        assert wait_for(lambda: state_of(pool, "cam-s") is CameraState.streaming and reader.frames_in > 30, 15.0)
        assert reader._backoff.attempt == 0  # streaming again, though no frame was analysed in this session


def test_hung_server_mid_stream_times_out_and_recovers(clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=12), n=1)
    cam = CameraSource("cam-hung", rig.urls[0], reconnect=FAST, analysis_interval_s=0.5,
                       source=SourceSettings(read_timeout_s=1.0, open_timeout_s=2.0))
    with IngestPool([cam], threads=1) as pool:
        assert pool.take(timeout=15)
        rig.pause_server()
        frozen = time.monotonic()
        assert wait_for(lambda: state_of(pool, "cam-hung") is not CameraState.streaming, 8.0), "read never timed out"
        assert time.monotonic() - frozen < 8.0
        rig.resume_server()
        assert wait_for(lambda: pool.take(timeout=0.2), 15.0), "no frame after the server woke up"


def test_unreachable_port_backs_off_without_hanging():
    port = free_port()
    cam = CameraSource("cam-u", f"rtsp://admin:hun@ter2@127.0.0.1:{port}/live", reconnect=FAST)  # FFmpeg takes the last '@'
    pool = IngestPool([cam], threads=1).start()
    try:
        assert wait_for(lambda: next(h for h in pool.health()).reconnects >= 3, 6.0)
        health = pool.health()[0]
        assert health.state in (CameraState.backoff, CameraState.connecting)
        assert health.last_error_class == "ConnectionRefusedError"
        assert "127.0.0.1" in (health.last_error or "")
        for part in ("hun", "ter2"):
            assert part not in (health.last_error or "") and part not in health.url and part not in repr(cam)
    finally:
        started = time.monotonic()
        pool.stop()
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(("open_s", "read_s"), [(1.0, 4.0), (4.0, 1.0)])
def test_silent_server_times_out_and_backs_off(open_s, read_s):
    """A server that accepts and never answers: the open gives up after the shorter of the open timeout
    and the socket (read) timeout, and says it timed out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    cam = CameraSource("cam-h", f"rtsp://127.0.0.1:{port}/live", reconnect=FAST,
                       source=SourceSettings(open_timeout_s=open_s, read_timeout_s=read_s))
    try:
        with IngestPool([cam], threads=1) as pool:
            started = time.monotonic()
            health = wait_for(lambda: next((h for h in pool.health() if h.reconnects >= 1), None), 6.0)
            assert health is not None, "open never timed out"
            assert 0.9 <= time.monotonic() - started < 3.5  # about 1 s: neither the 4 s limit nor forever
            assert health.state in (CameraState.backoff, CameraState.connecting)
            assert health.last_error_class == "TimeoutError" and "no answer within" in health.last_error
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_sixteen_cameras_from_one_process_with_few_threads(clip, rtsp_rig):
    rig = rtsp_rig(clip(seconds=10, gop=25), n=4)
    cams = [CameraSource(f"cam-{i:02d}", rig.urls[i % 4], reconnect=FAST, analysis_interval_s=1.0) for i in range(16)]
    before = set(threading.enumerate())
    with IngestPool(cams, threads=2, open_workers=4) as pool:
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and (len(seen) < 16 or min(seen.values()) < 3):
            for frame in pool.take(timeout=0.5):
                seen[frame.camera_id] = seen.get(frame.camera_id, 0) + 1
        kinds = Counter(re.sub(r"[-_]\d+$", "", t.name) for t in set(threading.enumerate()) - before)
        # 2 readers, ≤ 4 openers, 1 for closes and trims; ≤ 4 more only for cameras that failed before streaming
        assert kinds["ingest-reader"] == 2 and kinds["ingest-open"] <= 4 and kinds["ingest-local"] <= 1, kinds
        assert kinds["ingest-retry"] <= 4 and sum(kinds.values()) == sum(kinds[k] for k in (
            "ingest-reader", "ingest-open", "ingest-local", "ingest-retry")), kinds
    assert len(seen) == 16 and min(seen.values()) >= 3, seen


def test_health_is_published_to_redis(clip, rtsp_rig, redis_client, redis_key_prefix):
    rig = rtsp_rig(clip(seconds=10, gop=25), n=1)
    prefix = redis_key_prefix.rstrip(":")
    publisher = HealthPublisher(redis_client, ttl_s=30, prefix=prefix)
    cams = [CameraSource("cam-live", rig.urls[0], reconnect=FAST, analysis_interval_s=1.0),
            CameraSource("cam-dead", f"rtsp://u:secret@127.0.0.1:{free_port()}/x", reconnect=FAST)]
    with IngestPool(cams, threads=1, on_health=publisher.publish, health_interval_s=0.5):
        def live_streaming():
            rows = {h.camera_id: h for h in read_health(redis_client, prefix=prefix)}
            live = rows.get("cam-live")
            return rows if live and live.state is CameraState.streaming and live.frames_analysed > 0 else None

        rows = wait_for(live_streaming, 15.0, step=0.25)
        assert rows, "cam-live never reported streaming"
    assert rows["cam-dead"].state in (CameraState.backoff, CameraState.connecting)
    assert "secret" not in rows["cam-dead"].url and "secret" not in (rows["cam-dead"].last_error or "")
    assert 0 < redis_client.ttl(f"{prefix}:camera:cam-live") <= 30
    assert down_cameras(redis_client, stale_after_s=10, prefix=prefix) == ["cam-dead"]
