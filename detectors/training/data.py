"""The development crowd data in ``../shared/data/crowd``: ShanghaiTech-B train images and the Mall train clip."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class CrowdSet:
    """Named images with their people counts, read lazily."""

    name: str
    keys: list[str]
    counts: np.ndarray  # float64, one per key

    def __len__(self) -> int:
        return len(self.keys)


def _natural(key: str) -> tuple:
    digits = "".join(ch for ch in key if ch.isdigit())
    return (int(digits) if digits else 0, key)


def shanghaitech(folder: Path) -> tuple[CrowdSet, Path]:
    """ShanghaiTech-B train: ``images/IMG_n.jpg`` and ``gt_counts.json`` {"IMG_n.jpg": heads}."""
    gt = json.loads((folder / "gt_counts.json").read_text())
    keys = sorted(gt, key=_natural)
    return CrowdSet("shb", keys, np.array([gt[k] for k in keys], np.float64)), folder / "images"


def mall(folder: Path) -> tuple[CrowdSet, Path]:
    """Mall train clip: one video and ``gt_counts.json`` with ``counts_by_frame_index``."""
    gt = json.loads((folder / "gt_counts.json").read_text())
    by_index = gt["counts_by_frame_index"]
    keys = sorted(by_index, key=int)
    return CrowdSet("mall", keys, np.array([by_index[k] for k in keys], np.float64)), folder / gt["video"]


def iter_images(folder: Path, names: Sequence[str]) -> Iterator[np.ndarray]:
    """BGR images ``folder / name`` in order; a missing or unreadable file is an error naming it."""
    for name in names:
        image = cv2.imread(str(folder / name))
        if image is None:
            raise FileNotFoundError(f"{folder / name}: missing or unreadable image")
        yield image


def iter_video(video: Path, keys: list[str]) -> Iterator[np.ndarray]:
    """BGR frames whose decode index is in ``keys`` (frame indices as strings), in order."""
    import av

    wanted = {int(k) for k in keys}
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                yield frame.to_ndarray(format="bgr24")
            if index >= max(wanted):
                break


def blank_frames(count: int, height: int = 768, width: int = 1024) -> Iterator[np.ndarray]:
    """``count`` flat BGR frames, grey levels spread over 0–255: scenes with nobody in them (count 0)."""
    for level in np.linspace(0, 255, count):
        yield np.full((height, width, 3), round(level), np.uint8)
