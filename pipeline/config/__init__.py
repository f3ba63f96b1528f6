"""Camera-group configuration: pydantic models (``models``) and the YAML/CSV loader (``loader``)."""

from pipeline.config.models import (
    CameraConfig,
    CameraSettings,
    CityConfig,
    GroupConfig,
    ResolvedCamera,
    RuleSettings,
    Schedule,
    ZoneConfig,
)

__all__ = [
    "CameraConfig",
    "CameraSettings",
    "CityConfig",
    "GroupConfig",
    "ResolvedCamera",
    "RuleSettings",
    "Schedule",
    "ZoneConfig",
]
