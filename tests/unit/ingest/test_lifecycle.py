"""A removed camera hands out nothing more: a slot takes frames only from the reader that owns it."""

from __future__ import annotations

import threading
import time

import numpy as np
from av.video.reformatter import VideoReformatter

from ingest import camera as camera_module
from ingest.board import FrameBoard
from ingest.frame import Frame
from ingest.pool import IngestPool
from ingest.settings import SourceSettings
from ingest.source import CameraSource


def frame(camera: str, seq: int) -> Frame:
    return Frame(camera_id=camera, seq=seq, capture_time=float(seq), image=np.zeros((2, 2, 3), np.uint8))


def test_board_slot_takes_frames_only_from_its_owner():
    board = FrameBoard()
    old, new = object(), object()
    board.claim("c", old)
    assert board.put(frame("c", 7), old) is False
    board.claim("c", new)  # the camera was re-added: the old reader's frame goes with it
    assert board.take(timeout=0) == []
    board.put(frame("c", 8), old)
    assert board.offer(frame("c", 9), old) is False
    assert board.take(timeout=0) == []
    board.put(frame("c", 0), new)
    assert [f.seq for f in board.take(timeout=0)] == [0]
    board.release("c", old)  # a stale release leaves the new owner alone
    board.put(frame("c", 1), new)
    board.release("c", new)
    assert board.take(timeout=0) == []
    board.put(frame("c", 2), new)
    assert board.take(timeout=0) == []


class _Gate:
    """Stands in for VideoReformatter: the first conversion waits until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        real = VideoReformatter()
        if self.calls > 1:
            return real
        gate = self

        class Held:
            def reformat(self, *args, **kwargs):
                gate.entered.set()
                assert gate.open.wait(10)
                return real.reformat(*args, **kwargs)

        return Held()


def test_a_frame_decoded_while_its_camera_was_removed_is_dropped(clip, monkeypatch):
    gate = _Gate()
    monkeypatch.setattr(camera_module, "VideoReformatter", gate)
    path = str(clip(seconds=4, gop=25))
    files = SourceSettings(loop=True, realtime=True)
    with IngestPool([CameraSource("c", path, source=files, release_decoder=True)], threads=1) as pool:
        assert gate.entered.wait(10), "no frame was converted"
        pool.remove_camera("c")  # the reader is inside _emit, about to put its frame
        gate.open.set()
        time.sleep(0.3)
        late = pool.take(timeout=1.0)
    assert late == [], [(f.camera_id, f.seq) for f in late]


def test_a_re_added_camera_never_sees_the_old_readers_frame(clip, monkeypatch):
    gate = _Gate()
    monkeypatch.setattr(camera_module, "VideoReformatter", gate)
    old = CameraSource("c", str(clip(seconds=4, gop=25)), source=SourceSettings(loop=True, realtime=True),
                       release_decoder=True)
    changed = CameraSource("c", str(clip(seconds=4, gop=25, size="160x120")),
                           source=SourceSettings(loop=True, realtime=True), release_decoder=True)
    with IngestPool([old], threads=2) as pool:
        assert gate.entered.wait(10)
        pool.remove_camera("c")
        pool.add_camera(changed)
        gate.open.set()
        frames = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(frames) < 3:
            frames += pool.take(timeout=0.2)
    assert len(frames) >= 3
    assert [f.image.shape for f in frames] == [(120, 160, 3)] * len(frames)  # only the new config's frames
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + len(frames)))
    assert frames[0].seq <= 1  # numbering starts again; it never jumps back from the old reader's
