"""Frozen backbone features, extracted once per image (and its mirror image) and cached under ``.cache/``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.density import CONTEXT_OUTPUT, FEATURE_OUTPUTS, INPUT_NAME, cut_backbone, letterbox

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeatureBank:
    """Cached features of one image set: ``feat8`` (N,128,H/8,W/8), ``feat16`` (N,128,H/16,W/16) and, when
    extracted, ``feat32`` (N,128,H/32,W/32), float16."""

    feat8: np.ndarray
    feat16: np.ndarray
    feat32: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.feat8)


class BackboneFeatures:
    """Runs the cut YOLOX backbone on images at a fixed long side, giving ``outputs`` (names as in the cut)."""

    def __init__(self, backbone_bytes: bytes, long_side: int, threads: int = 0,
                 outputs: Sequence[str] = FEATURE_OUTPUTS):
        import onnx

        from detectors.runtime import ort_session

        cut = cut_backbone(onnx.load_from_string(backbone_bytes), outputs)
        self.session = ort_session(cut.SerializeToString(), intra_op_threads=threads)
        self.long_side = long_side
        self.outputs = tuple(outputs)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        tensor, _ = letterbox(image, self.long_side)
        return tuple(o[0] for o in self.session.run(list(self.outputs), {INPUT_NAME: tensor[None]}))


def extract(cache: Path, name: str, images: Callable[[], Iterable[np.ndarray]], count: int,
            features: Callable[[Sequence[str]], BackboneFeatures], flip: bool = False,
            outputs: Sequence[str] = FEATURE_OUTPUTS) -> FeatureBank:
    """Features ``outputs`` of ``count`` images (mirrored when ``flip``), cached as ``<cache>/<name>_<output>.npy``.

    ``features(names)`` builds the extractor for the outputs not cached yet (a bank extracted before
    ``feat32`` existed gains it without recomputing the others).
    """
    done = cache / f"{name}.done.json"
    record = json.loads(done.read_text()) if done.exists() else {}
    cached = record.get("outputs", list(FEATURE_OUTPUTS)) if record.get("count") == count else []
    missing = [o for o in outputs if o not in cached]
    if missing:
        seconds = _extract(cache, name, images, count, features(missing), flip)
        cached = [o for o in cached if o not in missing] + missing
        done.write_text(json.dumps({"count": count, "outputs": cached, "seconds": round(seconds, 1)}))
    banks = {o: np.load(cache / f"{name}_{o}.npy", mmap_mode="r") for o in outputs}
    return FeatureBank(banks["feat8"], banks["feat16"], banks.get(CONTEXT_OUTPUT))


def _extract(cache: Path, name: str, images: Callable[[], Iterable[np.ndarray]], count: int,
             features: BackboneFeatures, flip: bool) -> float:
    paths = [cache / f"{name}_{out}.npy" for out in features.outputs]
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
    return time.perf_counter() - start


def _take(items: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    n = 0
    for item in items:
        yield item
        n += 1
    if n != count:
        raise ValueError(f"expected {count} images, got {n}")
