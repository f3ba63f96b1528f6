"""A restarted Faust worker still detects silent cameras: their health states come back from the changelog."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.faust_app import OFFLINE_EVERY_S
from pipeline.records import CameraHealth
from pipeline.settings import Settings

from .events_support import Worker, create_topics, produce, read_until, unique_prefix, write_config

pytestmark = pytest.mark.integration

OFFLINE_S = 25.0  # long enough to restart the worker before the cameras count as silent
CAMERAS = ("quiet-1", "quiet-2")  # on the camera-health partitions 1 and 0 of 2


def changelog_keys(settings: Settings, topic: str, want: set[str], timeout_s: float = 60.0) -> set[str]:
    """Keys written to a table changelog, read until ``want`` are all there or the timeout.

    Reads only once the worker has made the topic: a consumer asking for a topic that does not exist
    yet would have the broker create it with one partition.
    """

    async def run() -> set[str]:
        deadline = time.monotonic() + timeout_s
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            while topic not in await admin.list_topics():
                if time.monotonic() > deadline:
                    return set()
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            keys: set[str] = set()
            while time.monotonic() < deadline and not want <= keys:
                for msgs in (await consumer.getmany(timeout_ms=300)).values():
                    keys |= {json.loads(m.key) for m in msgs}
            return keys
        finally:
            await consumer.stop()

    return asyncio.run(run())


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
        assert changelog_keys(settings, changelog, set(CAMERAS)) >= set(CAMERAS), (tmp_path / "worker.log").read_text()[-3000:]
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
