"""The camera-group file, composed from the packages' setting models.

Merge order is defaults → group → camera (camera wins); the loader deep-merges the
:class:`CameraSettings` keys at each level and validates the result into :class:`ResolvedCamera`,
which is all the rest of the code sees.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from detectors.settings import CrowdSettings, DetectorName, FireSettings, RuntimeSettings, Zone, check_polygon
from ingest.settings import DecodeMode, ReconnectPolicy, SourceSettings, StrictModel
from pipeline.rules.settings import RuleSettings

Point = tuple[float, float]


class Schedule(StrictModel):
    """Analyse only within these local hours (e.g. a market open 06:00–22:00)."""

    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time.")
    end: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time (may be before start: overnight).")
    days: list[str] = Field(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], description="Days of the week the window applies.")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of start/end.")

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: list[str]) -> list[str]:
        known = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        bad = [d for d in days if d not in known]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {sorted(known)}")
        return days


class CameraSettings(StrictModel):
    """Everything that defaults, a group or a camera may set (camera wins)."""

    analysis_interval_s: float = Field(2.0, gt=0, description="Seconds between analysed frames.")
    decode_mode: DecodeMode = Field(DecodeMode.keyframes, description="keyframes (default), interval or all.")
    source: SourceSettings = Field(default_factory=SourceSettings, description="Stream opening and timeouts.")
    reconnect: ReconnectPolicy = Field(default_factory=ReconnectPolicy, description="Backoff and stall watchdog.")
    detectors: list[DetectorName] = Field([DetectorName.crowd, DetectorName.fire], description="Detectors run on this camera.")
    crowd: CrowdSettings = Field(default_factory=CrowdSettings, description="Person counting settings.")
    fire: FireSettings = Field(default_factory=FireSettings, description="Fire classification settings.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="ONNX Runtime and batching.")
    rules: RuleSettings = Field(default_factory=RuleSettings, description="Event rule thresholds.")


SETTINGS_KEYS = frozenset(CameraSettings.model_fields)


class ZoneConfig(Zone):
    """A zone as configured (geometry plus optional crowding thresholds)."""


class CameraConfig(StrictModel):
    """One camera as written in YAML or an inventory CSV row; may carry any settings key."""

    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="Unique camera id across all files.")
    name: str | None = Field(None, description="Human-readable name.")
    url: str = Field(..., description="rtsp://, rtsps://, http(s):// or a file path; ${VAR} allowed for secrets.")
    grid: str = Field(..., min_length=1, description="Grid cell (网格) id.")
    village: str | None = Field(None, description="Village/community (村居); defaults to the group's.")
    town: str | None = Field(None, description="Town/street (镇街); defaults to the group's.")
    lat: float | None = Field(None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(None, ge=-180, le=180, description="Longitude (WGS84).")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Named counting zones.")
    ignore_masks: list[list[Point]] = Field(default_factory=list, description="Polygons whose detections are ignored (static false positives).")
    schedule: Schedule | None = Field(None, description="Analyse only in this window.")
    enabled: bool = Field(True, description="Set false to keep a camera configured but not pulled.")

    @field_validator("ignore_masks")
    @classmethod
    def _valid_masks(cls, masks: list[list[Point]]) -> list[list[Point]]:
        return [check_polygon(m) for m in masks]

    @field_validator("zones")
    @classmethod
    def _unique_zone_names(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        names = [z.name for z in zones]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate zone name(s): {', '.join(dupes)}")
        return zones


class GroupConfig(StrictModel):
    """A camera group: a place or a purpose, with shared settings."""

    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="Group id.")
    name: str | None = Field(None, description="Display name.")
    town: str | None = Field(None, description="Town/street (镇街) of the group's cameras.")
    village: str | None = Field(None, description="Default village/community for the group's cameras.")
    description: str | None = Field(None, description="Free text.")
    tags: list[str] = Field(default_factory=list, description="Labels for filtering.")
    inventory: str | None = Field(None, description="CSV of cameras (id,url,grid,village,town,lat,lon[,zone columns]), relative to this file.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras written inline.")


class ResolvedCamera(StrictModel):
    """A camera after merging defaults → group → camera: what workers and rules consume."""

    id: str
    name: str | None = None
    url: str = Field(..., description="Secrets already interpolated: never print it, use redact_url().")
    group_id: str
    town: str | None = None
    village: str | None = None
    grid: str
    lat: float | None = None
    lon: float | None = None
    zones: list[ZoneConfig] = Field(default_factory=list)
    ignore_masks: list[list[Point]] = Field(default_factory=list)
    schedule: Schedule | None = None
    enabled: bool = True
    settings: CameraSettings = Field(default_factory=CameraSettings)


class CityConfig(StrictModel):
    """The whole loaded configuration."""

    groups: list[GroupConfig] = Field(default_factory=list)
    cameras: list[ResolvedCamera] = Field(default_factory=list)
    source_files: list[str] = Field(default_factory=list)

    def camera(self, camera_id: str) -> ResolvedCamera:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)
