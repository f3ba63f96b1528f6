"""``SourceSettings.backpressure``: a file reader waits for its frame to be taken instead of overwriting it."""

from __future__ import annotations

import itertools
import time

import numpy as np

from ingest.board import FrameBoard
from ingest.frame import Frame
from ingest.health import CameraState
from ingest.pool import IngestPool
from ingest.settings import DecodeMode, SourceSettings
from ingest.source import CameraSource


def _consume_slowly(pool: IngestPool, camera_id: str, delay_s: float, timeout: float = 30.0) -> list[Frame]:
    """Take frames one by one, sleeping like a slow detector, until the file has ended and the board is empty."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = next(h for h in pool.health() if h.camera_id == camera_id).state
        got = pool.take(timeout=0.2)
        frames += got
        if got:
            time.sleep(delay_s)
        elif state in (CameraState.ended, CameraState.error) and not len(pool.board):
            break
    return frames


def test_offer_keeps_the_unconsumed_frame():
    board = FrameBoard()
    first = Frame("c", 0, 1.0, np.zeros((2, 2, 3), np.uint8))
    second = Frame("c", 1, 2.0, np.zeros((2, 2, 3), np.uint8))
    assert board.offer(first) is True
    assert board.offer(second) is False
    assert [f.seq for f in board.take(timeout=0)] == [0]
    assert board.offer(second) is True


def test_backpressure_hands_out_every_sampled_frame_to_a_slow_consumer(clip):
    path = clip(seconds=6, gop=25)  # 25 fps, 150 frames
    cams = [
        CameraSource("bp", str(path), source=SourceSettings(backpressure=True), analysis_interval_s=0.5,
                     decode_mode=DecodeMode.interval),
        CameraSource("lossy", str(path), analysis_interval_s=0.5, decode_mode=DecodeMode.interval),
    ]
    with IngestPool(cams, threads=1) as pool:
        frames = _consume_slowly(pool, "bp", delay_s=0.05)
        health = {h.camera_id: h for h in pool.health()}
    bp = [f for f in frames if f.camera_id == "bp"]
    assert health["bp"].state is CameraState.ended
    assert health["bp"].dropped == 0
    assert [f.seq for f in bp] == list(range(12))  # 6 s of stream at one frame per 0.5 s, none lost
    pts = [f.pts for f in bp]
    assert all(abs((b - a) - 0.5) < 0.05 for a, b in itertools.pairwise(pts))
    # capture times follow stream time, not the (slower) reading
    assert abs((bp[-1].capture_time - bp[0].capture_time) - (pts[-1] - pts[0])) < 0.05
    # the same file without backpressure is read at full speed and overwrites frames the consumer had no time for
    assert health["lossy"].dropped > 0
