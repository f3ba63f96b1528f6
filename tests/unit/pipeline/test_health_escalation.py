"""Camera offline → equipment fault; deadlines, escalation through the levels, acknowledgement."""

from pipeline.records import Ack, CameraHealth, EventAction

from .helpers import T0, camera, det, runner


def health(t, state, cam="cam1", final=False):
    return CameraHealth(camera_id=cam, time=T0 + t, state=state, reason=None if state == "streaming" else "ConnectionRefused",
                        final=final)


def test_offline_for_x_minutes_opens_fault_and_streaming_closes_it():
    r = runner(camera(offline_minutes=5))
    assert r.feed(health(0, "streaming")) == []
    assert r.feed(health(60, "backoff")) == []
    assert r.feed(health(60 + 299, "backoff")) == []
    opened = r.feed(health(60 + 300, "backoff"))
    assert [(e.catalog_code, e.rule) for e in opened] == [("03.01.01.01", "camera_offline")]
    assert opened[0].started_at == T0 + 60 and opened[0].routing.department == "政务服务和数据管理局"
    closed = r.feed(health(1000, "streaming"))
    assert [e.action for e in closed] == [EventAction.closed] and closed[0].duration_s == 940


def test_silent_camera_detected_by_tick():
    r = runner(camera(offline_minutes=5))
    r.feed(health(0, "streaming"))
    assert r.tick(T0 + 299) == []
    assert [e.rule for e in r.tick(T0 + 300)] == ["camera_offline"]
    assert r.tick(T0 + 400) == []  # once


def test_a_camera_stopped_on_purpose_is_not_a_fault_until_it_reports_trouble_again():
    r = runner(camera(offline_minutes=5))
    r.feed(health(0, "streaming"))
    assert r.feed(health(10, "stopped")) == []  # removed, outside its schedule, or its file ended
    assert r.tick(T0 + 10**5) == []  # silent after a stop: expected
    assert r.feed(health(10**5, "backoff")) == []  # pulled again, and failing
    assert [e.rule for e in r.tick(T0 + 10**5 + 300)] == ["camera_offline"]


def test_escalation_walks_up_levels_until_acknowledged():
    r = runner(camera(threshold=1, dwell=0))
    ev = r.feed(det(0, 5))[0]
    assert ev.routing.level.value == "grid"
    assert r.tick(ev.routing.deadline_at - 1) == []
    up = r.tick(ev.routing.deadline_at)
    assert [(e.action, e.routing.level.value, e.routing.escalations) for e in up] == [(EventAction.escalated, "village", 1)]
    assert up[0].routing.unit == "V1 村(社区)居委会" and up[0].revision == 1 and up[0].severity.value == "critical"
    assert r.tick(ev.routing.deadline_at + 1) == []  # new deadline is 15 min later
    acked = r.feed(Ack(event_id=ev.event_id, by="V1 值班员", time=T0 + 1000))
    assert [(e.action, e.acknowledged_by) for e in acked] == [(EventAction.acknowledged, "V1 值班员")]
    assert r.tick(T0 + 10**6) == []


def test_escalation_skips_unknown_levels_and_stops_at_city():
    r = runner(camera(threshold=1, dwell=0, village=None))
    ev = r.feed(det(0, 5))[0]
    levels = []
    now = ev.routing.deadline_at
    for _ in range(6):
        out = r.tick(now)
        levels += [e.routing.level.value for e in out]
        now += 3600
    assert levels == ["town", "city"]


def test_ack_before_event_is_kept():
    r = runner(camera(threshold=1, dwell=0))
    from pipeline.rules.engine import event_id

    eid = event_id("crowding", "cam1/gate", T0)
    assert r.feed(Ack(event_id=eid, by="grid", time=T0)) == []
    ev = r.feed(det(0, 5))[0]
    assert ev.event_id == eid and ev.acknowledged_by == "grid"
    assert r.tick(T0 + 10**5) == []


def test_lifecycle_revisions_continue_after_escalation():
    r = runner(camera(threshold=1, clear=0.5, dwell=0, clear_s=0))
    ev = r.feed(det(0, 5))[0]
    r.tick(ev.routing.deadline_at)
    closed = r.feed(det(2000, 0))[0]
    assert closed.action is EventAction.closed and closed.revision == 2 and closed.routing.level.value == "village"


def test_second_outage_before_any_new_frame_is_a_new_event():
    def run():
        r = runner(camera(offline_minutes=5))
        out = []
        for t, state in [(0, "streaming"), (60, "backoff"), (400, "backoff"), (500, "streaming"), (510, "backoff"),
                         (800, "backoff"), (900, "streaming")]:
            out += r.feed(CameraHealth(camera_id="cam1", time=T0 + t, state=state, last_frame_time=T0 + 50))
        return out

    out = run()
    assert [(e.action, e.started_at) for e in out] == [
        (EventAction.opened, T0 + 50), (EventAction.closed, T0 + 50),
        (EventAction.opened, T0 + 500), (EventAction.closed, T0 + 500),  # reconnected at 500 without a frame
    ]
    assert out[2].event_id != out[0].event_id and out[3].event_id == out[2].event_id
    assert [e.event_id for e in run()] == [e.event_id for e in out]  # a replay gives the same ids


def test_peak_update_after_escalation_keeps_severity_and_routing():
    r = runner(camera(threshold=10, dwell=0))
    ev = r.feed(det(0, 12))[0]
    assert ev.severity.value == "medium"
    up = r.tick(ev.routing.deadline_at)[0]
    assert up.severity.value == "high" and up.routing.escalations == 1
    updated = r.feed(det(1, 15))  # peak grew by update_ratio, still under 2 × threshold
    assert [(e.action, e.severity.value, e.routing.level.value, e.routing.escalations) for e in updated] == [
        (EventAction.updated, "high", "village", 1)]


def test_fusion_after_escalation_to_city_stays_at_city():
    from .test_fire_fusion import reading

    r = runner(camera(k=1, n=1))
    ev = r.feed(det(0, fire=0.9))[0]
    now, levels = ev.routing.deadline_at, []
    for _ in range(4):
        levels += [e.routing.level.value for e in r.tick(now)]
        now += 3600
    assert levels == ["village", "town", "city"]
    fused = r.feed(reading(now - T0))
    assert [(e.fused, e.routing.level.value, e.routing.escalations, e.routing.department) for e in fused] == [
        (True, "city", 3, "消防救援大队")]
    assert r.tick(now + 10**4) == []


def test_fusion_after_one_escalation_goes_to_town_and_keeps_the_count():
    from .test_fire_fusion import reading

    r = runner(camera(k=1, n=1))
    ev = r.feed(det(0, fire=0.9))[0]
    r.tick(ev.routing.deadline_at)
    fused = r.feed(reading(ev.routing.deadline_at - T0 + 1))
    assert [(e.routing.level.value, e.routing.escalations) for e in fused] == [("town", 1)]
    assert [e.routing.level.value for e in r.tick(fused[0].routing.deadline_at)] == ["city"]


def test_ack_for_an_unknown_event_is_forgotten_after_the_retention():
    from pipeline.rules.engine import CLOSED_RETENTION_S

    r = runner(camera())
    r.feed(Ack(event_id="no-such-event", by="grid", time=T0))
    r.tick(T0 + CLOSED_RETENTION_S)
    assert "no-such-event" in r.desk
    r.tick(T0 + CLOSED_RETENTION_S + 1)
    assert r.desk == {}


def test_ack_after_a_closed_event_was_forgotten_is_forgotten_too():
    from pipeline.rules.engine import CLOSED_RETENTION_S

    r = runner(camera(threshold=1, clear=0.5, dwell=0, clear_s=0))
    ev = r.feed(det(0, 5))[0]
    r.feed(Ack(event_id=ev.event_id, by="grid", time=T0 + 1))
    r.feed(det(2, 0))
    r.tick(T0 + 2 + CLOSED_RETENTION_S + 1)
    assert r.desk == {}
    r.feed(Ack(event_id=ev.event_id, by="grid", time=T0 + 2 + CLOSED_RETENTION_S + 2))
    assert r.tick(T0 + 2 * CLOSED_RETENTION_S + 10) == [] and r.desk == {}


def test_ack_and_escalation_revisions_carry_their_own_time():
    """updated_at is the event time of the input behind a revision: the deadline check's, then the ack's."""
    r = runner(camera(threshold=1, dwell=0))
    ev = r.feed(det(0, 5))[0]
    assert ev.updated_at == T0
    [up] = r.tick(ev.routing.deadline_at + 7)
    assert up.action is EventAction.escalated and up.updated_at == ev.routing.deadline_at + 7
    [acked] = r.feed(Ack(event_id=ev.event_id, by="V1 值班员", time=T0 + 3000))
    assert acked.action is EventAction.acknowledged and acked.updated_at == T0 + 3000

    r = runner(camera(threshold=1, dwell=0))
    ev = r.feed(det(0, 5))[0]
    r.feed(det(100, 50))  # an update at T0 + 100
    [acked] = r.feed(Ack(event_id=ev.event_id, by="grid", time=T0 + 50))  # an ack stamped earlier: never back in time
    assert acked.updated_at == T0 + 100

    r = runner(camera(threshold=1, dwell=0, clear_s=0))
    ev = r.feed(det(0, 20))[0]
    r.feed(Ack(event_id=ev.event_id, by="grid", time=T0 + 50))  # the hub's clock
    [up] = r.feed(det(45, 40))  # a frame captured before the ack, ruled after it: the owner's revision
    assert up.action is EventAction.updated and up.updated_at == T0 + 50  # never back in time either


def test_a_camera_stopped_on_purpose_closes_its_crowding_and_fire_events():
    r = runner(camera(threshold=10, dwell=0, clear_s=20, k=1, n=1, fire_clear_s=0, offline_minutes=5))
    r.feed(health(0, "streaming"))
    opened = r.feed(det(0, 12, fire=0.9))
    assert sorted(e.rule for e in opened) == ["crowding", "fire"]
    closed = r.feed(health(5, "stopped", final=True))  # removed from the fleet: no more frames will come
    assert sorted((e.rule, e.action, e.ended_at) for e in closed) == [
        ("crowding", EventAction.closed, T0 + 5), ("fire", EventAction.closed, T0 + 5)]
    assert {e.event_id for e in closed} == {e.event_id for e in opened}
    assert r.feed(det(4, 12, fire=0.9)) == []  # a frame from before the stop, analysed after it
    assert [e for h in range(1, 49) for e in r.tick(T0 + h * 3600)] == []  # nothing left to escalate
    assert r.feed(health(10**5, "stopped", final=True)) == []  # said again: nothing more to close
    again = r.feed(det(10**5 + 1, 12, fire=0.9))  # pulled again: new events
    assert sorted((e.rule, e.action) for e in again) == [("crowding", EventAction.opened), ("fire", EventAction.opened)]
    assert not {e.event_id for e in again} & {e.event_id for e in opened}


def test_a_stopped_camera_turns_its_fire_source_off_in_a_fused_event():
    from pipeline.records import SensorKind, SensorReading

    def smoke(t, alarm):
        return SensorReading(sensor_id="s1", kind=SensorKind.smoke, time=T0 + t, value=1.0 if alarm else 0.0,
                             alarm=alarm, grid_id="G1", village="V1", town="T1")

    r = runner(camera(k=1, n=1, fire_clear_s=0))
    r.feed(det(0, fire=0.9))
    fused = r.feed(smoke(1, True))
    assert fused[0].fused
    assert r.feed(health(5, "stopped", final=True)) == []  # the sensor still alarms: the fused event stays open
    assert not r.grids["G1"]["sources"]["camera:cam1"]["on"]
    closed = r.feed(smoke(6, False))  # and closes once no source is on
    assert [(e.event_id, e.action) for e in closed] == [(fused[0].event_id, EventAction.closed)]


def test_a_stop_closes_an_open_camera_offline_event():
    r = runner(camera(offline_minutes=5))
    r.feed(health(0, "streaming"))
    r.feed(health(60, "error"))
    opened = r.feed(health(400, "error"))
    assert [e.rule for e in opened] == ["camera_offline"]
    closed = r.feed(health(500, "stopped", final=True))  # taken out of service: nobody is to repair it
    assert [(e.event_id, e.action, e.ended_at) for e in closed] == [(opened[0].event_id, EventAction.closed, T0 + 500)]
    assert [e for h in range(1, 49) for e in r.tick(T0 + h * 3600)] == []


def test_a_stop_reported_before_the_last_frame_time_closes_at_that_frame():
    """A file read faster than real time has capture times ahead of the report clock."""
    r = runner(camera(threshold=10, dwell=0))
    opened = r.feed(det(100, 12))
    closed = r.feed(health(50, "stopped", final=True))
    assert [(e.event_id, e.ended_at) for e in closed] == [(opened[0].event_id, T0 + 100)]


def test_a_stop_that_is_not_final_leaves_the_cameras_events_open_and_acknowledged():
    """A rebalance, a restart with new settings or a worker shutdown: the camera goes on (here or elsewhere)."""
    r = runner(camera(threshold=10, dwell=0, clear_s=20, k=1, n=1, fire_clear_s=0, offline_minutes=5))
    r.feed(health(0, "streaming"))
    opened = r.feed(det(0, 12, fire=0.9))
    crowding = next(e for e in opened if e.rule == "crowding")
    r.feed(Ack(event_id=crowding.event_id, by="G1 网格员", time=T0 + 30))
    assert r.feed(health(60, "stopped")) == []  # released to another worker
    assert r.feed(det(65, 12, fire=0.9)) == []  # the new owner's frames: the same events go on
    assert r.feed(det(100, 0, fire=0.9)) == []
    [closed] = r.feed(det(125, 0, fire=0.9))  # clear for clear_s
    assert (closed.event_id, closed.action, closed.acknowledged_by) == (crowding.event_id, EventAction.closed, "G1 网格员")
