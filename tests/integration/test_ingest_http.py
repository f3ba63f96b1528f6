"""HLS over HTTP through the same pool, served by a local http.server (no mocks)."""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingest.health import CameraState
from ingest.pool import IngestPool
from ingest.settings import ReconnectPolicy
from ingest.source import CameraSource

pytestmark = pytest.mark.integration


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hls_url(clip, tmp_path):
    src = clip(seconds=6, gop=25)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-f", "hls", "-hls_time", "2",
                    "-hls_playlist_type", "vod", str(tmp_path / "index.m3u8")], check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
    server.shutdown()
    server.server_close()


def test_hls_stream_gives_frames_and_its_end_is_a_disconnect(hls_url):
    cam = CameraSource("hls", hls_url, analysis_interval_s=1.0,
                       reconnect=ReconnectPolicy(backoff_base_s=5.0, backoff_cap_s=10.0))
    with IngestPool([cam], threads=1) as pool:
        frames, deadline = [], time.monotonic() + 15
        while time.monotonic() < deadline and pool.health()[0].reconnects == 0:
            frames += pool.take(timeout=0.2)
        health = pool.health()[0]
    assert len(frames) >= 5 and all(f.image.shape == (240, 320, 3) for f in frames)
    assert health.reconnects >= 1 and health.last_error_class == "EndOfStream"
    assert health.state in (CameraState.backoff, CameraState.connecting, CameraState.streaming)
