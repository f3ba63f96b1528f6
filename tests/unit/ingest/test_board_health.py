"""The latest-frame board, health records and source options."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ingest.board import FrameBoard
from ingest.frame import Frame
from ingest.health import CameraHealth, CameraState, HealthPublisher
from ingest.settings import SourceSettings
from ingest.source import CameraSource, av_options
from ingest.urls import redact_text


def frame(camera: str, seq: int) -> Frame:
    return Frame(camera_id=camera, seq=seq, capture_time=float(seq), image=np.zeros((2, 2, 3), np.uint8))


def test_board_keeps_only_the_latest_frame_per_camera_and_counts_drops():
    board = FrameBoard()
    assert board.put(frame("a", 0)) is False
    assert board.put(frame("b", 0)) is False
    assert board.put(frame("a", 1)) is True  # replaced an unconsumed frame
    taken = board.take(timeout=0)
    assert [(f.camera_id, f.seq) for f in taken] == [("a", 1), ("b", 0)]
    assert board.take(timeout=0) == []


def test_board_take_limits_and_wakes_waiters():
    board = FrameBoard()
    for cam in "abc":
        board.put(frame(cam, 0))
    assert [f.camera_id for f in board.take(timeout=0, max_frames=2)] == ["a", "b"]
    board.take(timeout=0)
    got: list = []
    waiter = threading.Thread(target=lambda: got.extend(board.take(timeout=5)))
    waiter.start()
    time.sleep(0.05)
    board.put(frame("z", 3))
    waiter.join(2)
    assert [f.camera_id for f in got] == ["z"]
    board.close()
    started = time.monotonic()
    assert board.take(timeout=5) == [] and time.monotonic() - started < 1


def test_health_round_trips_through_redis_strings():
    health = CameraHealth(camera_id="c1", state=CameraState.backoff, url="rtsp://***@h/x", decode_mode="keyframes",
                          input_fps=25.0, analysed_fps=0.5, frames_in=100, frames_decoded=4, frames_analysed=4, dropped=1,
                          reconnects=2, decode_errors=3, last_frame_time=None, state_since=12.5,
                          last_error_class="TimeoutError", last_error="timed out", keyframe_interval_s=2.0)
    assert CameraHealth.from_redis({k.encode(): v.encode() for k, v in health.to_redis().items()}) == health


def test_publisher_survives_redis_being_down(caplog):
    import redis

    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    publisher = HealthPublisher(client)
    snap = CameraHealth(camera_id="c1", state=CameraState.streaming, url="x", decode_mode="keyframes")
    assert publisher.publish([snap]) is False
    assert publisher.publish([snap]) is False
    assert sum("cannot publish" in r.message for r in caplog.records) == 1  # logged once per outage


def test_av_options_set_timeouts_in_microseconds_and_transport():
    cam = CameraSource("c", "rtsp://h/x", source=SourceSettings(rtsp_transport="udp", read_timeout_s=2.5))
    opts = av_options(cam)
    assert opts["rtsp_transport"] == "udp" and opts["timeout"] == "2500000"
    assert opts["analyzeduration"] == "500000"
    assert "rw_timeout" in av_options(CameraSource("c", "https://h/live.m3u8"))
    assert "timeout" not in av_options(CameraSource("c", "/tmp/x.ts"))


def test_camera_source_rejects_bad_urls_and_redacts():
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        CameraSource("c", "ftp://u:p@h/x")
    cam = CameraSource("c", "rtsp://admin:pw@10.0.0.1/ch1")
    assert cam.live and cam.display_url == "rtsp://***@10.0.0.1/ch1"
    assert not CameraSource("f", "/videos/a.mp4").live
    assert redact_text("failed: 'rtsp://admin:pw@10.0.0.1/ch1' (x)") == "failed: 'rtsp://***@10.0.0.1/ch1' (x)"


@pytest.mark.parametrize("password", ["p@ss", "p@s/s", "p/ss", "@@", "a@b@c"])
def test_passwords_with_at_signs_and_slashes_are_redacted_whole(password):
    url = f"rtsp://admin:{password}@10.0.0.1/ch1"
    assert CameraSource("c", url).display_url == "rtsp://***@10.0.0.1/ch1"
    text = f"Error opening '{url}': 401 Unauthorized; retry rtsp://u:{password}@h2/s2 later"
    assert redact_text(text) == "Error opening 'rtsp://***@10.0.0.1/ch1': 401 Unauthorized; retry rtsp://***@h2/s2 later"
