"""Image → tensor: letterbox or stretch resize, channel order and normalisation, batched.

Two forms: :func:`to_tensor` gives the float tensor a model file expects; :func:`to_image_tensor`
gives the resized image itself as uint8 NCHW BGR, for a graph that casts and normalises it
(:func:`detectors.runtime.fold_preprocessing`) — one resize and one channel split, no float work.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detectors.registry import InputSpec


def letterbox_scale(height: int, width: int, spec: InputSpec) -> float:
    """Resize ratio that fits an image into the model input keeping its aspect ratio."""
    return min(spec.height / height, spec.width / width)


def canvas_size(images: Sequence[np.ndarray], spec: InputSpec, rect: bool = False) -> tuple[int, int]:
    """(H, W) of the batch tensor: the declared size, or with ``rect`` (a letterbox model with a
    ``rect_multiple``) the smallest multiple of it that holds every letterboxed image of the batch."""
    h, w = spec.height, spec.width
    m = spec.rect_multiple
    if not rect or not m or spec.resize != "letterbox_top_left" or not len(images):
        return h, w
    need_h = need_w = 0
    for img in images:
        r = letterbox_scale(img.shape[0], img.shape[1], spec)
        need_h, need_w = max(need_h, int(img.shape[0] * r)), max(need_w, int(img.shape[1] * r))
    return min(h, -(-need_h // m) * m), min(w, -(-need_w // m) * m)


def to_tensor(images: Sequence[np.ndarray], spec: InputSpec, rect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Batch of BGR images → (NCHW float32 tensor, per-image scale ratios r so that original = model / r).

    Stretch resizes return per-axis ratios as an (N, 2) array (x, y); letterbox returns (N,) ratios.
    ``rect``: letterbox into :func:`canvas_size` instead of the declared size (same scale, less padding).
    """
    planes, ratios = to_image_tensor(images, spec, rect)
    return normalise(planes, spec), ratios


def to_image_tensor(images: Sequence[np.ndarray], spec: InputSpec, rect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Batch of BGR images → ((N, 3, H, W) uint8 BGR tensor, ratios as :func:`to_tensor`), same resize and padding.

    Each resized image is de-interleaved by ``cv2.split`` straight into its planes of the batch (cv2
    writes into row-strided views too, so a letterboxed image lands inside its padded canvas).
    """
    n = len(images)
    h, w = canvas_size(images, spec, rect)
    letterbox = spec.resize == "letterbox_top_left"
    out = np.full((n, 3, h, w), int(spec.pad_value), dtype=np.uint8) if letterbox else np.empty((n, 3, h, w), np.uint8)
    ratios = np.empty(n, dtype=np.float32) if letterbox else np.empty((n, 2), dtype=np.float32)
    for i, img in enumerate(images):
        if letterbox:
            r = letterbox_scale(img.shape[0], img.shape[1], spec)
            nw, nh = int(img.shape[1] * r), int(img.shape[0] * r)
            ratios[i] = r
        else:
            nw, nh = w, h
            ratios[i] = (w / img.shape[1], h / img.shape[0])
        cv2.split(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR), list(out[i, :, :nh, :nw]))
    return out, ratios


def normalise(planes: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(N, 3, H, W) uint8 BGR → (N, 3, H, W) float32 in the model's colour order and scale."""
    x = planes if spec.colour == "BGR" else planes[:, ::-1]
    x = np.ascontiguousarray(x, dtype=np.float32)  # one copy: channel order and dtype
    std = np.asarray(spec.std, dtype=np.float32)
    gain = (np.float32(spec.scale) / std).reshape(1, 3, 1, 1)
    offset = (-np.asarray(spec.mean, dtype=np.float32) / std).reshape(1, 3, 1, 1)
    if not np.all(gain == 1):
        x *= gain
    if np.any(offset):
        x += offset
    return x
