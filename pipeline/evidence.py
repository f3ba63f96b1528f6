"""Evidence snapshots: an annotated JPEG (boxes, zones, scores) per event, in a folder or in Redis with a TTL.

The key is derived from camera id and capture time, so the process that holds the frame and the
rule engine (which only sees the detection) agree on it without talking to each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from detectors.records import Detection
from detectors.settings import Zone

log = logging.getLogger(__name__)


def snapshot_key(camera_id: str, capture_time: float) -> str:
    """``evidence/<camera>/<capture time in ms>.jpg`` — stable for one analysed frame."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera_id)
    return f"evidence/{safe}/{round(capture_time * 1000)}.jpg"


def annotate(image: np.ndarray, detection: Detection, zones: Sequence[Zone] = ()) -> np.ndarray:
    """A copy of the BGR frame with zones, person boxes, counts and P(fire) drawn on it."""
    import cv2

    out = image.copy()
    h, w = out.shape[:2]
    counts = {z.zone: z.count for z in detection.zones}
    for zone in zones:
        pts = np.array([[x * w, y * h] for x, y in zone.polygon], dtype=np.int32)
        cv2.polylines(out, [pts], True, (0, 200, 255), 2)
        label = f"{zone.name}: {counts.get(zone.name, 0):.0f}"
        cv2.putText(out, label, tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 255), 2)
    for box in detection.boxes:
        cv2.rectangle(out, (int(box.x1), int(box.y1)), (int(box.x2), int(box.y2)), (0, 255, 0), 1)
    header = f"{detection.camera_id}  people={counts.get('*', sum(counts.values())):.0f}"
    if detection.fire is not None:
        header += f"  P(fire)={detection.fire.score:.2f}"
        if detection.fire.region:
            x1, y1, x2, y2 = (int(v) for v in detection.fire.region)
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 2)
    cv2.putText(out, header, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return out


class EvidenceStore(Protocol):
    def put(self, key: str, jpeg: bytes) -> None: ...


class FolderStore:
    """Snapshots as files under a root folder (the key is the relative path)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def put(self, key: str, jpeg: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(jpeg)
        tmp.replace(path)


class RedisStore:
    """Snapshots as Redis strings that expire after ``ttl_s`` (key prefixed ``guanjia:``)."""

    def __init__(self, client, ttl_s: int = 7 * 24 * 3600, prefix: str = "guanjia:"):
        self.client, self.ttl_s, self.prefix = client, ttl_s, prefix

    def put(self, key: str, jpeg: bytes) -> None:
        self.client.set(self.prefix + key, jpeg, ex=self.ttl_s)


def write_snapshot(store: EvidenceStore, image: np.ndarray, detection: Detection, zones: Sequence[Zone] = (), quality: int = 85) -> str | None:
    """Annotate and store the frame; returns its key, or None (error logged) when it cannot be stored.

    An event goes out without its snapshot rather than not at all.
    """
    import cv2

    key = snapshot_key(detection.camera_id, detection.capture_time)
    try:
        ok, buf = cv2.imencode(".jpg", annotate(image, detection, zones), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        store.put(key, buf.tobytes())
    except Exception as exc:  # noqa: BLE001 - any storage failure must not stop the event
        log.error("evidence for camera %s not stored (%s: %s); the event goes out without it", detection.camera_id, type(exc).__name__, exc)
        return None
    return key
