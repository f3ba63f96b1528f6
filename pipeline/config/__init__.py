"""Camera-group configuration: pydantic models (``models``) and the YAML/CSV loader (``loader``).

>>> from pipeline.config import load_config
>>> city = load_config(["configs/demo.yaml"])      # raises ConfigError listing every problem
"""

from pipeline.config.errors import ConfigError, ConfigIssue
from pipeline.config.loader import load_config
from pipeline.config.models import (
    SETTINGS_KEYS,
    CameraConfig,
    CameraSettings,
    CityConfig,
    ConfigFile,
    GroupConfig,
    ResolvedCamera,
    RuleSettings,
    Schedule,
    ZoneConfig,
)
from pipeline.config.validation import load_model_file

__all__ = [
    "SETTINGS_KEYS",
    "CameraConfig",
    "CameraSettings",
    "CityConfig",
    "ConfigError",
    "ConfigFile",
    "ConfigIssue",
    "GroupConfig",
    "ResolvedCamera",
    "RuleSettings",
    "Schedule",
    "ZoneConfig",
    "load_config",
    "load_model_file",
]
