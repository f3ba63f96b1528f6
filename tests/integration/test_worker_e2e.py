"""`worker ingest` → real Kafka → `worker events` → `events tail --json`, on the shared footage.

Also scrapes the ingest worker's Prometheus endpoint while it runs and checks Redis health and evidence.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
import yaml

from pipeline.records import GovernanceEvent
from pipeline.settings import Settings
from tests.plugins.shared import shared_path

from .events_support import Worker, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.shared]

GUANJIA = str(Path(sys.executable).with_name("guanjia"))


def write_config(path: Path, street: Path, fire: Path) -> Path:
    doc = {
        "defaults": {"decode_mode": "interval", "analysis_interval_s": 1.0, "source": {"backpressure": True}},
        "groups": [
            {"id": "e2e-street", "town": "Guancheng", "village": "Xicheng", "detectors": ["crowd"],
             "rules": {"crowding": {"threshold": 4, "clear_threshold": 2, "dwell_s": 2, "clear_s": 60}},
             "cameras": [{"id": "e2e-street", "url": str(street), "grid": "GC-XC-001",
                          "zones": [{"name": "sidewalk", "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]]}]}]},
            {"id": "e2e-fire", "town": "Humen", "village": "Zhen'an", "detectors": ["fire"],
             "rules": {"fire": {"threshold": 0.5, "k": 2, "n": 3, "clear_s": 60}},
             "cameras": [{"id": "e2e-fire", "url": str(fire), "grid": "HM-ZA-014"}]},
        ],
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def tail_json(env: dict) -> list[dict]:
    proc = subprocess.run([GUANJIA, "events", "tail", "--json", "-n", "200"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def wait_for(predicate, timeout_s: float, step_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step_s)
        value = predicate()
    return value


def test_ingest_to_events_to_tail(kafka_bootstrap, redis_url, tmp_path):
    street = shared_path("data", "video", "vtest.avi")
    fire = shared_path("data", "fire", "furg", "house6.mp4")
    shared_path("models", "yolox_nano_coco_416.onnx")
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    prefix = f"t9e2e-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, topic_prefix=prefix, topic_partitions=2)
    env = {**os.environ, "GUANJIA_TOPIC_PREFIX": prefix, "GUANJIA_TOPIC_PARTITIONS": "2",
           "GUANJIA_KAFKA_BOOTSTRAP": kafka_bootstrap, "GUANJIA_REDIS_URL": redis_url}
    config = write_config(tmp_path / "cams.yaml", street, fire)
    create_topics(settings)

    events_worker = Worker(settings, config, None, tmp_path / "events.log")
    events_worker.start()
    ingest_log = tmp_path / "ingest.log"
    try:
        with ingest_log.open("wb") as log:
            ingest = subprocess.Popen([GUANJIA, "worker", "ingest", "--config", str(config), "--metrics-port", "0",
                                       "--health-interval", "1", "--until-done",
                                       "--evidence-ttl", "600"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        try:
            url = wait_for(lambda: (m := re.search(r"metrics (http://\S+/metrics)", ingest_log.read_text())) and m.group(1), 60, 0.2)
            assert url, ingest_log.read_text()
            # the endpoint serves the worker's names while it analyses
            def scrape() -> str | None:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
                analysed = re.search(r'guanjia_frames_analysed_total\{camera="e2e-street"\} [1-9]', text)
                return text if analysed and re.search(r"guanjia_detections_produced_total [1-9]", text) else None
            text = wait_for(scrape, 60, 0.5)
            assert text, "no analysed frames on /metrics"
            for name in ("guanjia_frames_received_total", "guanjia_frames_dropped_total", "guanjia_camera_up",
                         "guanjia_inference_latency_seconds_bucket", "guanjia_inference_batch_size_bucket",
                         "guanjia_detections_produced_total"):
                assert name in text, name
            assert ingest.wait(240) == 0, ingest_log.read_text()[-3000:]
        finally:
            if ingest.poll() is None:
                ingest.send_signal(signal.SIGKILL)
                ingest.wait(10)
        log_text = ingest_log.read_text()
        assert "Traceback" not in log_text and "0 failed" in log_text, log_text[-3000:]
        assert re.search(r"110 frames analysed", log_text), log_text[-2000:]  # 80 + 30 sampled frames, none lost

        # Redis health from the HealthPublisher
        client = redis.Redis.from_url(redis_url)
        assert client.hget("guanjia:camera:e2e-street", "frames_analysed") == b"80"

        def both() -> list[dict] | None:
            events = tail_json(env)
            rules = {(e["rule"], e["camera_id"]) for e in events if e["action"] == "opened"}
            return events if {("crowding", "e2e-street"), ("fire", "e2e-fire")} <= rules else None

        events = wait_for(both, 120, 2.0)
        assert events, f"events tail shows {tail_json(env)}; worker log: {(tmp_path / 'events.log').read_text()[-2000:]}"
        for ev in events:
            GovernanceEvent.model_validate(ev)
        fire_ev = next(e for e in events if e["rule"] == "fire")
        assert fire_ev["town"] == "Humen" and fire_ev["grid_id"] == "HM-ZA-014" and fire_ev["routing"]["unit"]
        crowd_ev = next(e for e in events if e["rule"] == "crowding")
        assert crowd_ev["town"] == "Guancheng" and crowd_ev["peak"] >= 4
        # the evidence the events name was stored by the ingest worker (frames over a threshold)
        for ev in (fire_ev, crowd_ev):
            jpeg = client.get(f"guanjia:{ev['evidence_key']}")
            assert jpeg and jpeg[:3] == b"\xff\xd8\xff", ev["evidence_key"]
        assert events_worker.alive()
    finally:
        events_worker.stop()
