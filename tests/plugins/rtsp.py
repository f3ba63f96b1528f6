"""RTSP server fixtures (owned by the ingest work).

``rtsp_rig(clip, n)`` starts a GstRtspServer with ``n`` mounts fed by looping ffmpeg feeders and
stops everything after the test; tests skip when ffmpeg or the GStreamer RTSP bindings are missing,
and fail instead under GUANJIA_REQUIRE_SERVICES=1 (CI installs them and sets it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.rig import RtspRig, have_ffmpeg, make_clip, missing_rtsp_tools
from tests.plugins.services import unavailable


@pytest.fixture(scope="session")
def clip() -> Callable[..., Path]:
    """``clip(seconds=…, size=…, fps=…, gop=…, fmt="mpegts"|"mp4")`` → cached test clip path."""
    if not have_ffmpeg():
        unavailable("ffmpeg", "not installed (apt install ffmpeg)")
    return make_clip


@pytest.fixture
def rtsp_rig() -> Iterator[Callable[..., RtspRig]]:
    """Factory: ``rtsp_rig(clip_path, n=1)`` → a started :class:`RtspRig` (stopped at teardown)."""
    missing = missing_rtsp_tools()
    if missing:
        unavailable("the RTSP server", missing)
    rigs: list[RtspRig] = []

    def start(clip_path: Path, n: int = 1) -> RtspRig:
        rig = RtspRig(clip_path, n).start()
        rigs.append(rig)
        return rig

    yield start
    for rig in rigs:
        rig.stop()
