"""Kill the Faust worker mid-stream (SIGKILL) and restart it: no event lost, none duplicated."""

from __future__ import annotations

import collections
import json
import time

import pytest

from detectors.records import Detection, ZoneCount
from pipeline.catalog import load_catalog
from pipeline.config import load_config
from pipeline.embedded import EmbeddedRunner
from pipeline.settings import Settings

from .events_support import Worker, create_topics, produce, read_until, unique_prefix, write_config

pytestmark = pytest.mark.integration

CAMERAS, STEPS = 40, 60
PATTERN = [8, 9, 10, 1, 1, 1]  # opened, updated (peak +25%), closed: three event messages per cycle


def detections(t0: float) -> list[Detection]:
    out = []
    for step in range(STEPS):
        for i in range(CAMERAS):
            out.append(Detection(camera_id=f"k{i:02d}", seq=step, capture_time=t0 + step, frame_width=64,
                                 frame_height=48, zones=[ZoneCount(zone="*", count=PATTERN[step % len(PATTERN)])]))
    return out


def test_killed_worker_resumes_from_changelog_without_loss_or_duplicates(kafka_bootstrap, tmp_path):
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique_prefix("kill"), topic_partitions=4)
    cams = [{"id": f"k{i:02d}", "url": "rtsp://127.0.0.1:1/k", "grid": f"KG{i:02d}"} for i in range(CAMERAS)]
    config = write_config(tmp_path / "cams.yaml", cams, {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0}})
    dets = detections(time.time())

    runner = EmbeddedRunner(load_config([config]).cameras, load_catalog())
    expected = {(e.event_id, e.revision, e.action.value) for d in dets for e in runner.feed(d)}
    assert len(expected) == CAMERAS * (STEPS // len(PATTERN)) * 3

    create_topics(settings)
    worker = Worker(settings, config, None, tmp_path / "worker.log")
    half = len(dets) // 2
    produce(settings, "detections", [(d.camera_id, d.to_json()) for d in dets[:half]])
    worker.start()
    try:
        seen = read_until(settings, "governance-events", lambda m: len(m) >= 60, timeout_s=90)
        assert len(seen) >= 60, (tmp_path / "worker.log").read_text()[-3000:]
        worker.kill()  # mid-stream: state and offsets as the crash left them
        produce(settings, "detections", [(d.camera_id, d.to_json()) for d in dets[half:]])
        worker.start()
        got = read_until(settings, "governance-events",
                         lambda m: {(e["event_id"], e["revision"], e["action"]) for e in m} >= expected, timeout_s=120)
    finally:
        worker.stop()

    keys = [(e["event_id"], e["revision"], e["action"]) for e in got]
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    copies: dict[tuple, set[str]] = collections.defaultdict(set)
    for e in got:
        copies[(e["event_id"], e["revision"])].add(json.dumps(e, sort_keys=True))
    assert all(len(v) == 1 for v in copies.values()), "a re-sent revision differs from the first"
    opened = [e["event_id"] for e in got if e["action"] == "opened"]
    assert len(set(opened)) == CAMERAS * (STEPS // len(PATTERN))
    print(f"event messages {len(got)}, distinct {len(set(keys))}, re-sent identical copies {len(got) - len(set(keys))}")
