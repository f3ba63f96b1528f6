"""YOLOX head decoding: grid offsets per stride, score = obj × cls, non-maximum suppression."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=16)
def grid(height: int, width: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 2) grid x/y offsets and (cells, 1) strides, in the head's output order (row-major per stride)."""
    offsets, scales = [], []
    for s in strides:
        gh, gw = height // s, width // s
        ys, xs = np.mgrid[0:gh, 0:gw]
        offsets.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        scales.append(np.full((gh * gw, 1), s))
    return np.concatenate(offsets).astype(np.float32), np.concatenate(scales).astype(np.float32)


def nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Indexes of (N, 5) x1 y1 x2 y2 score boxes kept by greedy NMS, best first."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    xywh = boxes[:, :4].astype(np.float64)  # cv2 reads (N, 4) arrays as Rect2d, no Python lists
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh, boxes[:, 4].astype(np.float64), 0.0, iou)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def decode(output: np.ndarray, input_hw: tuple[int, int], strides: tuple[int, ...], class_index: int,
           ratios: np.ndarray, score_threshold: float, nms_iou: float) -> list[np.ndarray]:
    """YOLOX output (N, cells, 5 + classes) → per image (K, 5) float32 boxes in original pixels, best first."""
    offsets, scales = grid(input_hw[0], input_hw[1], strides)
    if output.shape[1] != len(offsets):
        raise ValueError(f"YOLOX output has {output.shape[1]} cells, expected {len(offsets)} for {input_hw} and strides {strides}")
    scores = output[..., 4] * output[..., 5 + class_index]
    results = []
    for i in range(len(output)):
        hit = np.flatnonzero(scores[i] >= score_threshold)
        raw, scale = output[i, hit], scales[hit]
        centre = (raw[:, :2] + offsets[hit]) * scale
        size = np.exp(raw[:, 2:4]) * scale
        boxes = np.empty((len(hit), 5), dtype=np.float32)
        boxes[:, :2] = (centre - size / 2) / ratios[i]
        boxes[:, 2:4] = (centre + size / 2) / ratios[i]
        boxes[:, 4] = scores[i, hit]
        results.append(boxes[nms(boxes, nms_iou)])
    return results
