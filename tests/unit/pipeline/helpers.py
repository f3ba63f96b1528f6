"""Small builders for rule-engine tests."""

from __future__ import annotations

from detectors.records import Detection, FireResult, ZoneCount
from pipeline.catalog import load_catalog
from pipeline.config.models import CameraSettings, ResolvedCamera, ZoneConfig
from pipeline.embedded import EmbeddedRunner
from pipeline.rules.settings import CrowdingRule, FireRule, RuleSettings

T0 = 1_800_000_000.0
CATALOG = load_catalog()


def camera(cid="cam1", grid="G1", village="V1", town="T1", *, threshold=10, clear=5, dwell=10, clear_s=20,
           lateness=30, k=3, n=5, fire_clear_s=0, zones=None, **rules) -> ResolvedCamera:
    settings = CameraSettings(rules=RuleSettings(
        crowding=CrowdingRule(threshold=threshold, clear_threshold=min(clear, threshold), dwell_s=dwell, clear_s=clear_s),
        fire=FireRule(threshold=0.5, k=k, n=n, clear_s=fire_clear_s),
        allowed_lateness_s=lateness, **rules,
    ))
    return ResolvedCamera(id=cid, url="rtsp://u:p@h/s", group_id="g", grid=grid, village=village, town=town,
                          zones=zones or [ZoneConfig(name="gate", polygon=[(0, 0), (1, 0), (1, 1)])], settings=settings)


def det(t, count=None, fire=None, cam="cam1", zone="gate", seq=0, density=None) -> Detection:
    zones = [] if count is None else [ZoneCount(zone=zone, count=count, density_per_m2=density)]
    return Detection(camera_id=cam, seq=seq, capture_time=T0 + t, frame_width=640, frame_height=480,
                     grid_id="G1", crowd_estimator="boxes", zones=zones,
                     fire=None if fire is None else FireResult(score=fire))


def runner(*cams, **kw) -> EmbeddedRunner:
    return EmbeddedRunner(list(cams) or [camera()], CATALOG, **kw)
