"""Two `guanjia worker ingest --assign kafka` processes share the published cameras; kill -9 one → its
cameras resume on the other within the session timeout + 10 s. Real Kafka, shared footage and model."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.assignment import publish_cameras
from pipeline.config.loader import load_config
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

GUANJIA = str(Path(sys.executable).with_name("guanjia"))
SESSION_S = 6
CAMERAS = 4


class Detections(threading.Thread):
    """Collects (receive time, seq) per camera from the detections topic."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from pipeline.assignment import topic_partitions

        while not await topic_partitions(self.bootstrap, self.topic):
            await asyncio.sleep(0.5)
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        self.ready.set()
        try:
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                now = time.monotonic()
                for records in batch.values():
                    for rec in records:
                        from detectors.records import Detection

                        det = Detection.from_json(rec.value)
                        self.seen.setdefault(det.camera_id, []).append((now, det.seq))
        finally:
            await consumer.stop()

    def cameras_since(self, t: float) -> set[str]:
        return {cam for cam, rows in list(self.seen.items()) if any(ts > t for ts, _ in rows)}


def wait_for(predicate, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def test_two_workers_share_the_cameras_and_survive_a_kill(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    clip = shared_path("data", "fire", "furg", "house6.mp4")
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    prefix = f"t10as-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "cams.yaml"
    config.write_text(yaml.safe_dump({
        "defaults": {"decode_mode": "interval", "analysis_interval_s": 1.0, "detectors": ["fire"],
                     "source": {"loop": True, "realtime": True}},
        "groups": [{"id": "assign", "town": "Humen", "cameras": [
            {"id": f"as-{i}", "url": str(clip), "grid": f"G{i}"} for i in range(CAMERAS)]}],
    }))
    asyncio.run(publish_cameras(kafka_bootstrap, f"{prefix}.cameras.v1", load_config([config]).cameras, partitions=CAMERAS))
    env = {**os.environ, "GUANJIA_TOPIC_PREFIX": prefix, "GUANJIA_TOPIC_PARTITIONS": "2",
           "GUANJIA_KAFKA_BOOTSTRAP": kafka_bootstrap, "GUANJIA_REDIS_URL": redis_url}
    detections = Detections(kafka_bootstrap, f"{prefix}.detections.v1")
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
        all_ids = {f"as-{i}" for i in range(CAMERAS)}
        assert wait_for(lambda: detections.cameras_since(0) == all_ids, 180), (
            detections.seen.keys(), logs[0].read_text()[-2000:], logs[1].read_text()[-2000:])
        # each worker owns some partitions
        assert wait_for(lambda: all("owns partitions [" in log.read_text() and "owns partitions []" not in
                                    log.read_text().rsplit("owns partitions", 1)[-1][:4] for log in logs), 30)

        killed_at = time.monotonic()
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        took = wait_for(lambda: detections.cameras_since(killed_at + 1) == all_ids, SESSION_S + 10 + 20)
        assert took is not None, (detections.cameras_since(killed_at + 1), logs[1].read_text()[-3000:])
        print(f"every camera analysed again {took:.1f}s after kill -9 (session timeout {SESSION_S}s)")
        assert took <= SESSION_S + 10 + 5, took  # + the first analysed frame of a reopened camera

        # one puller per camera at a time: a second puller would interleave a second run of seq numbers
        for cam, rows in detections.seen.items():
            before = [seq for ts, seq in rows if ts < killed_at]
            assert before == sorted(before), (cam, before)

        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(60) == 0, logs[1].read_text()[-3000:]
        assert "Traceback" not in logs[1].read_text()
    finally:
        detections.stop.set()
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
