"""Kafka with TLS and SCRAM (the secured broker of scripts/secure_services.sh): refused and accepted clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from detectors.records import Detection, ZoneCount
from pipeline.catalog import load_catalog
from pipeline.codec import decode
from pipeline.config import load_config
from pipeline.embedded import EmbeddedRunner
from pipeline.security import TransportError, kafka_client_options, start_kafka_client
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from tests.integration.events_support import write_config
from tests.integration.secure_support import Secure

pytestmark = pytest.mark.integration

GUANJIA = str(Path(sys.executable).with_name("guanjia"))


async def _roundtrip(settings: Settings, topic: str, values: list[bytes]) -> list[bytes]:
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
    await start_kafka_client(producer, settings)
    try:
        for value in values:
            await producer.send(topic, value, key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
    await start_kafka_client(consumer, settings)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                got += [m.value for m in msgs]
        return got
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_right_credentials_produce_and_consume(secure: Secure, mechanism: str):
    settings = secure.settings(kafka_sasl_mechanism=mechanism)
    values = [f"m{i}".encode() for i in range(5)]
    assert asyncio.run(_roundtrip(settings, f"sec-{uuid.uuid4().hex[:8]}", values)) == values


def test_client_certificate_on_the_mutual_tls_listener(secure: Secure):
    with_cert = secure.settings(kafka_bootstrap="127.0.0.1:19095", kafka_security_protocol="SSL",
                                kafka_cert_file=secure.tls_dir / "client.pem", kafka_key_file=secure.tls_dir / "client.key")
    assert asyncio.run(_roundtrip(with_cert, f"sec-{uuid.uuid4().hex[:8]}", [b"x"])) == [b"x"]
    without = with_cert.model_copy(update={"kafka_cert_file": None, "kafka_key_file": None})
    with pytest.raises(TransportError, match="closed the connection.*client certificate"):
        asyncio.run(_roundtrip(without, "sec-never", [b"x"]))


def test_wrong_password_is_refused_with_one_line(secure: Secure):
    wrong = secure.settings(kafka_password=SecretStr("not-" + secure.password))
    with pytest.raises(TransportError) as info:
        asyncio.run(_roundtrip(wrong, "sec-never", [b"x"]))
    message = str(info.value)
    assert "Kafka at 127.0.0.1:19094 (SASL_SSL) refused the credentials of user 'guanjia'" in message
    assert "GUANJIA_KAFKA_PASSWORD" in message and secure.password not in message and "\n" not in message


def test_untrusted_broker_certificate_is_refused(secure: Secure):
    no_ca = secure.settings(kafka_ca_file=None)  # system CAs do not know the test CA
    with pytest.raises(TransportError, match="TLS handshake failed"):
        asyncio.run(_roundtrip(no_ca, "sec-never", [b"x"]))


def test_cli_with_wrong_password_says_one_line(secure: Secure):
    env = secure.process_env(GUANJIA_KAFKA_PASSWORD="wrong", GUANJIA_TOPIC_PREFIX="sec-cli")
    result = subprocess.run([GUANJIA, "events", "tail", "-n", "1"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_detections_in_events_out_over_the_secured_broker(secure: Secure, tmp_path: Path):
    """Detections → secured Kafka → rule engine → events on secured Kafka → `guanjia events tail --json`."""
    prefix = f"sec{uuid.uuid4().hex[:8]}"
    settings = secure.settings(topic_prefix=prefix, topic_partitions=1)
    rules = {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0}}
    zone = [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}]
    config = write_config(tmp_path / "cams.yaml", [{"id": "cam-sec", "url": "rtsp://127.0.0.1:1/x", "grid": "G1",
                                                     "zones": zone}], rules)
    t0 = time.time()
    detections = [Detection(camera_id="cam-sec", seq=i, capture_time=t0 + i, frame_width=64, frame_height=48,
                            zones=[ZoneCount(zone="gate", count=n)]) for i, n in enumerate([8, 9, 1])]

    async def run() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
        await start_kafka_client(producer, settings)
        try:
            for d in detections:
                await producer.send(settings.topic("detections"), d.to_json(), key=d.camera_id.encode())
            await producer.flush()
            consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
            await start_kafka_client(consumer, settings)
            runner = EmbeddedRunner(load_config([config]).cameras, load_catalog())
            try:
                tp = TopicPartition(settings.topic("detections"), 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                seen, deadline = 0, time.monotonic() + 30
                while seen < len(detections) and time.monotonic() < deadline:
                    for msgs in (await consumer.getmany(timeout_ms=500)).values():
                        for msg in msgs:
                            seen += 1
                            for ev in runner.feed(decode(msg.value, (Detection,))):
                                await producer.send(settings.topic("governance-events"), ev.to_json(),
                                                    key=ev.event_id.encode())
                await producer.flush()
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    asyncio.run(run())
    env = secure.process_env(GUANJIA_TOPIC_PREFIX=prefix)
    result = subprocess.run([GUANJIA, "events", "tail", "--json", "-n", "10"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["camera_id"], e["rule"], e["action"]) for e in events] == [
        ("cam-sec", "crowding", "opened"), ("cam-sec", "crowding", "closed")], events
    assert events[1]["peak"] == 9


def test_faust_app_with_broker_credentials(secure: Secure):
    """``faust.App(..., **faust_security_settings(settings))`` (as the events worker builds it) speaks SASL_SSL."""
    import faust

    from pipeline.security import faust_security_settings

    settings = secure.settings()
    topic = f"sec-faust-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        app = faust.App(f"sec-{uuid.uuid4().hex[:6]}", broker=f"kafka://{settings.kafka_bootstrap}",
                        web_enabled=False, autodiscover=False, **faust_security_settings(settings))
        await app.producer.start()
        try:
            await app.producer.send_and_wait(topic, key=b"k", value=b"from-faust", partition=None, timestamp=None,
                                             headers=None)
        finally:
            await app.producer.stop()

    async def read_back() -> list[bytes]:
        consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
        await start_kafka_client(consumer, settings)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            batch = await consumer.getmany(tp, timeout_ms=10000)
            return [m.value for m in batch.get(tp, [])]
        finally:
            await consumer.stop()

    asyncio.run(run())
    assert asyncio.run(read_back()) == [b"from-faust"]
