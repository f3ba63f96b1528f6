"""Out-of-order input: applied within allowed lateness, dropped beyond it (edges included)."""

from pipeline.records import EventAction
from pipeline.rules import crowding, fire

from .helpers import camera, det, runner

RULE = crowding.ZoneRule(threshold=10, clear_threshold=5, dwell_s=10, clear_s=10, lateness_s=30)


def test_sample_exactly_at_lateness_edge_is_applied():
    state, _ = crowding.step({}, 100.0, 1, RULE)
    state, change = crowding.step(state, 70.0, 1, RULE)
    assert change is None and [70.0, 1] in state["samples"]


def test_sample_just_beyond_lateness_is_dropped():
    state, _ = crowding.step({}, 100.0, 1, RULE)
    state, change = crowding.step(state, 69.999, 50, RULE)
    assert change == "late" and all(t != 69.999 for t, _ in state["samples"])


def test_late_sample_fills_the_dwell_in_order():
    r = runner(camera(threshold=10, dwell=10, lateness=30))
    assert r.feed(det(0, 12)) == []
    assert r.feed(det(10, 3)) == []  # arrives before the late sample: breaks the run for now
    assert r.feed(det(20, 12)) == []
    # The late sample at t=10 is corrected (same time, a re-sent value): the run 0..20 is now unbroken.
    assert [e.action for e in r.feed(det(10, 12))] == [EventAction.opened]


def test_late_fire_frame_counts_towards_k_of_n():
    params = fire.FireRuleParams(threshold=0.5, k=3, n=5, clear_s=0, lateness_s=10)
    s = {}
    for t, p in [(0, 0.9), (2, 0.9), (4, 0.1)]:
        s, change = fire.step(s, t, p, params)
        assert change is None
    s, change = fire.step(s, 3, 0.8, params)  # late by 1 s, inside lateness: now 3 of the last 4
    assert change == "on" and s["started_at"] == 0


def test_fire_frame_beyond_lateness_ignored():
    params = fire.FireRuleParams(threshold=0.5, k=2, n=5, clear_s=0, lateness_s=10)
    s, _ = fire.step({}, 100, 0.9, params)
    s, change = fire.step(s, 89, 0.9, params)
    assert change == "late"
