"""A restarted Faust worker still detects silent cameras: their health states come back from the changelog."""

from __future__ import annotations

import time

import pytest

from pipeline.faust_app import OFFLINE_EVERY_S
from pipeline.records import CameraHealth
from pipeline.settings import Settings

from .events_support import (
    Worker,
    create_topics,
    produce,
    read_topic,
    read_until,
    unique_prefix,
    write_config,
)

pytestmark = pytest.mark.integration

OFFLINE_S = 25.0  # long enough to restart the worker before the cameras count as silent
CAMERAS = ("quiet-1", "quiet-2")  # on the camera-health partitions 1 and 0 of 2


def test_restarted_worker_detects_cameras_that_went_silent_before_it_started(kafka_bootstrap, tmp_path):
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique_prefix("silent"), topic_partitions=2)
    cams = [{"id": cam, "url": f"rtsp://127.0.0.1:1/{cam}", "grid": "QG1"} for cam in CAMERAS]
    config = write_config(tmp_path / "cams.yaml", cams, {"offline_minutes": OFFLINE_S / 60})
    create_topics(settings)
    worker = Worker(settings, config, None, tmp_path / "worker.log")
    worker.start()
    try:
        t0 = time.time()
        produce(settings, "camera-health",
                [(cam, CameraHealth(camera_id=cam, time=t0, state="streaming").to_json()) for cam in CAMERAS])
        changelog = f"{settings.topic_prefix}-events-health-changelog"
        keys = read_topic(settings, changelog, lambda keys: set(CAMERAS) <= set(keys), part="key", wait_for_topic=True)
        assert set(keys) >= set(CAMERAS), (tmp_path / "worker.log").read_text()[-3000:]
        worker.stop()  # the reports' states are in the changelog; then no report ever again
        worker.start()
        assert time.time() - t0 < OFFLINE_S - 5, "the restart took too long for this test"
        evs = read_until(settings, "governance-events", lambda m: len(m) >= 2, timeout_s=OFFLINE_S + OFFLINE_EVERY_S + 30)
        assert sorted((e["camera_id"], e["rule"], e["action"]) for e in evs) == [
            (cam, "camera_offline", "opened") for cam in sorted(CAMERAS)], evs
        assert all(e["started_at"] == pytest.approx(t0, abs=1e-3) for e in evs)
        assert all(e["updated_at"] >= t0 + OFFLINE_S for e in evs)
        time.sleep(OFFLINE_EVERY_S + 1)
        assert len(read_until(settings, "governance-events", lambda m: False, timeout_s=2)) == 2  # once each
        assert worker.alive()
    finally:
        worker.stop()
