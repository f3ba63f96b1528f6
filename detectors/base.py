"""The small interfaces every detector plugin implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class CrowdEstimate:
    """What a crowd estimator returns for one image.

    ``boxes`` is an (N, 5) float32 array of x1, y1, x2, y2, score in original-image pixels (may be
    empty for density-only estimators). ``density`` is an (h, w) float32 map whose sum is the
    estimated count; one cell covers ``density_stride`` × ``density_stride`` original pixels.
    """

    boxes: np.ndarray
    density: np.ndarray | None = None
    density_stride: float = 1.0


class CrowdEstimator(Protocol):
    """Counts people. Implementations: person boxes (YOLOX) and density maps."""

    name: str
    model_id: str  # "name@sha256[:12]"

    def estimate(self, images: Sequence[np.ndarray]) -> list[CrowdEstimate]:
        """One estimate per BGR image, in order."""
        ...


class FireScorer(Protocol):
    """Scores P(fire) per image; may localise."""

    name: str
    model_id: str

    def score(self, images: Sequence[np.ndarray]) -> list[tuple[float, tuple[float, float, float, float] | None]]:
        """(P(fire), region or None) per BGR image, in order."""
        ...
