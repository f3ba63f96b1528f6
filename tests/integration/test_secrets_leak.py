"""Secrets never leak: one marker string is the camera, Kafka and Redis password of a short pipeline run.

Everything the run shows or writes is collected (CLI output and errors, log records at DEBUG, produced
Kafka messages, the metrics page, the risk-map snapshot, exception texts) and searched for the marker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors.records import Detection, FireResult, ZoneCount
from ingest.health import CameraHealth, CameraState, HealthPublisher
from ingest.urls import redact_url
from pipeline.catalog import load_catalog
from pipeline.config import load_config
from pipeline.embedded import EmbeddedRunner
from pipeline.metrics import Metrics
from pipeline.security import (
    TransportError,
    connect_redis,
    faust_security_settings,
    kafka_client_options,
    start_kafka_client,
)
from pipeline.topics import ensure_topics
from pipeline.web import LiveState
from tests.integration.events_support import write_config
from tests.integration.secure_support import Secure

pytestmark = pytest.mark.integration

GUANJIA = str(Path(sys.executable).with_name("guanjia"))


def _cli(secure: Secure, *args: str, **env: str) -> str:
    result = subprocess.run([GUANJIA, *args], env=secure.process_env(**env), capture_output=True, text=True,
                            timeout=120, check=False)
    return f"$ guanjia {' '.join(args)} → {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_marker_appears_nowhere(secure: Secure, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    marker = secure.password
    prefix = f"leak{uuid.uuid4().hex[:8]}"
    settings = secure.settings(topic_prefix=prefix, topic_partitions=1)
    env = {"CAM_PW": marker, "GUANJIA_TOPIC_PREFIX": prefix}
    zone = [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}]
    config = write_config(tmp_path / "cams.yaml", [
        {"id": "cam-leak", "name": "Gate", "url": "rtsp://admin:${CAM_PW}@127.0.0.1:1/x", "grid": "G1", "zones": zone},
    ], {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0},
        "fire": {"threshold": 0.5, "k": 1, "n": 1, "clear_s": 0}})
    seen: list[str] = []

    # the configuration, as the commands print it
    seen += [_cli(secure, "config", "show", str(config), **env), _cli(secure, "config", "show", "--json", str(config), **env),
             _cli(secure, "config", "validate", str(config), **env)]
    import os

    os.environ["CAM_PW"] = marker  # load_config reads ${CAM_PW} from this process's environment
    try:
        cameras = load_config([config]).cameras
    finally:
        del os.environ["CAM_PW"]
    assert marker in cameras[0].url  # the secret did reach the worker: what follows must not pass it on
    seen.append(repr(settings) + str(settings.redacted()) + repr(faust_security_settings(settings)))

    # a short pipeline over the secured Kafka and Redis, logs at DEBUG
    t0 = time.time()
    detections = [Detection(camera_id="cam-leak", seq=i, capture_time=t0 + i, frame_width=64, frame_height=48,
                            zones=[ZoneCount(zone="gate", count=n)], fire=FireResult(score=f))
                  for i, (n, f) in enumerate([(8, 0.9), (9, 0.9), (1, 0.0)])]
    metrics, state = Metrics(process=False), LiveState()
    state.set_cameras(cam.model_dump(mode="json") for cam in cameras)
    produced: list[bytes] = []

    async def pipeline() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
        await start_kafka_client(producer, settings)
        runner = EmbeddedRunner(cameras, load_catalog())
        try:
            for d in detections:
                await producer.send(settings.topic("detections"), d.to_json(), key=d.camera_id.encode())
                state.apply_detection(json.loads(d.to_json()))
                metrics.frames_analysed.labels(d.camera_id).inc()
                for ev in runner.feed(d):
                    await producer.send(settings.topic("governance-events"), ev.to_json(), key=ev.event_id.encode())
                    state.apply_event(json.loads(ev.to_json()))
                    metrics.observe_event(json.loads(ev.to_json()))
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
        await start_kafka_client(consumer, settings)
        try:
            for short in ("detections", "governance-events"):
                tp = TopicPartition(settings.topic(short), 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    for msgs in (await consumer.getmany(timeout_ms=500)).values():
                        produced.extend(m.value for m in msgs)
        finally:
            await consumer.stop()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(pipeline())
        health = CameraHealth(camera_id="cam-leak", state=CameraState.backoff, url=redact_url(cameras[0].url),
                              decode_mode="keyframes", last_error=f"connection refused for {redact_url(cameras[0].url)}",
                              updated_at=time.time())
        client = connect_redis(settings)
        HealthPublisher(client, ttl_s=30, prefix=prefix).publish([health])
        client.close()
    assert any(json.loads(v).get("schema") == "guanjia.governance-event.v1" for v in produced)
    seen += [v.decode("utf-8", "replace") for v in produced]
    seen += [record.getMessage() for record in caplog.records] + [caplog.text]
    seen.append(metrics.render().decode())
    seen.append(json.dumps(state.snapshot(), ensure_ascii=False))

    # what the operator's commands show, and what they say when something is wrong
    seen += [
        _cli(secure, "events", "tail", "--json", "-n", "50", **env),
        _cli(secure, "cameras", "status", "--json", "--prefix", prefix, **env),
        _cli(secure, "cameras", "status", **env, GUANJIA_REDIS_URL=f"rediss://guanjia:{marker}@127.0.0.1:16380/0",
             GUANJIA_REDIS_USERNAME="x", GUANJIA_REDIS_PASSWORD="wrong"),
        _cli(secure, "cameras", "status", **env, GUANJIA_REDIS_URL=f"rediss://guanjia:{marker}x@127.0.0.1:16380/0"),
        _cli(secure, "cameras", "status", **env, GUANJIA_REDIS_URL=f"rediss://guanjia:{marker}@127.0.0.1:1/0"),
        _cli(secure, "events", "tail", **env, GUANJIA_KAFKA_PASSWORD=marker + "x"),
        _cli(secure, "events", "tail", **env, GUANJIA_KAFKA_BOOTSTRAP="127.0.0.1:1"),
        _cli(secure, "events", "tail", **env, GUANJIA_KAFKA_BOOTSTRAP=f"user:{marker}@127.0.0.1:1"),
        _cli(secure, "events", "tail", **env, GUANJIA_KAFKA_CA_FILE=f"/nonexistent/{marker}.pem"),
        _cli(secure, "events", "tail", **env, GUANJIA_TOPIC_PARTITIONS=marker),
        _cli(secure, "config", "validate", str(config), CAM_PW=marker, GUANJIA_TOPIC_PREFIX=prefix,
             GUANJIA_KAFKA_SECURITY_PROTOCOL=marker),
    ]
    for url in (f"rediss://guanjia:{marker}x@127.0.0.1:16380/0", f"rediss://guanjia:{marker}@127.0.0.1:1/0"):
        with pytest.raises(TransportError) as info:
            connect_redis(settings, url)
        seen.append(str(info.value))
    wrong = secure.settings(kafka_password=marker + "x")

    async def refused() -> None:
        await start_kafka_client(AIOKafkaProducer(**kafka_client_options(wrong)), wrong)

    with pytest.raises(TransportError) as info:
        asyncio.run(refused())
    seen.append(str(info.value))

    leaks = [text for text in seen if marker in text]
    assert not leaks, "marker found in:\n" + "\n---\n".join(t.replace(marker, "<MARKER>")[:800] for t in leaks)
    # the run really showed what it is checked on: the camera (redacted), its events, the refusals
    assert sum("rtsp://***@127.0.0.1:1/x" in t for t in seen) >= 3
    assert any(t.startswith("$ guanjia events tail --json") and '"camera_id": "cam-leak"' in t for t in seen)
    assert sum("refused the credentials" in t for t in seen) >= 3
    assert any('camera="cam-leak"' in t for t in seen)  # the metrics page
