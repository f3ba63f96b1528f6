"""The risk map fed from the real Kafka broker: all partitions, replay of events and health, live detections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.web import LiveState
from pipeline.web.feed import PAGE_CONSUMER_OPTIONS, follow

pytestmark = pytest.mark.integration


def test_page_follows_every_partition_and_skips_poison(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    topics = {
        f"{kafka_topic}.det": "detection",
        f"{kafka_topic}.ev": "event",
        f"{kafka_topic}.health": "health",
    }
    now = time.time()

    def event(event_id: str, camera: str, status: str = "open") -> bytes:
        return json.dumps(
            {
                "event_id": event_id,
                "status": status,
                "rule": "crowding",
                "severity": "high",
                "camera_id": camera,
                "routing": {"unit": "grid:G1", "deadline_at": now + 600},
            }
        ).encode()

    def detection(camera: str, count: float) -> bytes:
        return json.dumps(
            {
                "camera_id": camera,
                "capture_time": time.time(),
                "zones": [{"zone": "*", "count": count}],
            }
        ).encode()

    async def main() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 3, 1) for name in topics])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        state = LiveState()
        task = None
        skipped: list[tuple[str, int]] = []
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, **PAGE_CONSUMER_OPTIONS)
        try:
            # Before the page starts: events and health are history it must rebuild; a detection is stale.
            for partition, (event_id, camera) in enumerate(
                [("e0", "c0"), ("e1", "c1"), ("e2", "c2")]
            ):
                await producer.send_and_wait(
                    f"{kafka_topic}.ev", event(event_id, camera), partition=partition
                )
            await producer.send_and_wait(
                f"{kafka_topic}.ev", event("e1", "c1", "closed"), partition=1
            )
            await producer.send_and_wait(
                f"{kafka_topic}.health",
                json.dumps(
                    {"camera_id": "c9", "state": "error", "reason": "TimeoutError"}
                ).encode(),
                partition=2,
            )
            await producer.send_and_wait(f"{kafka_topic}.det", detection("c7", 99), partition=0)

            await consumer.start()
            task = asyncio.create_task(
                follow(
                    state,
                    consumer,
                    topics,
                    max_bytes=10_000,
                    on_skip=lambda t, o: skipped.append((t, o)),
                )
            )
            async with asyncio.timeout(30):
                while {e["event_id"] for e in state.snapshot()["events"]} != {"e0", "e2"}:
                    await asyncio.sleep(0.1)
            for partition, value in enumerate(
                [b"{not json", b"[1, 2]", b'{"camera_id": "c0", "pad": "' + b"x" * 20_000 + b'"}']
            ):
                await producer.send_and_wait(f"{kafka_topic}.det", value, partition=partition)
            for partition in range(3):
                await producer.send_and_wait(
                    f"{kafka_topic}.det",
                    detection(f"c{partition}", 10 + partition),
                    partition=partition,
                )
            async with asyncio.timeout(30):
                while sum(1 for c in state.snapshot()["cameras"] if c["count"] is not None) < 3:
                    await asyncio.sleep(0.1)
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await consumer.stop()
            await producer.stop()
        snap = state.snapshot()
        counts = {c["id"]: c["count"] for c in snap["cameras"]}
        assert counts == {
            "c0": 10,
            "c1": 11,
            "c2": 12,
            "c9": None,
        }  # c7's stale detection was not replayed
        assert next(c for c in snap["cameras"] if c["id"] == "c9")["state"] == "down"
        assert [e["event_id"] for e in snap["recent_closed"]] == ["e1"]
        assert len(skipped) == 3 and all(topic == f"{kafka_topic}.det" for topic, _ in skipped)

    asyncio.run(main())


def test_unknown_kinds_and_missing_topics_are_clear_errors(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    async def main() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, **PAGE_CONSUMER_OPTIONS)
        await consumer.start()
        try:
            with pytest.raises(ValueError, match="unknown topic kind"):
                await follow(LiveState(), consumer, {kafka_topic: "sensor"})
            with pytest.raises(RuntimeError, match="start the workers first"):
                await follow(LiveState(), consumer, {f"{kafka_topic}.absent": "event"}, wait_s=1)
        finally:
            await consumer.stop()

    asyncio.run(main())


def test_page_command_serves_what_kafka_carries(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    prefix = kafka_topic.replace(".", "-")
    env = {**os.environ, "GUANJIA_KAFKA_BOOTSTRAP": kafka_bootstrap, "GUANJIA_TOPIC_PREFIX": prefix}
    env.pop("GUANJIA_PAGE_TOKEN", None)

    async def create_and_send(values: list[tuple[str, bytes]]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(f"{prefix}.{short}.v1", 2, 1)
                    for short in ("detections", "governance-events", "camera-health")
                ]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for topic, value in values:
                await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()

    event = {
        "event_id": "evt-cli",
        "status": "open",
        "rule": "fire",
        "severity": "critical",
        "title_zh": "火情",
        "camera_id": "c1",
        "routing": {"unit": "town:Humen", "deadline_at": 4e9},
    }
    asyncio.run(create_and_send([(f"{prefix}.governance-events.v1", json.dumps(event).encode())]))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.web.cli", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        match = re.search(r"risk map: (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(match.group(1) + "api/snapshot", timeout=5) as response:
                snap = json.load(response)
            if snap["events"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(e["event_id"], e["title"], e["handling_unit"]) for e in snap["events"]] == [
            ("evt-cli", "火情", "town:Humen")
        ]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        process.stderr.close()
