"""Crowding hysteresis: threshold + dwell opens, clear threshold + clear_s closes."""

import pytest
from pydantic import ValidationError

from pipeline.records import EventAction
from pipeline.rules.settings import RuleSettings

from .helpers import T0, camera, det, runner


def feed(r, series, **kw):
    out = []
    for t, c in series:
        out += r.feed(det(t, c, **kw))
    return out


def test_opens_only_after_dwell():
    r = runner(camera(threshold=10, dwell=10))
    assert feed(r, [(0, 12), (5, 12)]) == []
    events = r.feed(det(10, 13))
    assert [e.action for e in events] == [EventAction.opened]
    ev = events[0]
    assert ev.rule == "crowding" and ev.catalog_code == "01.02.01.01" and ev.zone == "gate"
    assert ev.started_at == T0 and ev.peak == 13 and ev.grid_id == "G1" and ev.town == "T1"
    assert ev.routing.level.value == "grid" and ev.routing.unit == "G1 网格员"
    assert ev.routing.deadline_at == T0 + 15 * 60
    assert ev.routing.department == "公安派出所"


def test_dip_below_threshold_restarts_dwell():
    r = runner(camera(threshold=10, dwell=10))
    assert feed(r, [(0, 12), (5, 9), (10, 12), (15, 12)]) == []
    assert [e.action for e in r.feed(det(20, 12))] == [EventAction.opened]


def test_hysteresis_between_clear_and_threshold_keeps_open():
    r = runner(camera(threshold=10, clear=5, dwell=0, clear_s=20))
    assert [e.action for e in r.feed(det(0, 11))] == [EventAction.opened]
    assert feed(r, [(10, 7), (40, 6), (80, 8)]) == []  # below threshold but not below clear
    assert feed(r, [(90, 4), (100, 3)]) == []  # below clear for 10 s < clear_s
    closed = r.feed(det(110, 2))
    assert [e.action for e in closed] == [EventAction.closed]
    assert closed[0].duration_s == 110 and closed[0].status == "closed" and closed[0].peak == 11


def test_clear_run_broken_by_a_sample_above_clear():
    r = runner(camera(threshold=10, clear=5, dwell=0, clear_s=20))
    r.feed(det(0, 11))
    assert feed(r, [(10, 2), (20, 6), (30, 2)]) == []  # 6 ≥ clear restarts the clear run at 30
    assert feed(r, [(45, 2)]) == []
    assert [e.action for e in r.feed(det(50, 1))] == [EventAction.closed]


def test_reopens_with_a_new_id_after_close():
    r = runner(camera(threshold=10, clear=5, dwell=0, clear_s=0))
    first = r.feed(det(0, 11))[0]
    r.feed(det(5, 1))
    second = r.feed(det(10, 12))[0]
    assert second.action is EventAction.opened and second.event_id != first.event_id


def test_peak_growth_publishes_update():
    r = runner(camera(threshold=10, dwell=0))
    r.feed(det(0, 10))
    assert r.feed(det(1, 11)) == []  # +10% < update_ratio 1.2
    upd = r.feed(det(2, 25))
    assert [e.action for e in upd] == [EventAction.updated]
    assert upd[0].revision == 1 and upd[0].peak == 25 and upd[0].severity.value == "high"  # ≥ 2× threshold


def test_zone_threshold_and_density_override_camera_rule():
    from pipeline.config.models import ZoneConfig

    zone = ZoneConfig(name="plaza", polygon=[(0, 0), (1, 0), (1, 1)], area_m2=100, crowd_threshold=2.0, crowd_clear_threshold=1.0)
    r = runner(camera(threshold=50, dwell=0, zones=[zone]))
    assert r.feed(det(0, 30, zone="plaza", density=1.5)) == []  # 30 people but 1.5/m² < 2
    assert [e.action for e in r.feed(det(1, 30, zone="plaza", density=2.5))] == [EventAction.opened]


def test_same_detection_twice_makes_no_second_event():
    r = runner(camera(threshold=10, dwell=0))
    first = r.feed(det(0, 12))
    assert len(first) == 1 and r.feed(det(0, 12)) == []


def test_replay_gives_identical_ids_and_revisions():
    series = [(t, c) for t, c in zip(range(0, 200, 5), [12, 13, 30, 30, 2, 2, 2, 2, 2, 2] * 4)]

    def run():
        r = runner(camera(threshold=10, dwell=5, clear_s=10))
        return [(e.event_id, e.revision, e.action) for e in feed(r, series)]

    a, b = run(), run()
    assert a == b and len({eid for eid, _, _ in a}) >= 2


def test_unconfigured_camera_is_placed_by_the_grid_of_each_detection():
    r = runner(camera())
    stray = [det(t, 25, cam="stray").model_copy(update={"grid_id": "G7"}) for t in (0, 30)]  # default dwell 30 s
    assert [e.grid_id for d in stray for e in r.feed(d)] == ["G7"]
    moved = [det(t, 25, cam="stray", zone="hall").model_copy(update={"grid_id": "G9"}) for t in (31, 61)]
    assert [e.grid_id for d in moved for e in r.feed(d)] == ["G9"]  # the cached context follows the detection's grid


def test_zone_rule_cache_is_capped_like_the_contexts(monkeypatch):
    from pipeline.rules import engine

    monkeypatch.setattr(engine, "MAX_CONTEXTS", 50)  # the same path as the real cap, small enough to reach
    r = runner(camera())
    for i in range(200):  # unconfigured cameras, each with a zone of its own name
        r.feed(det(i, 1, cam=f"stray-{i}", zone=f"z{i}"))
    assert len(r.engine._contexts) <= 50 and len(r.engine._zone_rules) <= 50
    assert feed(r, [(300, 12), (310, 12)]) != []  # the configured camera's rule is worked out again when needed


def test_update_ratio_must_exceed_one_and_a_flat_peak_is_never_republished():
    with pytest.raises(ValidationError, match="greater than 1"):
        RuleSettings(update_ratio=1.0)  # a constant level would be re-published on every frame
    cam = camera(threshold=5, dwell=0)  # even where a ratio of 1 got past validation (model_copy does not validate)
    rules = cam.settings.rules.model_copy(update={"update_ratio": 1.0})
    cam = cam.model_copy(update={"settings": cam.settings.model_copy(update={"rules": rules})})
    out = feed(runner(cam), [(t, 8) for t in range(6)])
    assert [(e.action, e.peak) for e in out] == [(EventAction.opened, 8)]
