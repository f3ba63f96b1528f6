"""Detectors: turn sampled frames into :class:`Detection` records.

Owns the detection record and the detector settings. May import ``ingest``; never ``pipeline``.
"""

from detectors.records import Box, Detection, FireResult, ZoneCount
from detectors.settings import CrowdSettings, DetectorName, FireSettings, RuntimeSettings, Zone

__all__ = [
    "Box",
    "CrowdSettings",
    "Detection",
    "DetectorName",
    "FireResult",
    "FireSettings",
    "RuntimeSettings",
    "Zone",
    "ZoneCount",
]
