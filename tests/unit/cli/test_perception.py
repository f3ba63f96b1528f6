"""The perception loop's pure parts: schedules, config → ingest/detector set-ups, health records."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from detectors.settings import DetectorName
from ingest.health import CameraHealth as IngestHealth
from ingest.health import CameraState
from pipeline.config.models import CameraSettings, ResolvedCamera, Schedule
from pipeline.perception import camera_detectors, camera_source, health_record, in_schedule

SH = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of 2026-11-<day> hh:mm in Shanghai (2026-11-23 is a Monday)."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=SH).timestamp()


def cam(**kw) -> ResolvedCamera:
    base = {"id": "c1", "url": "/data/clip.mp4", "group_id": "g", "grid": "G1", "town": "T", "village": "V"}
    return ResolvedCamera(**(base | kw))


def test_no_schedule_is_always_on():
    assert in_schedule(None, at(23, 3))


def test_daytime_window_respects_hours_days_and_timezone():
    market = Schedule(start="06:00", end="22:00", days=["mon", "tue"])
    assert in_schedule(market, at(23, 6, 0))          # Monday 06:00 (start included)
    assert not in_schedule(market, at(23, 22, 0))     # end excluded
    assert not in_schedule(market, at(23, 5, 59))
    assert not in_schedule(market, at(25, 12))        # Wednesday
    utc = Schedule(start="06:00", end="22:00", timezone="UTC")
    assert not in_schedule(utc, at(23, 6, 30))        # 06:30 in Shanghai is 22:30 UTC


def test_overnight_window_belongs_to_the_day_it_starts():
    night = Schedule(start="22:00", end="06:00", days=["fri"])
    assert in_schedule(night, at(27, 23))             # Friday 23:00
    assert in_schedule(night, at(28, 5, 59))          # Saturday early morning, Friday's window
    assert not in_schedule(night, at(28, 23))         # Saturday night
    assert not in_schedule(night, at(27, 5))          # Friday early morning is Thursday's window


def test_camera_source_carries_sampling_and_backpressure_only_when_asked():
    settings = CameraSettings(analysis_interval_s=0.5, decode_mode="interval")
    c = cam(settings=settings)
    src = camera_source(c)
    assert (src.camera_id, src.url, src.analysis_interval_s, src.decode_mode.value) == ("c1", "/data/clip.mp4", 0.5, "interval")
    assert src.source.backpressure is False
    assert camera_source(c, backpressure=True).source.backpressure is True
    assert c.settings.source.backpressure is False  # the shared settings object is not changed


def test_camera_detectors_from_config():
    c = cam(zones=[{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]], "area_m2": 20}],
            ignore_masks=[[[0, 0], [0.1, 0], [0.1, 0.1]]],
            settings=CameraSettings(detectors=["fire"], fire={"threshold": 0.7}))
    setup = camera_detectors(c)
    assert setup.camera_id == "c1" and setup.grid_id == "G1"
    assert setup.detectors == frozenset({DetectorName.fire})
    assert setup.fire.threshold == 0.7
    assert [z.name for z in setup.zones] == ["gate"] and setup.zones[0].area_m2 == 20
    assert setup.ignore == (((0.0, 0.0), (0.1, 0.0), (0.1, 0.1)),)


def snap(state: CameraState, **kw) -> IngestHealth:
    return IngestHealth(camera_id="c1", state=state, url="rtsp://***@10.0.0.1/s", decode_mode="keyframes",
                        updated_at=1000.0, **kw)


def test_health_records_match_the_events_worker_schema():
    ok = health_record(snap(CameraState.streaming, last_frame_time=999.0, last_error_class="OSError", last_error="old"), "G1")
    assert (ok.state, ok.reason, ok.grid_id, ok.time, ok.last_frame_time) == ("streaming", None, "G1", 1000.0, 999.0)
    down = health_record(snap(CameraState.backoff, last_error_class="ConnectionRefusedError", last_error="refused"))
    assert down.state == "backoff" and down.reason == "ConnectionRefusedError: refused"
    ended = health_record(snap(CameraState.ended))
    assert ended.state == "stopped" and ended.reason == "end of file" and ended.final and not down.final
    assert b"***" not in ended.to_json() and b"10.0.0.1" not in down.to_json()  # no URL in the record


def test_frames_over_a_threshold_are_the_evidence_candidates():
    from detectors.records import Detection, FireResult, ZoneCount

    c = cam(zones=[{"name": "atrium", "polygon": [[0, 0], [1, 0], [1, 1]], "area_m2": 100, "crowd_threshold": 0.5}],
            settings=CameraSettings(rules={"crowding": {"threshold": 10, "clear_threshold": 5},
                                           "fire": {"threshold": 0.6}}))

    def det(whole: float, atrium: float, fire: float | None = None) -> Detection:
        return Detection(camera_id="c1", seq=0, capture_time=1.0, frame_width=64, frame_height=48,
                         zones=[ZoneCount(zone="*", count=whole),
                                ZoneCount(zone="atrium", count=atrium, density_per_m2=atrium / 100)],
                         fire=None if fire is None else FireResult(score=fire))

    from pipeline.perception import crosses_threshold

    assert not crosses_threshold(c, det(9, 40))          # 0.4 /m² in the atrium, 9 people overall
    assert crosses_threshold(c, det(10, 40))             # camera threshold on the whole frame
    assert crosses_threshold(c, det(9, 50))              # zone threshold is per m²
    assert not crosses_threshold(c, det(0, 0, fire=0.59))
    assert crosses_threshold(c, det(0, 0, fire=0.6))
