"""The perception loop on a real file through the real pool and engine (no models needed: no detectors)."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.config.models import CameraSettings, ResolvedCamera, Schedule
from pipeline.metrics import Metrics
from pipeline.perception import Perception


def camera(cid: str, url: str, **kw) -> ResolvedCamera:
    settings = CameraSettings(detectors=[], analysis_interval_s=1.0, decode_mode="interval")
    return ResolvedCamera(id=cid, url=url, group_id="g", grid=f"G-{cid}", settings=settings, **kw)


def closed_now() -> Schedule:
    """A one-hour window that does not contain the current hour (UTC)."""
    hour = (time.gmtime().tm_hour + 2) % 24
    return Schedule(start=f"{hour:02d}:00", end=f"{(hour + 1) % 24:02d}:00", timezone="UTC")


def test_only_enabled_cameras_inside_their_schedule_are_pulled_and_every_frame_is_analysed(clip):
    path = str(clip(seconds=4, gop=25))
    cams = [camera("on", path), camera("off-hours", path, schedule=closed_now()),
            camera("disabled", path, enabled=False)]
    metrics = Metrics(process=False)
    perception = Perception(cams, backpressure=True, metrics=metrics)
    seen: list[tuple[str, int, str | None]] = []
    with perception:
        perception.run(lambda det, frame: seen.append((det.camera_id, frame.seq, det.grid_id)), threading.Event(),
                       until_done=True, max_seconds=60)
        health = perception.health_records()
    assert sorted(perception.cameras) == ["off-hours", "on"]  # disabled: not even configured
    assert seen == [("on", i, "G-on") for i in range(4)]      # 4 s at 1 s, in order, none dropped
    assert [(h.camera_id, h.state, h.reason, h.grid_id) for h in health] == [("on", "stopped", "end of file", "G-on")]
    assert metrics.registry.get_sample_value("guanjia_detections_produced_total") == 4


def test_a_config_without_enabled_cameras_is_refused():
    with pytest.raises(ValueError, match="no enabled cameras"):
        Perception([camera("x", "/x.mp4", enabled=False)])


def test_a_camera_assigned_with_an_unknown_model_is_skipped_with_its_name_and_the_others_still_run(clip, caplog):
    path = str(clip(seconds=2, gop=25))
    typo = CameraSettings(detectors=["crowd"], crowd={"model": "yolox_nano_coco_41"}, analysis_interval_s=1.0,
                          decode_mode="interval")
    perception = Perception([], allow_empty=True, backpressure=True)
    seen: list[str] = []
    with perception:
        perception.add_camera(ResolvedCamera(id="bad-model", url=path, group_id="g", grid="G1", settings=typo))
        perception.add_camera(camera("good", path))
        perception.run(lambda det, frame: seen.append(det.camera_id), threading.Event(), until_done=True, max_seconds=60)
    assert sorted(perception.cameras) == ["good"] and seen == ["good", "good"]
    assert any("camera bad-model: " in r.message and "yolox_nano_coco_41" in r.message and "not pulled" in r.message
               for r in caplog.records)


def test_a_camera_no_longer_pulled_leaves_one_stopped_report_with_the_reason(clip):
    path = str(clip(seconds=30, gop=25))
    hour = time.gmtime().tm_hour
    this_hour = Schedule(start=f"{hour:02d}:00", end=f"{(hour + 1) % 24:02d}:00", timezone="UTC")
    perception = Perception([camera("kept", path), camera("gone", path), camera("night", path, schedule=this_hour),
                             camera("moved", path)], backpressure=True)
    with perception:
        perception.remove_camera("gone")
        perception.release_camera("moved")  # its partition went to another worker
        perception.step(lambda det, frame: None, timeout=0.1)
        perception.sync_schedule(time.time() + 2 * 3600)  # two hours on: "night" is outside its window
        first = {r.camera_id: r for r in perception.health_records()}
        again = {r.camera_id: r for r in perception.health_records()}
    assert (first["gone"].state, first["gone"].reason, first["gone"].grid_id, first["gone"].final) == (
        "stopped", "removed", "G-gone", True)
    assert (first["night"].state, first["night"].reason, first["night"].final) == ("stopped", "outside its schedule", True)
    assert (first["moved"].state, first["moved"].reason, first["moved"].final) == (
        "stopped", "released to another worker", False)  # it goes on elsewhere: its events stay open
    assert first["kept"].state != "stopped" and sorted(first) == ["gone", "kept", "moved", "night"]
    assert sorted(again) == ["kept"]  # said once


def test_a_removed_camera_is_not_pulled_again_before_the_loop_forgets_it(clip):
    path = str(clip(seconds=30, gop=25))
    perception = Perception([camera("kept", path), camera("gone", path)], backpressure=True)
    with perception:
        perception.remove_camera("gone")  # from the assignment thread, between two steps
        perception.sync_schedule(time.time())  # the step's schedule check runs before the next step applies it
        records = {r.camera_id: r for r in perception.health_records()}
        perception.step(lambda det, frame: None, timeout=0.1)
        later = {r.camera_id: r for r in perception.health_records()}
    assert (records["gone"].state, records["gone"].final) == ("stopped", True)
    assert sorted(later) == ["kept"]  # not pulled again, so no second, non-final stop


def test_stopping_leaves_a_stopped_report_for_every_pulled_camera_and_start_says_who_waits(clip, caplog):
    path = str(clip(seconds=30, gop=25))
    perception = Perception([camera("a", path), camera("b", path), camera("later", path, schedule=closed_now())],
                            backpressure=True)
    with perception:
        assert any("1 of 3 cameras are outside their schedule" in r.message for r in caplog.records)
        assert perception.pool.take(timeout=10)
    last = perception.health_records([])  # after the pool stopped: what the worker publishes last
    assert sorted((r.camera_id, r.state, r.reason, r.final) for r in last) == [("a", "stopped", "worker stopped", False),
                                                                               ("b", "stopped", "worker stopped", False)]
    assert perception.health_records([]) == []  # said once
