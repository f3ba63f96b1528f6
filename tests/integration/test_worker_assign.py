"""Two `guanjia worker ingest --assign kafka` processes share the published cameras; kill -9 one → its
cameras resume on the other within the session timeout + 10 s. Real Kafka, shared footage and model."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.assignment import publish_cameras
from pipeline.config.loader import load_config
from tests.integration.fault_support import LiveDetections, wait_for
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

GUANJIA = str(Path(sys.executable).with_name("guanjia"))
SESSION_S = 6
IDS = [f"as-{i}" for i in range(3, 9)]  # Kafka's murmur2 puts as-3..5 on partition 1, as-6..8 on 0
PARTITIONS = 2  # one per worker: both pull cameras


async def camera_partitions(bootstrap: str, topic: str) -> dict[str, int]:
    """camera id → partition of its record on the cameras topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from pipeline.assignment import topic_partitions

    tps = [TopicPartition(topic, p) for p in range(await topic_partitions(bootstrap, topic))]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[str, int] = {}
        for _ in range(10):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.update({r.key.decode(): tp.partition for r in records})
        return out
    finally:
        await consumer.stop()


def owned_partitions(log: Path) -> set[int] | None:
    """The partitions a worker said it owns last (None before its first assignment)."""
    found = re.findall(r"owns partitions \[([0-9, ]*)\]", log.read_text())
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None




def test_two_workers_share_the_cameras_and_survive_a_kill(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    clip = shared_path("data", "fire", "furg", "house6.mp4")
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    prefix = f"t10as-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "cams.yaml"
    config.write_text(yaml.safe_dump({
        "defaults": {"decode_mode": "interval", "analysis_interval_s": 1.0, "detectors": ["fire"],
                     "source": {"loop": True, "realtime": True}},
        "groups": [{"id": "assign", "town": "Humen", "cameras": [
            {"id": cam, "url": str(clip), "grid": f"G{i}"} for i, cam in enumerate(IDS)]}],
    }))
    asyncio.run(publish_cameras(kafka_bootstrap, f"{prefix}.cameras.v1", load_config([config]).cameras, partitions=PARTITIONS))
    env = {**os.environ, "GUANJIA_TOPIC_PREFIX": prefix, "GUANJIA_TOPIC_PARTITIONS": "2",
           "GUANJIA_KAFKA_BOOTSTRAP": kafka_bootstrap, "GUANJIA_REDIS_URL": redis_url}
    detections = LiveDetections(kafka_bootstrap, f"{prefix}.detections.v1")
    detections.start()
    workers: list[subprocess.Popen] = []
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    try:
        for log in logs:
            with log.open("wb") as out:
                workers.append(subprocess.Popen(
                    [GUANJIA, "worker", "ingest", "--assign", "kafka", "--group", f"{prefix}-ingest",
                     "--session-timeout", str(SESSION_S), "--no-metrics", "--evidence-ttl", "0",
                     "--health-interval", "1", "--loglevel", "info"], env=env, stdout=out, stderr=subprocess.STDOUT))
        all_ids = set(IDS)
        assert wait_for(lambda: detections.cameras_since(0) == all_ids, 180, every_s=0.25), (
            detections.seen.keys(), logs[0].read_text()[-2000:], logs[1].read_text()[-2000:])
        # the workers split the partitions; kill one that pulls cameras
        assert wait_for(lambda: all(owned_partitions(log) for log in logs), 30), [log.read_text()[-1000:] for log in logs]
        where = asyncio.run(camera_partitions(kafka_bootstrap, f"{prefix}.cameras.v1"))
        shares = [{cam for cam, part in where.items() if part in owned_partitions(log)} for log in logs]
        assert not shares[0] & shares[1] and shares[0] | shares[1] == all_ids, shares
        assert shares[0] and shares[1], shares
        victim = 0
        killed_at = time.monotonic()
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait(10)
        survivor = 1 - victim
        took = wait_for(lambda: detections.cameras_since(killed_at + 1) == all_ids, SESSION_S + 10 + 20, every_s=0.25)
        assert took is not None, (detections.cameras_since(killed_at + 1), logs[survivor].read_text()[-3000:])
        print(f"{len(shares[victim])} camera(s) of the killed worker analysed again {took:.1f}s after kill -9 "
              f"(session timeout {SESSION_S}s)")
        assert owned_partitions(logs[survivor]) == set(range(PARTITIONS))
        assert took <= SESSION_S + 10 + 5, took  # + the first analysed frame of a reopened camera

        # one puller per camera at a time: a second puller would interleave a second run of seq numbers
        for cam, rows in detections.seen.items():
            before = [seq for ts, seq in rows if ts < killed_at]
            assert before == sorted(before), (cam, before)

        # a camera dropped from the config: tombstone → no longer pulled, its health forgotten in Redis
        import redis

        client = redis.Redis.from_url(redis_url)
        assert wait_for(lambda: client.zscore("guanjia:cameras:last_seen", "as-3") is not None, 20)
        kept = [c for c in load_config([config]).cameras if c.id != "as-3"]
        asyncio.run(publish_cameras(kafka_bootstrap, f"{prefix}.cameras.v1", kept))
        assert wait_for(lambda: client.zscore("guanjia:cameras:last_seen", "as-3") is None
                        and not client.exists("guanjia:camera:as-3"), 20), "health of the removed camera stays in Redis"
        time.sleep(2)
        settled = time.monotonic()
        time.sleep(4)
        assert detections.cameras_since(settled) == all_ids - {"as-3"}

        workers[survivor].send_signal(signal.SIGTERM)
        assert workers[survivor].wait(60) == 0, logs[survivor].read_text()[-3000:]
        assert "Traceback" not in logs[survivor].read_text()
    finally:
        detections.close()
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_assign_kafka_takes_no_config_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli.worker_ingest import ingest

    config = tmp_path / "c.yaml"
    config.write_text("groups: []\n")
    both = CliRunner().invoke(ingest, ["--assign", "kafka", "--config", str(config)])
    assert both.exit_code == 2 and "--assign kafka takes its cameras from guanjia.cameras.v1" in both.output
    short = CliRunner().invoke(ingest, ["--assign", "kafka", "--session-timeout", "1"])
    assert short.exit_code == 2 and "--session-timeout" in short.output
