"""Fire k-of-n per camera, fusion with smoke/heat sensors per grid cell, other sensor alarms."""

from pipeline.records import EventAction, SensorKind, SensorReading

from .helpers import T0, camera, det, runner


def reading(t, sensor="s1", kind=SensorKind.smoke, value=1.0, alarm=True, grid="G1"):
    return SensorReading(sensor_id=sensor, kind=kind, time=T0 + t, value=value, alarm=alarm, grid_id=grid, village="V1", town="T1")


def test_two_of_five_does_not_fire_three_does():
    r = runner(camera(k=3, n=5))
    out = []
    for t, p in enumerate([0.1, 0.9, 0.1, 0.9, 0.2]):
        out += r.feed(det(t, fire=p))
    assert out == []
    ev = r.feed(det(5, fire=0.95))
    assert [e.catalog_code for e in ev] == ["01.01.01.01"] and ev[0].rule == "fire" and not ev[0].fused
    assert ev[0].camera_id == "cam1" and ev[0].started_at == T0 + 1


def test_old_hits_slide_out_of_the_window():
    r = runner(camera(k=2, n=3))
    out = []
    for t, p in enumerate([0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9]):
        out += r.feed(det(t, fire=p))
    assert out == []


def test_sensor_alarm_plus_video_fire_in_one_grid_is_one_fused_event():
    r = runner(camera(k=1, n=1))
    first = r.feed(reading(0))
    assert [e.catalog_code for e in first] == ["01.01.02.01"]  # the sensor alone opens its own event
    fused = r.feed(det(30, fire=0.8))
    assert len(fused) == 1 and fused[0].event_id == first[0].event_id
    ev = fused[0]
    assert ev.fused and ev.catalog_code == "01.01.01.02" and ev.severity.value == "critical"
    assert ev.confidence > max(0.8, first[0].confidence)
    assert ev.routing.level.value == "town" and ev.sources == ["camera:cam1", "sensor:s1"]


def test_video_then_sensor_within_window_fuses_and_outside_does_not():
    r = runner(camera(k=1, n=1, fire_clear_s=0))
    r.feed(det(0, fire=0.9))
    r.feed(det(1, fire=0.0))  # video fire over at t=1
    late = r.feed(reading(1 + 121))  # default fusion window 120 s: too late → its own event
    assert [e.catalog_code for e in late] == ["01.01.02.01"] and not late[0].fused

    r2 = runner(camera(k=1, n=1, fire_clear_s=0))
    opened = r2.feed(det(0, fire=0.9))
    assert [e.action for e in r2.feed(det(1, fire=0.0))] == [EventAction.closed]  # the video-only event
    after = r2.feed(reading(60))  # inside the window after the video ended: a new, fused event naming both
    assert [(e.action, e.fused, e.catalog_code) for e in after] == [(EventAction.opened, True, "01.01.01.02")]
    assert after[0].event_id != opened[0].event_id and after[0].sources == ["camera:cam1", "sensor:s1"]
    assert after[0].camera_id == "cam1" and after[0].evidence_key == opened[0].evidence_key is not None

    r3 = runner(camera(k=1, n=1, fire_clear_s=0))
    opened = r3.feed(det(0, fire=0.9))
    fused = r3.feed(reading(60))  # video still on: the open event becomes the fused one
    assert fused[0].fused and fused[0].event_id == opened[0].event_id


def test_sensor_alarm_in_another_grid_stays_separate():
    r = runner(camera(k=1, n=1))
    a = r.feed(det(0, fire=0.9))
    b = r.feed(reading(5, grid="G2"))
    assert a[0].event_id != b[0].event_id and not b[0].fused


def test_fire_event_closes_when_every_source_is_quiet():
    r = runner(camera(k=1, n=1, fire_clear_s=0))
    r.feed(reading(0))
    r.feed(det(1, fire=0.9))
    assert r.feed(reading(2, alarm=False, value=0)) == []  # video still on
    closed = r.feed(det(3, fire=0.1))
    assert [e.action for e in closed] == [EventAction.closed] and closed[0].duration_s == 3


def test_temperature_over_threshold_counts_as_alarm_without_flag():
    r = runner(camera())
    assert r.feed(reading(0, kind=SensorKind.temperature, value=50, alarm=False)) == []
    assert [e.catalog_code for e in r.feed(reading(1, kind=SensorKind.temperature, value=75, alarm=False))] == ["01.01.02.01"]


def test_gas_alarm_opens_and_closes_its_own_event():
    r = runner(camera())
    opened = r.feed(reading(0, sensor="gas1", kind=SensorKind.gas, value=30, alarm=False))
    assert [e.catalog_code for e in opened] == ["02.01.01.01"] and opened[0].routing.level.value == "town"
    assert r.feed(reading(-5, sensor="gas1", kind=SensorKind.gas, value=0, alarm=False)) == []  # stale reading
    closed = r.feed(reading(60, sensor="gas1", kind=SensorKind.gas, value=3, alarm=False))
    assert [e.action for e in closed] == [EventAction.closed] and closed[0].event_id == opened[0].event_id


def test_sensor_reading_from_before_its_close_does_not_reopen():
    r = runner(camera())
    gas = {"sensor": "gas1", "kind": SensorKind.gas, "alarm": False}
    opened = r.feed(reading(0, value=30, **gas))
    assert [e.action for e in r.feed(reading(60, value=3, **gas))] == [EventAction.closed]
    assert r.feed(reading(30, value=30, **gas)) == []  # stale: older than the close
    assert r.feed(reading(0, value=30, **gas)) == []  # the opening reading redelivered: no phantom of the old event
    assert r.feed(reading(60, value=30, **gas)) == []  # at the close itself
    again = r.feed(reading(100, value=31, **gas))  # the next genuine alarm opens a new event, and it closes
    assert [e.action for e in again] == [EventAction.opened] and again[0].event_id != opened[0].event_id
    assert again[0].started_at == T0 + 100
    assert [(e.action, e.event_id) for e in r.feed(reading(200, value=1, **gas))] == [(EventAction.closed, again[0].event_id)]


def test_sensor_record_is_forgotten_after_the_retention():
    from pipeline.rules.engine import CLOSED_RETENTION_S

    r = runner(camera())
    r.feed(reading(0, sensor="gas1", kind=SensorKind.gas, value=30, alarm=False))
    r.feed(reading(60, sensor="gas1", kind=SensorKind.gas, value=3, alarm=False))
    assert "gas1" in r.grids["G1"]["alarms"]
    r.feed(reading(61 + CLOSED_RETENTION_S, sensor="gas2", kind=SensorKind.gas, value=3, alarm=False))
    assert set(r.grids["G1"]["alarms"]) == {"gas2"}


def test_fire_input_from_before_the_grid_close_opens_no_event_before_it_ended():
    r = runner(camera(k=1, n=1, fire_clear_s=0))
    opened = r.feed(reading(0))
    r.feed(det(5, fire=0.9))
    r.feed(reading(10, alarm=False, value=0))
    assert [e.action for e in r.feed(det(200, fire=0.0))] == [EventAction.closed]
    assert r.feed(reading(0)) == []  # the opening alarm redelivered: older than what the sensor told since
    again = r.feed(reading(50))  # news that arrived late: the sensor alarmed again before the close
    assert [e.action for e in again] == [EventAction.opened] and again[0].event_id != opened[0].event_id
    assert again[0].started_at == T0 + 200  # never before the last event ended
    assert r.feed(reading(260)) == []  # still alarming: the same event


def test_a_second_cameras_late_on_after_the_first_ones_close_still_opens_an_event():
    r = runner(camera("cam1", k=1, n=1, fire_clear_s=0), camera("cam2", k=1, n=1, fire_clear_s=0))
    r.feed(det(0, fire=0.9, cam="cam1"))
    assert [e.action for e in r.feed(det(100, fire=0.0, cam="cam1"))] == [EventAction.closed]
    late = r.feed(det(99, fire=0.9, cam="cam2"))  # cam2 saw it 1 s before cam1's off, ruled after it
    assert [e.action for e in late] == [EventAction.opened] and late[0].started_at == T0 + 100
    assert r.feed(det(600, fire=0.9, cam="cam2")) == []  # cam2 keeps it open


def test_fused_event_is_placed_and_routed_by_every_input_not_the_last_one():
    def bare(t):  # a smoke sensor whose reading names its grid cell only (village and town are optional)
        return SensorReading(sensor_id="s1", kind=SensorKind.smoke, time=T0 + t, value=1.0, alarm=True, grid_id="G1")

    r = runner(camera(k=1, n=1))  # cam1 in G1 / V1 / T1
    r.feed(det(0, fire=0.9))
    fused = r.feed(bare(10))
    assert fused[0].fused and (fused[0].village, fused[0].town) == ("V1", "T1")
    assert (fused[0].routing.level.value, fused[0].routing.unit) == ("town", "T1 镇街综治中心")

    r = runner(camera(k=1, n=1))
    opened = r.feed(bare(0))
    assert opened[0].town is None
    fused = r.feed(det(10, fire=0.9))
    assert fused[0].fused and (fused[0].village, fused[0].town) == ("V1", "T1")
    assert (fused[0].routing.level.value, fused[0].routing.unit) == ("town", "T1 镇街综治中心")


def test_camera_fire_off_goes_to_the_grid_that_got_its_on():
    r = runner(camera())

    def stray(t, fire, grid):  # an unconfigured camera: placed by the grid its detections name
        return det(t, fire=fire, cam="stray").model_copy(update={"grid_id": grid})

    opened = [e for t in range(3) for e in r.feed(stray(t, 0.9, "G7"))]  # default rule: 3 of 5 frames
    assert [(e.grid_id, e.action) for e in opened] == [("G7", EventAction.opened)]
    moved = r.feed(stray(3, 0.9, "G9"))  # still on, now named in G9: G7's event closes, G9 gets its own
    assert [(e.grid_id, e.action) for e in moved] == [("G7", EventAction.closed), ("G9", EventAction.opened)]
    assert moved[1].started_at == T0 + 3
    out = [e for t in range(5, 300, 5) for e in r.feed(stray(t, 0.0, "G9"))]  # clean frames for > clear_s
    assert [(e.grid_id, e.action) for e in out] == [("G9", EventAction.closed)]
    assert not any(s["on"] for g in ("G7", "G9") for s in r.grids[g]["sources"].values())


def test_camera_fire_state_stored_before_the_grid_was_kept_still_turns_off():
    r = runner(camera(k=1, n=1, fire_clear_s=0))
    r.feed(det(0, fire=0.9))
    del r.cameras["cam1"]["fire"]["place"]  # as the old code stored it
    assert r.feed(det(1, fire=0.9)) == []
    assert [(e.grid_id, e.action) for e in r.feed(det(2, fire=0.0))] == [("G1", EventAction.closed)]
