"""LiveState: folding cameras, detections, health and events into the page's snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.web.state import LiveState, severity_rank

NOW = 1_800_000_000.0
HOSTILE = "<img src=x onerror=alert(1)>"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cameras() -> list[dict]:
    return [
        {
            "id": "c1",
            "name": "Gate",
            "grid": "g1",
            "town": "Humen",
            "village": "V1",
            "lat": 22.80,
            "lon": 113.60,
            "zones": [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]], "crowd_threshold": 5}],
        },
        {
            "id": "c2",
            "name": "Mall",
            "grid": "g2",
            "town": "Humen",
            "village": "V2",
            "lat": 22.90,
            "lon": 113.70,
            "zones": ["hall"],
        },
        {"id": "c3", "name": HOSTILE, "grid": "g2", "town": "Humen"},
    ]


def detection(camera: str = "c1", t: float = NOW, zones=None, fire=None) -> dict:
    return {
        "schema": "guanjia.detection.v1",
        "camera_id": camera,
        "seq": 1,
        "capture_time": t,
        "frame_width": 640,
        "frame_height": 480,
        "zones": zones or [],
        "fire": fire,
    }


def event(event_id: str = "e1", **fields) -> dict:
    base = {
        "event_id": event_id,
        "revision": 0,
        "action": "opened",
        "status": "open",
        "rule": "crowding",
        "catalog_code": "01.01.01.01",
        "title_zh": "人员密集",
        "title_en": "Crowding",
        "severity": "medium",
        "camera_id": "c1",
        "zone": "gate",
        "grid_id": "g1",
        "village": "V1",
        "town": "Humen",
        "started_at": NOW - 60,
        "updated_at": NOW,
        "routing": {
            "level": "grid",
            "unit": "grid:g1 网格员",
            "department": "综治",
            "deadline_at": NOW + 600,
            "escalations": 0,
        },
    }
    base.update(fields)
    return base


@pytest.fixture
def state() -> LiveState:
    live = LiveState(clock=Clock())
    live.set_cameras(cameras())
    return live


def cam(snapshot: dict, camera_id: str) -> dict:
    return next(c for c in snapshot["cameras"] if c["id"] == camera_id)


def test_detection_counts_per_camera_and_zone(state: LiveState) -> None:
    state.apply_detection(
        detection(zones=[{"zone": "*", "count": 12.4}, {"zone": "gate", "count": 3}])
    )
    snap = state.snapshot()
    c1 = cam(snap, "c1")
    assert c1["count"] == 12.4
    assert {z["zone"]: z["count"] for z in c1["zones"]} == {"*": 12.4, "gate": 3}
    assert c1["state"] == "ok"
    assert cam(snap, "c2")["state"] == "unknown"
    assert snap["totals"]["people"] == 12.4


def test_count_without_whole_frame_zone_sums_zones(state: LiveState) -> None:
    state.apply_detection(
        detection("c2", zones=[{"zone": "hall", "count": 4}, {"zone": "door", "count": 2}])
    )
    assert cam(state.snapshot(), "c2")["count"] == 6


def test_zone_over_its_threshold_marks_crowding(state: LiveState) -> None:
    state.apply_detection(detection(zones=[{"zone": "gate", "count": 5}]))
    assert cam(state.snapshot(), "c1")["state"] == "crowding"
    state.apply_detection(detection(t=NOW + 1, zones=[{"zone": "gate", "count": 4.9}]))
    assert cam(state.snapshot(), "c1")["state"] == "ok"


def test_confirmed_fire_beats_crowding_and_down_beats_fire(state: LiveState) -> None:
    state.apply_detection(
        detection(zones=[{"zone": "gate", "count": 9}], fire={"score": 0.93, "confirmed": True})
    )
    c1 = cam(state.snapshot(), "c1")
    assert (c1["state"], c1["fire_score"], c1["fire_confirmed"]) == ("fire", 0.93, True)
    state.apply_health({"camera_id": "c1", "state": "error", "reason": "TimeoutError", "time": NOW})
    c1 = cam(state.snapshot(), "c1")
    assert (c1["state"], c1["down"], c1["reason"]) == ("down", True, "TimeoutError")
    state.apply_health({"camera_id": "c1", "state": "streaming", "time": NOW + 5})
    assert cam(state.snapshot(), "c1")["state"] == "fire"


@pytest.mark.parametrize(
    "health, down",
    [
        ("streaming", False),
        ("connecting", False),
        ("backoff", True),
        ("error", True),
        ("DOWN", True),
    ],
)
def test_health_states_that_flag_down(state: LiveState, health: str, down: bool) -> None:
    state.apply_health({"camera_id": "c2", "state": health})
    snap = state.snapshot()
    assert cam(snap, "c2")["down"] is down
    assert snap["totals"]["down"] == int(down)


def test_an_older_detection_does_not_overwrite_a_newer_one(state: LiveState) -> None:
    state.apply_detection(detection(t=NOW, zones=[{"zone": "*", "count": 10}]))
    state.apply_detection(detection(t=NOW - 5, zones=[{"zone": "*", "count": 1}]))
    assert cam(state.snapshot(), "c1")["count"] == 10


def test_open_event_fields_and_time_left(state: LiveState) -> None:
    clock = state._clock
    state.apply_event(event())
    clock.now = NOW + 100
    ev = state.snapshot()["events"][0]
    assert ev["event_id"] == "e1"
    assert (ev["type"], ev["catalog_code"], ev["title"]) == ("crowding", "01.01.01.01", "人员密集")
    assert (ev["severity"], ev["severity_rank"]) == ("medium", 2)
    assert (ev["handling_unit"], ev["department"], ev["level"]) == (
        "grid:g1 网格员",
        "综治",
        "grid",
    )
    assert ev["deadline"] == NOW + 600
    assert ev["time_left_s"] == 500
    assert ev["camera_name"] == "Gate"
    assert (ev["grid"], ev["village"], ev["town"], ev["zone"]) == ("g1", "V1", "Humen", "gate")
    assert cam(state.snapshot(), "c1")["state"] == "crowding"


def test_events_sorted_by_severity_then_deadline(state: LiveState) -> None:
    state.apply_event(event("low", severity="low"))
    state.apply_event(
        event("crit-late", severity="critical", routing={"unit": "u", "deadline_at": NOW + 900})
    )
    state.apply_event(
        event("crit-soon", severity="critical", routing={"unit": "u", "deadline_at": NOW + 60})
    )
    state.apply_event(event("high", severity="high"))
    assert [e["event_id"] for e in state.snapshot()["events"]] == [
        "crit-soon",
        "crit-late",
        "high",
        "low",
    ]


def test_a_later_revision_replaces_the_event(state: LiveState) -> None:
    state.apply_event(event())
    state.apply_event(
        event(
            revision=1,
            action="escalated",
            severity="high",
            routing={
                "level": "village",
                "unit": "village:V1",
                "department": "综治",
                "deadline_at": NOW + 1200,
                "escalations": 1,
            },
        )
    )
    events = state.snapshot()["events"]
    assert len(events) == 1
    assert (events[0]["handling_unit"], events[0]["escalations"], events[0]["severity"]) == (
        "village:V1",
        1,
        "high",
    )


def test_closed_events_leave_the_open_list_and_a_late_update_does_not_reopen(
    state: LiveState,
) -> None:
    state.apply_event(event())
    state.apply_event(event(revision=2, action="closed", status="closed"))
    snap = state.snapshot()
    assert snap["events"] == []
    assert [e["event_id"] for e in snap["recent_closed"]] == ["e1"]
    assert cam(snap, "c1")["state"] == "unknown"
    state.apply_event(event(revision=1, action="updated"))
    assert state.snapshot()["events"] == []


def test_memory_is_bounded() -> None:
    live = LiveState(max_events=3, max_closed=2, max_cameras=5, clock=Clock())
    for i in range(10):
        live.apply_event(event(f"open-{i}", camera_id=None))
    for i in range(6):
        live.apply_event(event(f"gone-{i}", status="closed", action="closed", camera_id=None))
    for i in range(50):
        live.apply_detection(detection(f"cam-{i}"))
    snap = live.snapshot()
    assert [e["event_id"] for e in snap["events"]] == ["open-7", "open-8", "open-9"]
    assert snap["totals"]["dropped_events"] == 7
    assert [e["event_id"] for e in snap["recent_closed"]] == ["gone-5", "gone-4"]
    assert len(live._closed_ids) == 2
    assert len(snap["cameras"]) == 5


def test_camera_offline_event_marks_the_camera_down(state: LiveState) -> None:
    state.apply_event(event("off", rule="camera_offline", camera_id="c2", title_zh="设备故障"))
    assert cam(state.snapshot(), "c2")["state"] == "down"


def test_fire_event_without_camera_is_placed_by_its_lat_lon(state: LiveState) -> None:
    state.apply_event(
        event("s1", rule="sensor_alarm", title_zh="烟感报警", camera_id=None, lat=22.85, lon=113.65)
    )
    ev = state.snapshot()["events"][0]
    assert ev["kind"] == "fire"
    assert 0 < ev["x"] < 1 and 0 < ev["y"] < 1


def test_layout_is_north_up_and_unplaced_cameras_have_no_position(state: LiveState) -> None:
    snap = state.snapshot()
    c1, c2, c3 = (cam(snap, c) for c in ("c1", "c2", "c3"))
    assert c2["y"] < c1["y"]  # c2 is further north
    assert c2["x"] > c1["x"]  # and further east
    for c in (c1, c2):
        assert 0 <= c["x"] <= 1 and 0 <= c["y"] <= 1
    assert (c3["x"], c3["y"]) == (None, None)
    g1 = next(g for g in snap["grids"] if g["id"] == "g1")
    assert g1["x"] < c1["x"] < g1["x"] + g1["w"]


def test_credentials_in_free_text_are_redacted_and_text_capped(state: LiveState) -> None:
    state.apply_health(
        {
            "camera_id": "c1",
            "state": "error",
            "reason": "cannot open rtsp://admin:S3cret@10.0.0.5/live " + "x" * 500,
        }
    )
    reason = cam(state.snapshot(), "c1")["reason"]
    assert "S3cret" not in reason and "admin" not in reason
    assert "rtsp://***@10.0.0.5" in reason
    assert len(reason) <= 200


def test_hostile_text_is_kept_verbatim_as_data(state: LiveState) -> None:
    # Escaping is the page's job (textContent); the snapshot must carry the name unchanged.
    assert cam(state.snapshot(), "c3")["name"] == HOSTILE


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"camera_id": None},
        {"camera_id": "c1", "zones": "nope"},
        {"camera_id": "c1", "zones": [1, None, {"zone": "a"}]},
        {"camera_id": "c1", "zones": [{"zone": "a", "count": float("nan")}]},
        {"camera_id": "c1", "fire": [1, 2]},
        {"camera_id": ["x"], "capture_time": "yesterday"},
    ],
)
def test_malformed_detections_do_not_crash(state: LiveState, bad: dict) -> None:
    state.apply_detection(bad)
    json.dumps(state.snapshot(), allow_nan=False)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"event_id": ""},
        {"event_id": "x", "routing": "str", "severity": {"a": 1}},
        {"event_id": "y", "routing": {"deadline_at": "2026-13-99"}},
    ],
)
def test_malformed_events_do_not_crash(state: LiveState, bad: dict) -> None:
    state.apply_event(bad)
    json.dumps(state.snapshot(), allow_nan=False)


def test_iso_and_millisecond_deadlines_are_understood(state: LiveState) -> None:
    state.apply_event(
        event("iso", routing={"unit": "u", "deadline_at": "2027-01-15T08:00:00+08:00"})
    )
    state.apply_event(event("ms", routing={"unit": "u", "deadline_at": (NOW + 60) * 1000}))
    state.apply_event(event("naive", routing={"unit": "u", "deadline_at": "2027-01-15T08:00:00"}))
    deadlines = {e["event_id"]: e["deadline"] for e in state.snapshot()["events"]}
    assert deadlines == {
        "iso": datetime(2027, 1, 15, 0, 0, tzinfo=UTC).timestamp(),
        "ms": NOW + 60,
        "naive": None,
    }


def test_version_changes_only_on_input(state: LiveState) -> None:
    before = state.version
    state.snapshot()
    assert state.version == before
    state.apply_detection(detection())
    assert state.version == before + 1


def test_set_cameras_keeps_live_readings_and_drops_removed_cameras(state: LiveState) -> None:
    state.apply_detection(detection(zones=[{"zone": "*", "count": 7}]))
    state.set_cameras([{"id": "c1", "name": "Gate (renamed)", "grid": "g1"}])
    snap = state.snapshot()
    assert [(c["id"], c["name"], c["count"]) for c in snap["cameras"]] == [
        ("c1", "Gate (renamed)", 7)
    ]


@pytest.mark.parametrize(
    "value, rank",
    [
        ("low", 1),
        ("medium", 2),
        ("HIGH", 3),
        ("critical", 4),
        (4, 4),
        (9, 4),
        ("重大", 3),
        ("whatever", 2),
        (None, 2),
    ],
)
def test_severity_rank(value, rank) -> None:
    assert severity_rank(value) == rank


def test_config_dumps_can_be_passed_whole_and_their_urls_are_ignored() -> None:
    from pipeline.config.models import ResolvedCamera

    resolved = ResolvedCamera(
        id="c9",
        name="Pier",
        url="rtsp://admin:S3cretMarker@10.0.0.7/h264",
        group_id="g",
        grid="G9",
        town="Humen",
        village="V9",
        lat=22.8,
        lon=113.6,
        zones=[{"name": "pier", "polygon": [[0, 0], [1, 0], [1, 1]], "crowd_threshold": 3}],
    )
    live = LiveState(clock=Clock())
    live.set_cameras([resolved.model_dump(mode="json")])
    live.apply_detection(detection("c9", zones=[{"zone": "pier", "count": 3}]))
    snap = live.snapshot()
    assert "S3cretMarker" not in json.dumps(snap) and "10.0.0.7" not in json.dumps(snap)
    assert (cam(snap, "c9")["name"], cam(snap, "c9")["state"]) == ("Pier", "crowding")


def test_ingest_health_dicts_with_enum_state_and_error_fields(state: LiveState) -> None:
    from dataclasses import asdict

    from ingest.health import CameraHealth, CameraState

    health = CameraHealth(
        camera_id="c2",
        state=CameraState.backoff,
        url="rtsp://***@10.0.0.1/x",
        decode_mode="keyframes",
        last_error_class="TimeoutError",
        last_error="no packet for 15 s",
        updated_at=NOW,
    )
    state.apply_health(asdict(health))
    c2 = cam(state.snapshot(), "c2")
    assert (c2["health"], c2["down"]) == ("backoff", True)
    assert c2["reason"] == "TimeoutError: no packet for 15 s"


@pytest.mark.parametrize(
    "lat, lon",
    [
        (22.85, 1.7e308),
        (1.7e308, 113.65),
        (-1.7e308, -1.7e308),
        (91, 113.65),
        (22.85, -180.5),
        ("inf", 113.65),
        (22.85, "-Infinity"),
    ],
)
def test_events_with_impossible_coordinates_are_not_placed(state: LiveState, lat, lon) -> None:
    # Events replay from the beginning: one such event must neither break the snapshot for good
    # nor stretch the map until every camera sits in its centre.
    before = {c["id"]: (c["x"], c["y"]) for c in state.snapshot()["cameras"]}
    state.apply_event(event("bad", camera_id=None, lat=lat, lon=lon))
    state.apply_event(event("bad2", camera_id=None, lat=lat, lon=lon))
    snap = state.snapshot()
    json.dumps(snap, allow_nan=False)
    bad = next(e for e in snap["events"] if e["event_id"] == "bad")
    assert (bad["lat"], bad["lon"], bad["x"], bad["y"]) == (None, None, None, None)
    assert {c["id"]: (c["x"], c["y"]) for c in snap["cameras"]} == before


def test_an_event_with_a_bad_position_falls_back_to_its_camera(state: LiveState) -> None:
    state.apply_event(event("e1", camera_id="c1", lat=22.85, lon=1e308))
    snap = state.snapshot()
    c1 = cam(snap, "c1")
    assert (snap["events"][0]["x"], snap["events"][0]["y"]) == (c1["x"], c1["y"]) != (None, None)


def test_cameras_with_impossible_coordinates_are_not_placed() -> None:
    live = LiveState(clock=Clock())
    live.set_cameras(
        [
            {"id": "c1", "lat": 22.80, "lon": 113.60},
            {"id": "c2", "lat": 22.90, "lon": 113.70},
            {"id": "far", "lat": 22.85, "lon": 1e300},
            {"id": "pole", "lat": -95, "lon": 113.65},
        ]
    )
    snap = live.snapshot()
    json.dumps(snap, allow_nan=False)
    assert cam(snap, "c2")["x"] - cam(snap, "c1")["x"] > 0.5  # not collapsed to the centre
    for camera_id in ("far", "pole"):
        c = cam(snap, camera_id)
        assert (c["lat"], c["lon"], c["x"], c["y"]) == (None, None, None, None)


def test_skipped_messages_are_counted_in_the_totals(state: LiveState) -> None:
    assert state.snapshot()["totals"]["skipped_messages"] == 0
    before = state.version
    state.note_skipped("guanjia.detections.v1", 41)
    state.note_skipped("guanjia.detections.v1", 42)
    assert state.snapshot()["totals"]["skipped_messages"] == 2
    assert state.version > before  # viewers see the counter move
