"""Counting inside zones: boxes by their bottom-centre, density maps by their sum inside the polygon."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.base import CrowdEstimate
from detectors.records import ZoneCount
from detectors.settings import Point, Zone

WHOLE_FRAME = "*"


def polygon_mask(polygons: Sequence[Sequence[Point]], height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of relative 0–1 polygons: a pixel is inside when its centre is (even-odd rule).

    Unlike ``cv2.fillPoly``, which also paints the pixels an edge passes through, this keeps fractional
    coverage exact when the mask is averaged down to density-map cells.
    """
    mask = np.zeros((height, width), dtype=bool)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    for polygon in polygons:
        p = np.asarray(polygon, dtype=np.float64) * (width, height)
        q = np.roll(p, -1, axis=0)
        for (x0, y0), (x1, y1) in zip(p, q):
            if y0 == y1:
                continue  # horizontal edges never cross a scanline
            rows = ((y0 <= ys) & (ys < y1)) | ((y1 <= ys) & (ys < y0))
            x_cross = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            mask ^= rows & (x_cross > xs)
    return mask


def cell_weights(mask: np.ndarray, stride: float, map_shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each density-map cell's frame pixels covered by a frame-sized mask.

    A cell is ``stride`` frame pixels square and holds the pixels whose centres fall in it; a cell the
    frame's edge cuts is weighed by the part inside the frame (the rest is padding, with nobody in it),
    and a cell wholly beyond the frame weighs 0.
    """
    mh, mw = map_shape
    h, w = mask.shape

    def binning(n: int, cells: int) -> np.ndarray:
        """(cells, n) one-hot: which cell each pixel row or column belongs to (none beyond the map)."""
        index = ((np.arange(n) + 0.5) // stride).astype(np.int64)
        return (index[None, :] == np.arange(cells)[:, None]).astype(np.float32)

    rows, cols = binning(h, mh), binning(w, mw)
    covered = rows @ mask.astype(np.float32) @ cols.T
    pixels = rows.sum(axis=1)[:, None] * cols.sum(axis=1)[None, :]
    return np.divide(covered, pixels, out=np.zeros(map_shape, np.float32), where=pixels > 0)


class ZoneCounter:
    """Counts one camera's people per zone, after dropping what falls in its ignore masks."""

    def __init__(self, zones: Sequence[Zone] = (), ignore: Sequence[Sequence[Point]] = ()):
        self.zones = list(zones)
        self.ignore = [list(p) for p in ignore]
        self._masks: dict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = {}
        self._weights: dict[tuple, tuple[np.ndarray, list[np.ndarray]]] = {}

    def masks(self, height: int, width: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(ignore mask, zone masks) for a frame size, drawn once per size."""
        key = (height, width)
        if key not in self._masks:
            ignore = polygon_mask(self.ignore, height, width)
            zones = [polygon_mask([z.polygon], height, width) for z in self.zones]
            self._masks[key] = (ignore, zones)
        return self._masks[key]

    def count(self, estimate: CrowdEstimate, height: int, width: int) -> tuple[list[ZoneCount], np.ndarray]:
        """Zone counts (the whole frame first, as zone ``"*"``) and the boxes kept after the ignore mask."""
        ignore, zone_masks = self.masks(height, width)
        if estimate.density is not None:
            return self._count_density(estimate, height, width), _kept_boxes(estimate.boxes, ignore)
        boxes = _kept_boxes(estimate.boxes, ignore)
        xs, ys = _bottom_centres(boxes, height, width)
        counts = [float(len(boxes))] + [float(m[ys, xs].sum()) for m in zone_masks]
        return self._records(counts), boxes

    def density_weights(self, height: int, width: int, stride: float, map_shape: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(cells inside the frame and outside ignore masks, per-zone cell coverage), computed once per geometry."""
        key = (height, width, stride, map_shape)
        if key not in self._weights:
            ignore, zone_masks = self.masks(height, width)
            frame = np.ones_like(ignore)
            keep = cell_weights(frame, stride, map_shape) * (1.0 - cell_weights(ignore, stride, map_shape))
            self._weights[key] = (keep, [cell_weights(m, stride, map_shape) for m in zone_masks])
        return self._weights[key]

    def _count_density(self, estimate: CrowdEstimate, height: int, width: int) -> list[ZoneCount]:
        density = estimate.density.astype(np.float32)
        keep, zones = self.density_weights(height, width, float(estimate.density_stride), density.shape)
        kept = density * keep
        counts = [float(kept.sum())] + [float((kept * z).sum()) for z in zones]
        return self._records([max(0.0, c) for c in counts])

    def _records(self, counts: list[float]) -> list[ZoneCount]:
        records = [ZoneCount(zone=WHOLE_FRAME, count=counts[0])]
        for zone, count in zip(self.zones, counts[1:]):
            per_m2 = count / zone.area_m2 if zone.area_m2 else None
            records.append(ZoneCount(zone=zone.name, count=count, density_per_m2=per_m2))
        return records


def _bottom_centres(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    xs = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64), 0, width - 1)
    ys = np.clip(boxes[:, 3].astype(np.int64), 0, height - 1)
    return xs, ys


def _kept_boxes(boxes: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    if len(boxes) == 0 or not ignore.any():
        return boxes
    xs, ys = _bottom_centres(boxes, *ignore.shape)
    return boxes[~ignore[ys, xs]]
