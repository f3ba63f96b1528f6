"""Ingest: pull camera streams and hand out sampled frames.

Owns the :class:`Frame` record and the source/sampling settings.
Imports nothing from ``detectors`` or ``pipeline``.
"""

from ingest.frame import Frame
from ingest.settings import DecodeMode, ReconnectPolicy, SourceSettings

__all__ = ["DecodeMode", "Frame", "ReconnectPolicy", "SourceSettings"]
