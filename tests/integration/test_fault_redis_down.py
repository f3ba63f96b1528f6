"""Redis dies under a running `guanjia worker ingest` (SIGKILL of a private redis-server): the worker keeps
analysing and producing detections to Kafka; when Redis returns (empty, same port) the camera-health keys
reappear. Real Kafka, private Redis, generated clip, the shared fire model."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.integration.fault_support import (
    PrivateRedis,
    read_detections,
    start_ingest_worker,
    wait_for,
    write_fire_cameras,
)
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

CAMERAS = ["rd-1", "rd-2"]
OUTAGE_S = 6.0


def test_worker_keeps_analysing_while_redis_is_down_and_health_returns(clip, kafka_bootstrap: str,
                                                                        tmp_path: Path) -> None:
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    video = clip(seconds=6.0, size="320x240", fps=10, gop=10)
    store = PrivateRedis()
    prefix = f"t14rd-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.detections.v1"
    config = write_fire_cameras(tmp_path / "cams.yaml", "redis", video, CAMERAS)
    log = tmp_path / "worker.log"
    worker = None
    try:
        store.start()
        client = redis.Redis.from_url(store.url, socket_connect_timeout=1, socket_timeout=1)
        env = {**os.environ, "GUANJIA_KAFKA_BOOTSTRAP": kafka_bootstrap, "GUANJIA_TOPIC_PREFIX": prefix,
               "GUANJIA_REDIS_URL": store.url}
        worker = start_ingest_worker(config, env, log, "--loglevel", "info")

        def health_keys() -> bool:
            try:
                return all(client.exists(f"guanjia:camera:{cam}") for cam in CAMERAS)
            except redis.RedisError:
                return False

        assert wait_for(health_keys, 150), log.read_text()[-3000:]

        store.stop()
        down_at = time.time()
        time.sleep(OUTAGE_S)
        assert worker.poll() is None, log.read_text()[-3000:]
        during = [d for d in read_detections(kafka_bootstrap, topic) if d.capture_time > down_at + 1]
        assert {d.camera_id for d in during} == set(CAMERAS), "no detections while Redis was down"

        store.start()  # empty: no persistence
        assert not health_keys()
        took = wait_for(health_keys, 30)
        assert took is not None, log.read_text()[-3000:]
        assert client.zscore("guanjia:cameras:last_seen", CAMERAS[0]) is not None

        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        text = log.read_text()
        assert code == 0 and "Traceback" not in text, text[-3000:]
        assert "cannot publish to Redis" in text and "publishing to Redis again" in text, text[-3000:]
        detections = read_detections(kafka_bootstrap, topic)
        for cam in CAMERAS:  # --backpressure: every sampled frame analysed, across the outage too
            seqs = sorted(d.seq for d in detections if d.camera_id == cam)
            assert seqs == list(range(len(seqs))), (cam, [s for s, n in Counter(seqs).items() if n > 1][:10])
        print(f"Redis down {OUTAGE_S:.0f}s: {len(during)} detections produced meanwhile; "
              f"health keys back {took:.1f}s after Redis returned")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        store.stop()
