"""What each producer actually emits validates against the JSON Schema file the event hub is given."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ingest.health import CameraHealth as IngestHealth
from ingest.health import CameraState
from pipeline.cli.sensors_cmd import read_csv
from pipeline.perception import health_record
from pipeline.records import Ack, DeskTick
from pipeline.rules.engine import RuleEngine
from pipeline.schemas import SCHEMA_DIR

from .helpers import CATALOG, T0, camera, det

REPO = Path(__file__).resolve().parents[3]


def check(stem: str, record) -> None:
    schema = json.loads((SCHEMA_DIR / f"{stem}.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(record.to_json()), schema)


@pytest.mark.parametrize("state", list(CameraState))
def test_camera_health_records_of_every_ingest_state(state):
    snapshot = IngestHealth(camera_id="c1", state=state, url="rtsp://***@h/s", decode_mode="keyframes", last_frame_time=T0,
                            last_error_class="TimeoutError", last_error="timed out")
    check("camera-health", health_record(snapshot, "G1"))


def test_sensor_readings_replayed_from_the_demo_csv():
    readings = read_csv(REPO / "configs" / "sensors-demo.csv")
    assert {r.kind for r in readings} >= {"smoke", "temperature"}
    for reading in readings:
        check("sensor-reading", reading)


def test_fire_signals_acks_ticks_and_detections():
    engine = RuleEngine([camera(k=1, n=1)], CATALOG)
    state, signals = {}, []
    for t, score in ((0, 0.9), (1, 0.1)):
        detection = det(t, count=3, fire=score)
        check("detection", detection)
        state, _, emitted = engine.on_detection(state, detection)
        signals += emitted
    assert [s.on for s in signals] == [True, False]
    for signal in signals:
        check("fire-signal", signal)
    check("event-ack", Ack(event_id="e1", by="Humen 综治中心", time=T0, note=""))
    check("desk-tick", DeskTick(event_id="e1", now=T0))
