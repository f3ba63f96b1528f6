"""The Faust events worker against the real Kafka: routed events, dead letters, fusion, escalation, acks,
configured sensor thresholds and silent cameras."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from detectors.records import Detection, FireResult, ZoneCount
from pipeline.catalog import DEFAULT_CATALOG
from pipeline.faust_app import OFFLINE_EVERY_S
from pipeline.records import CameraHealth, DeskTick, SensorReading
from pipeline.schemas import schema_for
from pipeline.settings import Settings

from .events_support import Worker, create_topics, produce, read_until, unique_prefix, write_config

pytestmark = pytest.mark.integration

RULES = {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0},
         "fire": {"threshold": 0.5, "k": 1, "n": 1, "clear_s": 0},
         "sensors": {"thresholds": {"gas": 10}}}  # the built-in 25 would not alarm at 20
OFFLINE_S = 3.0  # offline_minutes of the cameras c3 and c4 (the health partitions 1 and 0 of 2)
ZONE = [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}]


@pytest.fixture(scope="module")
def hub(kafka_bootstrap, tmp_path_factory):
    """A running worker on fresh topics (shared by this module: Faust start-up is slow)."""
    tmp = tmp_path_factory.mktemp("events")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=unique_prefix("hub"), topic_partitions=2)
    cameras = [{"id": "c1", "url": "rtsp://127.0.0.1:1/a", "grid": "G1", "zones": ZONE},
               {"id": "c2", "url": "rtsp://127.0.0.1:1/b", "grid": "G2", "village": "V2", "zones": ZONE},
               *({"id": cam, "url": f"rtsp://127.0.0.1:1/{cam}", "grid": "G7", "rules": {"offline_minutes": OFFLINE_S / 60}}
                 for cam in ("c3", "c4")),
               {"id": "c9", "url": "recordings/gate.mp4", "grid": "G9", "zones": ZONE}]  # a file, read faster than it plays
    config = write_config(tmp / "cams.yaml", cameras, RULES)
    catalog = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    gas = catalog["catalog"]["categories"][1]["subcategories"][0]["matters"][0]["items"][0]
    assert gas["trigger"] == "sensor.gas"
    gas["deadline_minutes"] = 0.03  # 1.8 s: escalation within the test
    catalog["routing"]["levels"]["city"]["deadline_minutes"] = 0.03
    (tmp / "catalog.yaml").write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    create_topics(settings)
    worker = Worker(settings, config, tmp / "catalog.yaml", tmp / "worker.log")
    worker.start()
    yield settings, worker
    worker.stop()


def det(cam: str, t: float, count: float = 0, fire: float | None = None, seq: int = 0) -> tuple[str, bytes]:
    d = Detection(camera_id=cam, seq=seq, capture_time=t, frame_width=64, frame_height=48,
                  zones=[ZoneCount(zone="gate", count=count)], fire=None if fire is None else FireResult(score=fire))
    return cam, d.to_json()


def reading(sensor: str, kind: str, t: float, value: float, alarm: bool, grid: str) -> tuple[str, bytes]:
    r = SensorReading(sensor_id=sensor, kind=kind, time=t, value=value, alarm=alarm, grid_id=grid, village="VX", town="TX")
    return sensor, r.to_json()


def events_of(settings: Settings, pred, done, timeout_s: float = 60.0) -> list[dict]:
    msgs = read_until(settings, "governance-events", lambda all_: done([m for m in all_ if pred(m)]), timeout_s)
    return [m for m in msgs if pred(m)]


def test_detections_become_routed_events(hub):
    settings, worker = hub
    t0 = time.time()
    produce(settings, "detections", [det("c1", t0, 8, seq=1), det("c1", t0 + 1, 9, seq=2), det("c1", t0 + 2, 1, seq=3)])
    evs = events_of(settings, lambda m: m["camera_id"] == "c1" and m["rule"] == "crowding", lambda e: len(e) >= 2)
    assert [e["action"] for e in evs] == ["opened", "closed"], evs
    opened, closed = evs
    assert opened["event_id"] == closed["event_id"] and (opened["revision"], closed["revision"]) == (0, 1)
    assert opened["catalog_code"] == "01.02.01.01" and opened["title_zh"] == "区域人员密集超限"
    assert (opened["grid_id"], opened["village"], opened["town"], opened["zone"]) == ("G1", "V1", "T1", "gate")
    routing = opened["routing"]
    assert routing["level"] == "grid" and routing["unit"] == "G1 网格员" and routing["department"] == "公安派出所"
    assert routing["deadline_at"] == pytest.approx(t0 + 15 * 60, abs=1e-3)
    assert closed["duration_s"] == pytest.approx(2, abs=1e-3) and closed["peak"] == 9
    for ev in evs:
        jsonschema.validate(ev, schema_for("governance-event"))
    assert worker.alive()


def test_poison_messages_go_to_dead_letter_and_worker_keeps_going(hub):
    settings, worker = hub
    t0 = time.time()
    _, good = det("c1", t0 + 100, 1)
    poison = [("c1", b"{not json"), ("c1", b"x" * 300_000), ("c1", good.replace(b'"seq":0', b'"seq":-5')),
              ("c1", json.dumps({"schema": "guanjia.detection.v1"}).encode())]
    produce(settings, "detections", poison + [det("c1", t0 + 101, 7, seq=9)])
    letters = [dl for dl in read_until(settings, "dead-letter", lambda m: sum(dl["key"] == "c1" for dl in m) >= 4)
               if dl["key"] == "c1"]
    assert sorted(dl["reason"] for dl in letters) == ["invalid", "invalid", "not_json", "too_large"]
    for dl in letters:
        jsonschema.validate(dl, schema_for("dead-letter"))
        assert dl["topic"] == settings.topic("detections") and dl["key"] == "c1"
    after = events_of(settings, lambda m: m["camera_id"] == "c1" and m["started_at"] == pytest.approx(t0 + 101, abs=1e-3),
                      lambda e: len(e) >= 1)
    assert [e["action"] for e in after] == ["opened"] and worker.alive()


def test_sensor_alarm_and_video_fire_in_one_grid_make_one_fused_event(hub):
    settings, _ = hub
    t0 = time.time()
    produce(settings, "sensor-readings", [reading("smoke-9", "smoke", t0, 0.4, True, "G2")])
    produce(settings, "detections", [det("c2", t0 + 5, fire=0.85, seq=1)])
    evs = events_of(settings, lambda m: m["rule"] == "fire" and m["grid_id"] == "G2", lambda e: any(x["fused"] for x in e))
    assert len({e["event_id"] for e in evs}) == 1, evs
    fused = [e for e in evs if e["fused"]][-1]
    assert fused["catalog_code"] == "01.01.01.02" and fused["severity"] == "critical"
    assert fused["sources"] == ["camera:c2", "sensor:smoke-9"] and fused["confidence"] > 0.85
    assert fused["routing"]["level"] == "town"
    jsonschema.validate(fused, schema_for("governance-event"))


def test_unacknowledged_event_escalates_and_acknowledged_one_does_not(hub):
    settings, _ = hub
    from pipeline.cli.events_cmd import events as events_cli

    t0 = time.time()
    produce(settings, "sensor-readings", [reading("gas-1", "gas", t0, 40, True, "G3"), reading("gas-2", "gas", t0, 40, True, "G4")])
    opened = events_of(settings, lambda m: m["sensor_ids"] == ["gas-2"], lambda e: len(e) >= 1)
    env = {"GUANJIA_TOPIC_PREFIX": settings.topic_prefix, "GUANJIA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "GUANJIA_TOPIC_PARTITIONS": str(settings.topic_partitions)}
    result = CliRunner().invoke(events_cli, ["ack", opened[0]["event_id"], "--by", "TX 值班员"], env=env)
    assert result.exit_code == 0, result.output
    escalated = events_of(settings, lambda m: m["sensor_ids"] == ["gas-1"],
                          lambda e: sum(x["action"] == "escalated" for x in e) >= 1, timeout_s=30)
    first = next(e for e in escalated if e["action"] == "escalated")
    assert first["routing"]["level"] == "city" and first["routing"]["escalations"] == 1
    assert first["routing"]["unit"] == "市社会治理指挥中心" and first["severity"] == "critical"
    acked = events_of(settings, lambda m: m["sensor_ids"] == ["gas-2"], lambda e: len(e) >= 2, timeout_s=15)
    assert [e["action"] for e in acked] == ["opened", "acknowledged"] and acked[1]["acknowledged_by"] == "TX 值班员"
    time.sleep(2)  # past the deadline: an acknowledged event must not escalate
    later = events_of(settings, lambda m: m["sensor_ids"] == ["gas-2"], lambda e: False, timeout_s=2)
    assert "escalated" not in [e["action"] for e in later]


def health(cam: str, t: float, state: str, final: bool = False) -> tuple[str, bytes]:
    return cam, CameraHealth(camera_id=cam, time=t, state=state, grid_id="G7", final=final).to_json()


def test_configured_sensor_threshold_opens_an_alarm(hub):
    settings, _ = hub
    t0 = time.time()
    produce(settings, "sensor-readings", [reading("gas-9", "gas", t0, 20, False, "G5")])
    evs = events_of(settings, lambda m: m["sensor_ids"] == ["gas-9"], lambda e: len(e) >= 1)
    assert [(e["rule"], e["action"], e["value"]) for e in evs] == [("sensor_alarm", "opened", 20)]


def test_silent_cameras_get_camera_offline_events(hub):
    """Each camera reports once, then nothing (its ingest worker died): the worker's timer opens the fault."""
    settings, worker = hub
    t0 = time.time()
    produce(settings, "camera-health", [health("c3", t0, "streaming"), health("c4", t0 + 0.5, "streaming")])
    deadline = OFFLINE_S + OFFLINE_EVERY_S + 20
    evs = events_of(settings, lambda m: m["rule"] == "camera_offline" and m["camera_id"] in ("c3", "c4"),
                    lambda e: len(e) >= 2, timeout_s=deadline)
    assert sorted((e["camera_id"], e["action"]) for e in evs) == [("c3", "opened"), ("c4", "opened")], evs
    opened = {e["camera_id"]: e for e in evs}
    assert opened["c3"]["started_at"] == pytest.approx(t0, abs=1e-3)  # silent since its last report
    assert opened["c4"]["started_at"] == pytest.approx(t0 + 0.5, abs=1e-3)
    assert all(e["catalog_code"] == "03.01.01.01" and e["grid_id"] == "G7" for e in evs)
    assert time.time() - t0 >= OFFLINE_S
    back = time.time()
    produce(settings, "camera-health", [health("c3", back, "streaming")])  # c3 reports once more, then is silent again
    closed = events_of(settings, lambda m: m["event_id"] == opened["c3"]["event_id"], lambda e: len(e) >= 2, timeout_s=30)
    assert [e["action"] for e in closed] == ["opened", "closed"]
    later = events_of(settings, lambda m: m["rule"] == "camera_offline" and m["action"] == "opened",
                      lambda e: len(e) >= 3, timeout_s=deadline)
    assert sorted(e["camera_id"] for e in later) == ["c3", "c3", "c4"], later  # c4's silence: still one event
    second = next(e for e in later if e["camera_id"] == "c3" and e["event_id"] != opened["c3"]["event_id"])
    assert second["started_at"] == pytest.approx(back, abs=1e-3)  # a new event: silent since it came back
    for ev in evs:
        jsonschema.validate(ev, schema_for("governance-event"))
    assert worker.alive()


def test_a_huge_undecodable_key_is_dead_lettered_in_short_and_the_records_after_it_still_count(hub):
    settings, worker = hub
    t0 = time.time()
    produce(settings, "detections", [(b"\xff" * 350_000, b"x"), det("c2", t0 + 200, 8, seq=20)])
    letters = read_until(settings, "dead-letter", lambda m: any(dl["size"] == 1 and dl["key"].endswith("…") for dl in m))
    (letter,) = [dl for dl in letters if dl["size"] == 1 and dl["key"].endswith("…")]
    assert letter["reason"] == "not_json" and len(letter["key"].encode()) < 1_000
    jsonschema.validate(letter, schema_for("dead-letter"))
    after = events_of(settings, lambda m: m["camera_id"] == "c2" and m["rule"] == "crowding", lambda e: len(e) >= 1)
    assert [e["action"] for e in after] == ["opened"] and after[0]["started_at"] == pytest.approx(t0 + 200, abs=1e-3)
    assert worker.alive()


def test_the_ack_topic_takes_the_hubs_acks_as_published_and_nothing_else(hub):
    settings, _ = hub
    t0 = time.time()
    produce(settings, "sensor-readings", [reading("smoke-6", "smoke", t0, 0.4, True, "G6")])
    (opened,) = events_of(settings, lambda m: m["sensor_ids"] == ["smoke-6"], lambda e: len(e) >= 1)
    event_id = opened["event_id"]
    forged_tick = DeskTick(event_id=event_id, now=t0 + 10 * 86400).to_json()  # would escalate it past every deadline
    ack_as_published = json.dumps({"event_id": event_id, "by": "TX 值班员", "time": t0 + 1}).encode()  # no "schema": optional
    produce(settings, "event-acks", [(event_id, forged_tick), (event_id, ack_as_published)])
    evs = events_of(settings, lambda m: m["sensor_ids"] == ["smoke-6"], lambda e: len(e) >= 2, timeout_s=30)
    assert [e["action"] for e in evs] == ["opened", "acknowledged"] and evs[1]["acknowledged_by"] == "TX 值班员"
    assert evs[1]["routing"]["level"] == opened["routing"]["level"]
    letters = read_until(settings, "dead-letter", lambda m: any(dl["topic"] == settings.topic("event-acks") for dl in m))
    assert [dl["reason"] for dl in letters if dl["topic"] == settings.topic("event-acks")] == ["invalid"]


def test_a_detection_stamped_an_hour_ahead_is_dead_lettered_and_does_not_silence_its_camera(hub):
    settings, worker = hub
    t0 = time.time()
    produce(settings, "detections", [det("c3", t0 + 3600, 8, seq=1), det("c3", t0, 8, seq=2)])
    letters = read_until(settings, "dead-letter", lambda m: any("ahead of this worker's clock" in dl["detail"] for dl in m))
    (letter,) = [dl for dl in letters if "ahead of this worker's clock" in dl["detail"]]
    assert letter["reason"] == "invalid" and letter["key"] == "c3"
    evs = events_of(settings, lambda m: m["camera_id"] == "c3" and m["rule"] == "crowding", lambda e: len(e) >= 1)
    assert evs[0]["action"] == "opened" and evs[0]["started_at"] == pytest.approx(t0, abs=1e-3) and worker.alive()
    produce(settings, "detections", [det("c9", t0 + 3600, 8, seq=1)])  # a file camera's capture times run ahead
    ahead = events_of(settings, lambda m: m["camera_id"] == "c9", lambda e: len(e) >= 1)
    assert ahead[0]["action"] == "opened" and ahead[0]["started_at"] == pytest.approx(t0 + 3600, abs=1e-3)


def test_a_camera_stopped_on_purpose_closes_its_crowding_event(hub):
    settings, worker = hub
    t0 = time.time()
    produce(settings, "detections", [det("c8", t0, 9, seq=1)])
    events_of(settings, lambda m: m["camera_id"] == "c8" and m["rule"] == "crowding", lambda e: len(e) >= 1)
    produce(settings, "camera-health", [health("c8", t0 + 1, "stopped")])  # a restart: not final, the event stays
    produce(settings, "camera-health", [health("c8", t0 + 2, "stopped", final=True)])  # removed from the fleet
    evs = events_of(settings, lambda m: m["camera_id"] == "c8" and m["rule"] == "crowding", lambda e: len(e) >= 2)
    assert [e["action"] for e in evs] == ["opened", "closed"] and evs[1]["ended_at"] == pytest.approx(t0 + 2, abs=1e-3)
    assert worker.alive()
