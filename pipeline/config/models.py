"""The camera-group file, composed from the packages' setting models.

Merge order is defaults → group → camera (camera wins); the loader deep-merges the
:class:`CameraSettings` keys at each level and validates the result into :class:`ResolvedCamera`,
which is all the rest of the code sees.
"""

from __future__ import annotations

import difflib
import functools
import os
import zoneinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from detectors.settings import (
    CrowdSettings,
    DetectorName,
    FireSettings,
    RuntimeSettings,
    Zone,
    check_polygon,
)
from ingest.settings import DecodeMode, ReconnectPolicy, SourceSettings, StrictModel
from ingest.urls import STREAM_SCHEMES, url_scheme
from pipeline.config.env import has_template, templates_kept
from pipeline.rules.settings import RuleSettings

Point = tuple[float, float]
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"


_KNOWN_PREFIXES = tuple(f"{scheme}://" for scheme in STREAM_SCHEMES)


def check_url(url: str) -> str:
    """Accept rtsp://, rtsps://, http(s)://, file:// or a bare path (errors never show credentials)."""
    if not url.startswith(_KNOWN_PREFIXES):  # the common case skips urlsplit: 450k cameras load faster
        url_scheme(url)
    return url


def resolve_file_url(url: str, base_dir: str | Path) -> str:
    """A bare relative path is relative to ``base_dir`` (the config file's folder); others are unchanged.

    Inside :func:`~pipeline.config.env.keep_templates` a relative path that still holds a ``${VAR}``
    template is left as written: joined before filling, ``${DIR:-../x}/a.mp4`` would be cut apart by
    normpath and an absolute ``${DIR}`` nested under ``base_dir``. The worker resolves it once filled
    (:func:`deferred_base_dir`, :meth:`ResolvedCamera.url_base_dir`).
    """
    if not _relative_path(url) or _left_for_the_worker(url):
        return url
    return os.path.normpath(os.path.join(base_dir, url))


def deferred_base_dir(url: str, base_dir: str | Path) -> str | None:
    """``base_dir`` when :func:`resolve_file_url` left ``url`` for resolving after its templates are filled."""
    return str(base_dir) if _relative_path(url) and _left_for_the_worker(url) else None


def _relative_path(url: str) -> bool:
    return bool(url) and "://" not in url and not os.path.isabs(url)


def _left_for_the_worker(url: str) -> bool:
    """A relative path that still holds a template while templates are kept: resolved once filled."""
    return templates_kept() and has_template(url)


def check_zone_names(zones: list[Zone]) -> list[Zone]:
    """Zone names are unique within a camera."""
    names = [z.name for z in zones]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate zone name(s): {', '.join(dupes)}")
    return zones


@functools.cache
def _timezone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.lru_cache(maxsize=64)
def check_timezone(name: str) -> None:
    """ValueError unless ``name`` is an IANA time zone this machine knows (with a "did you mean")."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name, _timezone_names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else " (an IANA name such as 'Asia/Shanghai')"
        raise ValueError(f"unknown time zone {name!r}{hint}") from None


class Schedule(StrictModel):
    """Analyse only within these local hours (e.g. a market open 06:00–22:00)."""

    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time.")
    end: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time (may be before start: overnight; not equal to start).")
    days: list[str] = Field(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], description="Days of the week the window starts on (at least one).")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of start/end (an unknown name is an error).")

    @field_validator("end")
    @classmethod
    def _not_empty_window(cls, end: str, info: ValidationInfo) -> str:
        if end == info.data.get("start"):
            raise ValueError(f"end equals start ({end}): the window would be empty and the camera never analysed; "
                             "leave out schedule to analyse around the clock")
        return end

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: list[str]) -> list[str]:
        known = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        bad = [d for d in days if d not in known]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {sorted(known)}")
        if not days:
            raise ValueError("no days: the camera would never be analysed; leave out days for every day")
        return days

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        check_timezone(name)
        return name


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

    id: str = Field(..., min_length=1, pattern=ID_PATTERN, description="Unique camera id across all files.")
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

    _valid_url = field_validator("url")(check_url)
    _unique_zone_names = field_validator("zones")(check_zone_names)

    @field_validator("ignore_masks")
    @classmethod
    def _valid_masks(cls, masks: list[list[Point]]) -> list[list[Point]]:
        return [check_polygon(m) for m in masks]


class GroupConfig(StrictModel):
    """A camera group: a place or a purpose, with shared settings."""

    id: str = Field(..., min_length=1, pattern=ID_PATTERN, description="Group id, unique across all files.")
    name: str | None = Field(None, description="Display name.")
    town: str | None = Field(None, description="Town/street (镇街) of the group's cameras.")
    village: str | None = Field(None, description="Default village/community for the group's cameras.")
    description: str | None = Field(None, description="Free text.")
    tags: list[str] = Field(default_factory=list, description="Labels for filtering.")
    inventory: str | None = Field(None, description="CSV of cameras (id,url,grid,village,town,lat,lon[,zone columns]), relative to this file.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras written inline.")


class ResolvedCamera(StrictModel):
    """A camera after merging defaults → group → camera: what workers and rules consume.

    Cameras without their own settings keys share their group's ``settings`` object: treat it as
    read-only (use ``model_copy(update=...)`` to derive a variant).
    """

    id: str = Field(..., min_length=1, pattern=ID_PATTERN, description="Unique camera id.")
    name: str | None = Field(None, description="Human-readable name.")
    url: str = Field(..., repr=False,
                     description="Secrets already interpolated, relative file paths made absolute (a publisher's templated "
                                 "path stays as written for the worker to resolve): never print it, use redact_url().")
    group_id: str = Field(..., description="Id of the group the camera belongs to.")
    town: str | None = Field(None, description="Town/street (镇街).")
    village: str | None = Field(None, description="Village/community (村居).")
    grid: str = Field(..., min_length=1, description="Grid cell (网格) id.")
    lat: float | None = Field(None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(None, ge=-180, le=180, description="Longitude (WGS84).")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Named counting zones.")
    ignore_masks: list[list[Point]] = Field(default_factory=list, description="Polygons whose detections are ignored.")
    schedule: Schedule | None = Field(None, description="Analyse only in this window.")
    enabled: bool = Field(True, description="False: configured but not pulled.")
    settings: CameraSettings = Field(default_factory=CameraSettings, description="Merged settings (defaults → group → camera).")
    _url_base_dir: str | None = PrivateAttr(None)

    _valid_url = field_validator("url")(check_url)
    _unique_zone_names = field_validator("zones")(check_zone_names)

    @property
    def url_base_dir(self) -> str | None:
        """The config folder that ``url``, a relative path still holding ``${VAR}`` templates (loaded
        inside ``keep_templates``), is relative to once they are filled; None otherwise."""
        return self._url_base_dir

    def defer_url_base_dir(self, base_dir: str | Path) -> None:
        """Remember ``base_dir`` for :attr:`url_base_dir` when :func:`resolve_file_url` left ``url`` as written."""
        self._url_base_dir = deferred_base_dir(self.url, base_dir)


class ConfigFile(StrictModel):
    """A camera-group YAML file (the top level). Keys starting with ``x-`` are ignored: use them to hold
    YAML anchors (``x-gate: &gate {...}``) reused with ``<<: *gate``."""

    defaults: dict[str, Any] = Field(default_factory=dict, description="Any settings key (see Settings below); applies to every group in this file and in the files it includes.")
    include: list[str] = Field(default_factory=list, description="Other camera-group files, relative to this file; they inherit this file's defaults.")
    groups: list[dict[str, Any]] = Field(default_factory=list, description="Camera groups (see Group below).")


class CityConfig(StrictModel):
    """The whole loaded configuration."""

    groups: list[GroupConfig] = Field(default_factory=list, description="Groups as written (inline cameras only; inventory rows are in ``cameras``).")
    cameras: list[ResolvedCamera] = Field(default_factory=list, description="Every camera, resolved.")
    source_files: list[str] = Field(default_factory=list, description="YAML and CSV files read, in order.")
    rules: RuleSettings = Field(
        default_factory=RuleSettings,
        description="City-wide rules from the files' defaults.rules: sensors, fusion_window_s and update_ratio for "
                    "fire fusion and sensor alarms (per grid cell and sensor, not per camera; every file must agree), "
                    "the rest for cameras the configuration does not list (the first file given).",
    )
    _by_id: dict[str, ResolvedCamera] | None = PrivateAttr(None)

    def camera(self, camera_id: str) -> ResolvedCamera:
        """The camera with this id (KeyError if none)."""
        if self._by_id is None:
            self._by_id = {cam.id: cam for cam in self.cameras}
        return self._by_id[camera_id]

    def summary(self) -> dict[str, int]:
        """Counts for a one-line report: groups, cameras, enabled cameras, zones, grid cells, towns."""
        return {
            "groups": len(self.groups),
            "cameras": len(self.cameras),
            "enabled": sum(1 for c in self.cameras if c.enabled),
            "zones": sum(len(c.zones) for c in self.cameras),
            "grid_cells": len({c.grid for c in self.cameras}),
            "towns": len({c.town for c in self.cameras if c.town}),
        }
