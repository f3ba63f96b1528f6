"""Crowd estimator by person boxes (YOLOX-family models), with optional overlapping tiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.base import CrowdEstimate
from detectors.registry import ModelError, ModelRegistry
from detectors.runtime import OnnxModel, Runtime
from detectors.settings import CrowdSettings
from detectors.yolox import decode, nms


def tile_windows(height: int, width: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(x1, y1, x2, y2) of ``cols`` × ``rows`` tiles covering the frame, neighbours overlapping by ``overlap``."""
    tw = width / (cols - (cols - 1) * overlap)
    th = height / (rows - (rows - 1) * overlap)
    windows = []
    for r in range(rows):
        for c in range(cols):
            x1, y1 = round(c * tw * (1 - overlap)), round(r * th * (1 - overlap))
            windows.append((x1, y1, min(width, round(x1 + tw)), min(height, round(y1 + th))))
    return windows


class BoxCrowdEstimator:
    """Counts people as person boxes: score = obj × cls ≥ threshold, NMS, optional tiles merged by NMS."""

    name = "boxes"

    def __init__(self, model: OnnxModel, settings: CrowdSettings):
        spec = model.spec
        if spec.task != "person_boxes" or spec.output.decoding != "yolox" or spec.output.person_class is None:
            raise ModelError(f"model {spec.name} is a {spec.task} model, not a YOLOX person detector")
        self.model = model
        self.settings = settings
        self.model_id = spec.model_id

    @classmethod
    def from_registry(cls, registry: ModelRegistry, settings: CrowdSettings, runtime: Runtime) -> BoxCrowdEstimator:
        return cls(runtime.model(registry, settings.model), settings)

    def estimate(self, images: Sequence[np.ndarray]) -> list[CrowdEstimate]:
        """One estimate per BGR image; all images (and all their tiles) go through the model as one batch."""
        cols, rows = self.settings.tiles
        if (cols, rows) == (1, 1):
            return [CrowdEstimate(boxes=b) for b in self.detect(images)]
        crops, owners, offsets = [], [], []
        for i, img in enumerate(images):
            windows = [(0, 0, img.shape[1], img.shape[0])]
            windows += tile_windows(img.shape[0], img.shape[1], cols, rows, self.settings.tile_overlap)
            for x1, y1, x2, y2 in windows:
                crops.append(img[y1:y2, x1:x2])
                owners.append(i)
                offsets.append((x1, y1))
        found = self.detect(crops)
        per_image: list[list[np.ndarray]] = [[] for _ in images]
        for boxes, owner, (dx, dy) in zip(found, owners, offsets):
            shifted = boxes.copy()
            shifted[:, [0, 2]] += dx
            shifted[:, [1, 3]] += dy
            per_image[owner].append(shifted)
        results = []
        for parts in per_image:
            merged = np.concatenate(parts)
            results.append(CrowdEstimate(boxes=merged[nms(merged, self.settings.nms_iou)]))
        return results

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 5) person boxes per image, in original pixels, best first."""
        spec = self.model.spec
        strides = tuple(spec.output.strides)
        cls, thr, iou = spec.output.person_class, self.settings.score_threshold, self.settings.nms_iou

        def prepare(chunk: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[np.ndarray, tuple[int, int]]]:
            tensor, ratios = self.model.prepare(chunk)
            return tensor, (ratios, tensor.shape[2:])  # a rect letterbox sizes the canvas, and so the grid, per chunk

        return self.model.infer(
            images, prepare, lambda output, context: decode(output, context[1], strides, cls, context[0], thr, iou))
