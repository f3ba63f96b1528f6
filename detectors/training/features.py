"""Frozen backbone features, extracted once per image (and its mirror image) and cached under ``.cache/``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.density import FEATURE_OUTPUTS, INPUT_NAME, cut_backbone, letterbox

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeatureBank:
    """Cached features of one image set: ``feat8`` (N,128,H/8,W/8) and ``feat16`` (N,128,H/16,W/16), float16."""

    feat8: np.ndarray
    feat16: np.ndarray

    def __len__(self) -> int:
        return len(self.feat8)


class BackboneFeatures:
    """Runs the cut YOLOX backbone on images at a fixed long side."""

    def __init__(self, backbone_bytes: bytes, long_side: int, threads: int = 0):
        import onnx

        from detectors.runtime import ort_session

        cut = cut_backbone(onnx.load_from_string(backbone_bytes))
        self.session = ort_session(cut.SerializeToString(), intra_op_threads=threads)
        self.long_side = long_side

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor, _ = letterbox(image, self.long_side)
        f8, f16 = self.session.run(list(FEATURE_OUTPUTS), {INPUT_NAME: tensor[None]})
        return f8[0], f16[0]


def extract(cache: Path, name: str, images: Callable[[], Iterable[np.ndarray]], count: int,
            features: BackboneFeatures, flip: bool = False) -> FeatureBank:
    """Features of ``count`` images (mirrored when ``flip``), cached as ``<cache>/<name>_feat{8,16}.npy``."""
    paths = [cache / f"{name}_{out}.npy" for out in FEATURE_OUTPUTS]
    done = cache / f"{name}.done.json"
    if done.exists() and json.loads(done.read_text()).get("count") == count:
        return FeatureBank(*(np.load(p, mmap_mode="r") for p in paths))
    cache.mkdir(parents=True, exist_ok=True)
    banks: list[np.ndarray] | None = None
    start = time.perf_counter()
    for i, image in enumerate(_take(images(), count)):
        if flip:
            image = np.ascontiguousarray(image[:, ::-1])
        outs = features(image)
        if banks is None:
            banks = [np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(count, *o.shape))
                     for p, o in zip(paths, outs)]
        for bank, o in zip(banks, outs):
            bank[i] = o
        if (i + 1) % 100 == 0:
            log.info("%s: %d/%d images (%.1f s)", name, i + 1, count, time.perf_counter() - start)
    if banks is None:
        raise ValueError(f"{name}: no images")
    for bank in banks:
        bank.flush()
    done.write_text(json.dumps({"count": count, "seconds": round(time.perf_counter() - start, 1)}))
    return FeatureBank(*(np.load(p, mmap_mode="r") for p in paths))


def _take(items: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    n = 0
    for item in items:
        yield item
        n += 1
    if n != count:
        raise ValueError(f"expected {count} images, got {n}")
