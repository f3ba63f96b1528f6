"""Ingest: pull camera streams and hand out sampled frames.

Owns the :class:`Frame` record and the source/sampling settings.
Imports nothing from ``detectors`` or ``pipeline``. The pool and the health publisher are
imported lazily (``from ingest.pool import IngestPool``) so that reading settings stays cheap.
"""

from ingest.frame import Frame
from ingest.settings import DecodeMode, ReconnectPolicy, SourceSettings

__all__ = ["DecodeMode", "Frame", "ReconnectPolicy", "SourceSettings"]

_LAZY = {
    "CameraSource": "ingest.source",
    "IngestPool": "ingest.pool",
    "CameraHealth": "ingest.health",
    "CameraState": "ingest.health",
    "HealthPublisher": "ingest.health",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ingest' has no attribute {name!r}")
