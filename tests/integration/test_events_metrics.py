"""The Faust events worker's /metrics against the real Kafka: events it publishes, and its consumer lag."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from detectors.records import Detection, ZoneCount
from pipeline.faust_app import INPUT_TOPICS, LAG_EVERY_S
from pipeline.settings import Settings

from .events_support import Worker, create_topics, produce, read_until, unique_prefix, write_config

pytestmark = pytest.mark.integration

RULES = {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0}}
ZONE = [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}]


def det(cam: str, t: float, count: float, seq: int) -> tuple[str, bytes]:
    d = Detection(camera_id=cam, seq=seq, capture_time=t, frame_width=64, frame_height=48,
                  zones=[ZoneCount(zone="gate", count=count)])
    return cam, d.to_json()


def scrape(url: str) -> dict[str, list]:
    """Metric family name → its samples."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_events_worker_serves_published_events_and_consumer_lag(kafka_bootstrap, tmp_path):
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique_prefix("metrics"), topic_partitions=2)
    cams = [{"id": cam, "url": f"rtsp://127.0.0.1:1/{cam}", "grid": "MG1", "zones": ZONE} for cam in ("m1", "m2")]
    config = write_config(tmp_path / "cams.yaml", cams, RULES)
    create_topics(settings)
    worker = Worker(settings, config, None, tmp_path / "worker.log")
    worker.start()
    try:
        url = worker.metrics_url()
        assert url.startswith("http://127.0.0.1:")
        t0 = time.time()
        produce(settings, "detections", [det("m1", t0, 8, 1), det("m1", t0 + 1, 9, 2), det("m1", t0 + 2, 1, 3),
                                         det("m2", t0, 7, 1)])
        evs = read_until(settings, "governance-events", lambda m: len(m) >= 3)
        assert sorted((e["camera_id"], e["action"]) for e in evs) == [("m1", "closed"), ("m1", "opened"),
                                                                       ("m2", "opened")], evs

        # every input partition this lone worker holds, each caught up once its inputs are committed
        held = {(settings.topic(short), str(p)) for short in INPUT_TOPICS for p in range(settings.topic_partitions)}
        deadline = time.monotonic() + 2 * LAG_EVERY_S + 30
        while True:
            families = scrape(url)
            lag = {(s.labels["topic"], s.labels["partition"]): s.value
                   for s in families["guanjia_consumer_lag_messages"]}
            if set(lag) == held and not any(lag.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert set(lag) == held, lag
        assert all(value == 0 for value in lag.values()), lag

        opened = {s.labels["type"]: s.value for s in families["guanjia_events_opened"] if s.name.endswith("_total")}
        closed = {s.labels["type"]: s.value for s in families["guanjia_events_closed"] if s.name.endswith("_total")}
        assert opened == {"crowding": 2.0} and closed == {"crowding": 1.0}
        for family in ("guanjia_events_opened", "guanjia_events_closed"):
            assert all(set(s.labels) == {"type"} for s in families[family])  # no event or camera ids
        assert families["process_cpu_seconds"] and "guanjia_detections_produced" not in families
        assert worker.alive()
    finally:
        worker.stop()

