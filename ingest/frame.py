"""The frame record handed from ingest to the detectors (never leaves the process)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled frame of one camera.

    ``capture_time`` is wall-clock seconds since the epoch, mapped from the stream's PTS and
    monotonic per camera; ``seq`` counts analysed frames per camera from 0 for one stream session
    onwards (it never restarts while the process lives).
    """

    camera_id: str
    seq: int
    capture_time: float
    image: np.ndarray = field(repr=False)
    pts: float | None = None
    keyframe: bool = False

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
