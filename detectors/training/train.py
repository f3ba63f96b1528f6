"""``guanjia models train-crowd``: features → cross-validated figures → final head → ONNX + report."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.density import CONTEXT_OUTPUT, FEATURE_OUTPUTS
from detectors.training import data
from detectors.training.features import BackboneFeatures, FeatureBank, extract
from detectors.training.fit import Part, TrainConfig, errors, fit_head, predict_counts

log = logging.getLogger(__name__)

MALL_BLOCKS = 5
MALL_GAP = 8  # frames (4 s) dropped from training on each side of a held-out Mall block


@dataclass
class DevData:
    """Cached features and counts of the development crowd data."""

    shb: FeatureBank
    shb_flip: FeatureBank
    mall: FeatureBank
    shb_counts: np.ndarray
    mall_counts: np.ndarray
    shb_keys: list[str]
    scaled: tuple[DevData, ...] = ()  # the same images at the other scales of TrainConfig.aug_scales
    blank: FeatureBank | None = None  # flat frames with nobody in them (TrainConfig.blank_frames), in every fit


def load_dev_data(shared_dir: Path, backbone_bytes: bytes, long_side: int, cache_root: Path,
                  stride32: bool | None = None, aug_scales: tuple[float, ...] | None = None,
                  blank_frames: int | None = None) -> DevData:
    """Extract (or reuse cached) backbone features of ShanghaiTech-B train (and mirrors) and the Mall clip.

    ``stride32`` also extracts the stride-32 features; ``aug_scales`` also loads the images with the long
    side scaled by each factor; ``blank_frames`` flat 1024×768 frames are added as empty scenes (all
    default to :class:`TrainConfig`'s defaults).
    """
    defaults = TrainConfig()
    stride32 = defaults.stride32 if stride32 is None else stride32
    aug_scales = defaults.aug_scales if aug_scales is None else aug_scales
    blank_frames = defaults.blank_frames if blank_frames is None else blank_frames
    crowd = shared_dir / "data" / "crowd"
    shb, images = data.shanghaitech(crowd / "shanghaitech_B_train")
    mall, video = data.mall(crowd / "mall_train")
    tag = f"{hashlib.sha256(backbone_bytes).hexdigest()[:12]}_{long_side}"
    cache = cache_root / "crowd_features" / tag
    outputs = FEATURE_OUTPUTS + ((CONTEXT_OUTPUT,) if stride32 else ())

    def fx(names):
        return BackboneFeatures(backbone_bytes, long_side, outputs=names)

    banks = [
        extract(cache, "shb", lambda: data.iter_images(images, shb.keys), len(shb), fx, outputs=outputs),
        extract(cache, "shb_flip", lambda: data.iter_images(images, shb.keys), len(shb), fx, flip=True, outputs=outputs),
        extract(cache, "mall", lambda: data.iter_video(video, mall.keys), len(mall), fx, outputs=outputs),
    ]
    blank = (extract(cache, f"blank{blank_frames}", lambda: data.blank_frames(blank_frames), blank_frames, fx,
                     outputs=outputs) if blank_frames else None)
    scaled = tuple(load_dev_data(shared_dir, backbone_bytes, round(long_side * f), cache_root, stride32, (), blank_frames)
                   for f in aug_scales)
    return DevData(*banks, shb.counts, mall.counts, shb.keys, scaled, blank)


def shb_folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out image indices of each fold: a seeded permutation dealt round-robin."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[k::folds]) for k in range(folds)]


def mall_blocks(n: int, blocks: int) -> list[np.ndarray]:
    """Held-out frame indices of each fold: consecutive time blocks."""
    return [np.arange(n)[k * n // blocks:(k + 1) * n // blocks] for k in range(blocks)]


def mall_train_frames(n: int, held_out: np.ndarray | None, every: int = TrainConfig.mall_every) -> np.ndarray:
    """One frame in ``every`` of the clip, without the held-out block and ``MALL_GAP`` frames either side of it."""
    frames = np.arange(0, n, every)
    if held_out is None or not len(held_out):
        return frames
    lo, hi = held_out.min() - MALL_GAP, held_out.max() + MALL_GAP
    return frames[(frames < lo) | (frames > hi)]


def training_indices(name: str, n_shb: int, n_mall: int, folds: int, seed: int,
                     mall_every: int = TrainConfig.mall_every) -> tuple[np.ndarray, np.ndarray]:
    """(SHB, Mall) training indices of a named fit: ``final`` (everything), ``shb_only`` (no Mall frame) or
    ``fold<k>`` (SHB fold k and Mall block k of ``folds`` held out, with the gap around the block)."""
    if name == "final":
        return np.arange(n_shb), mall_train_frames(n_mall, None, mall_every)
    if name == "shb_only":
        return np.arange(n_shb), np.array([], int)
    k = int(name.removeprefix("fold"))
    held = shb_folds(n_shb, folds, seed)[k]
    return np.setdiff1d(np.arange(n_shb), held), mall_train_frames(n_mall, mall_blocks(n_mall, folds)[k], mall_every)


def training_parts(dev: DevData, shb_index: np.ndarray, mall_index: np.ndarray) -> list[Part]:
    parts = [Part(dev.shb, shb_index, dev.shb_counts[shb_index]),
             Part(dev.shb_flip, shb_index, dev.shb_counts[shb_index])]
    if len(mall_index):
        parts.append(Part(dev.mall, mall_index, dev.mall_counts[mall_index]))
    if dev.blank is not None:
        parts.append(Part(dev.blank, np.arange(len(dev.blank)), np.zeros(len(dev.blank))))
    return parts


_DEV: DevData | None = None  # inherited by forked workers instead of pickling the memory-mapped features


def _fit(job: tuple[str, np.ndarray, np.ndarray, TrainConfig]):
    name, shb_index, mall_index, cfg = job
    start = time.perf_counter()
    scaled = [training_parts(s, shb_index, mall_index) for s in _DEV.scaled]
    head = fit_head(training_parts(_DEV, shb_index, mall_index), cfg, scaled)
    log.info("%s fitted in %.0f s", name, time.perf_counter() - start)
    return name, head, time.perf_counter() - start


def fit_named(dev: DevData, cfg: TrainConfig, names: list[str], folds: int, jobs: int = 1) -> dict[str, tuple[object, float]]:
    """The heads of the named fits (``final``, ``shb_only``, ``fold<k>`` of ``folds``), ``jobs`` at a time:
    {name: (head, seconds)}."""
    global _DEV
    n_shb, n_mall = len(dev.shb_counts), len(dev.mall_counts)
    work = [(name, *training_indices(name, n_shb, n_mall, folds, cfg.seed, cfg.mall_every), cfg) for name in names]
    _DEV = dev
    if jobs > 1 and len(work) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(work)), mp_context=multiprocessing.get_context("fork")) as pool:
            return {name: (head, secs) for name, head, secs in pool.map(_fit, work)}
    return {name: (head, secs) for name, head, secs in map(_fit, work)}


def run_fits(dev: DevData, cfg: TrainConfig, folds: int, final: bool, jobs: int = 1) -> tuple[dict | None, object, float]:
    """Cross-validation (when ``folds``) and the final head (when ``final``), ``jobs`` fits at a time.

    Fold k holds out SHB fold k and Mall time block k; one more fit on SHB only is scored on the whole
    Mall clip. Returns (figures or None, final head or None, seconds of the final fit).
    """
    if len(dev.scaled) != len(cfg.aug_scales):
        raise ValueError(f"the config trains at {len(cfg.aug_scales)} extra scales but the data holds {len(dev.scaled)}")
    n_shb, n_mall = len(dev.shb_counts), len(dev.mall_counts)
    shb_held, mall_held = shb_folds(n_shb, max(folds, 1), cfg.seed), mall_blocks(n_mall, max(folds, 1))
    names = (["final"] if final else []) + (["shb_only"] + [f"fold{k}" for k in range(folds)] if folds else [])
    fitted = fit_named(dev, cfg, names, max(folds, 1), jobs)
    cv = None
    if folds:
        shb_pred, mall_pred = np.zeros(n_shb), np.zeros(n_mall)
        per_fold = []
        for k in range(folds):
            head = fitted[f"fold{k}"][0]
            shb_pred[shb_held[k]] = predict_counts(head, Part(dev.shb, shb_held[k], dev.shb_counts[shb_held[k]]))
            mall_pred[mall_held[k]] = predict_counts(head, Part(dev.mall, mall_held[k], dev.mall_counts[mall_held[k]]))
            per_fold.append({"fold": k + 1,
                             "shb": errors(shb_pred[shb_held[k]], dev.shb_counts[shb_held[k]]),
                             "mall": errors(mall_pred[mall_held[k]], dev.mall_counts[mall_held[k]]),
                             "mall_frames": [int(mall_held[k].min()), int(mall_held[k].max())]})
        shb_only = predict_counts(fitted["shb_only"][0], Part(dev.mall, np.arange(n_mall), dev.mall_counts))
        cv = {"folds": per_fold,
              "shb": errors(shb_pred, dev.shb_counts),
              "mall": errors(mall_pred, dev.mall_counts),
              "shb_only_on_mall": errors(shb_only, dev.mall_counts),
              "shb_predictions": {k: round(float(p), 2) for k, p in zip(dev.shb_keys, shb_pred)},
              "mall_predictions": [round(float(p), 2) for p in mall_pred]}
    head, secs = fitted.get("final", (None, 0.0))
    return cv, head, secs
