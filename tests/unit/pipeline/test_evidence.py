"""Evidence snapshots: annotated JPEG under a key; storage failures never stop the event."""

import logging

import cv2
import numpy as np

from detectors.records import Box, Detection, FireResult, ZoneCount
from pipeline.evidence import FolderStore, snapshot_key, write_snapshot

from .helpers import T0, camera, det, runner


def frame() -> np.ndarray:
    return np.full((120, 160, 3), 40, np.uint8)


def test_snapshot_written_with_annotations(tmp_path):
    d = Detection(camera_id="cam/1", seq=3, capture_time=T0 + 1.5, frame_width=160, frame_height=120,
                  zones=[ZoneCount(zone="gate", count=2)], boxes=[Box(x1=10, y1=10, x2=40, y2=60, score=0.9)],
                  fire=FireResult(score=0.7, region=(50, 50, 90, 90)))
    key = write_snapshot(FolderStore(tmp_path), frame(), d, camera().zones)
    assert key == snapshot_key("cam/1", T0 + 1.5) == "evidence/cam_1/1800000001500.jpg"
    img = cv2.imread(str(tmp_path / key))
    assert img.shape == (120, 160, 3)
    assert (np.abs(img.astype(int) - 40).sum(axis=2) > 60).sum() > 200  # boxes, zone and text were drawn


def test_unwritable_folder_logs_and_event_still_goes_out(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = runner(camera(threshold=1, dwell=0), evidence=FolderStore(blocker))
    with caplog.at_level(logging.ERROR, logger="pipeline.evidence"):
        events = r.feed(det(0, 5), image=frame())
    assert [e.action.value for e in events] == ["opened"] and events[0].evidence_key
    assert any("not stored" in rec.getMessage() and "cam1" in rec.getMessage() for rec in caplog.records)


def test_runner_writes_snapshot_for_event_frames_only(tmp_path):
    r = runner(camera(threshold=10, dwell=0), evidence=FolderStore(tmp_path))
    r.feed(det(0, 2), image=frame())
    assert not list(tmp_path.rglob("*.jpg"))
    ev = r.feed(det(1, 12), image=frame())[0]
    assert (tmp_path / ev.evidence_key).is_file()
