"""Fitting the density head on cached features, cross-validation folds and their figures."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from detectors.training.features import FeatureBank
from detectors.training.head import Adam, DensityHead, Mlp, Whitening, cell_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one head fit (the defaults are the committed model's)."""

    seed: int = 7
    components: int = 64
    hidden: int = 32
    epochs: int = 30
    batch_images: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    huber_delta: float = 1.0
    loss: str = "relative"  # Huber of (map sum − count)/√(count+1) ("relative") or of map sum − count ("absolute")
    whitening_cells: int = 200_000
    whitening_images: int = 250
    heads: int = 6  # per-cell MLPs in the ensemble, each with its own initialisation and batch order; maps averaged
    spatial_heads: int = 4  # MLPs whose output layer is a 3×3 convolution over the hidden cell map (each cell reads its neighbours)
    stride32: bool = True  # append the stride-32 features (upsampled ×2) to each stride-16 cell
    aug_scales: tuple[float, ...] = (0.625, 0.8)  # also train on every training image scaled by these factors
    blank_frames: int = 8  # flat frames of as many grey levels added to every fit with count 0 (nobody there)
    mall_every: int = 3  # train on one Mall frame in this many (neighbouring frames at 2 fps are near-duplicates)

    def __post_init__(self) -> None:
        if self.heads < 0 or self.spatial_heads < 0 or self.heads + self.spatial_heads < 1:
            raise ValueError(f"the ensemble needs at least one MLP, not heads={self.heads} + spatial_heads={self.spatial_heads}")
        if self.mall_every < 1:
            raise ValueError(f"mall_every must be 1 or more (one Mall frame in that many), not {self.mall_every}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Part:
    """Some images of a feature bank with their counts."""

    bank: FeatureBank
    index: np.ndarray
    counts: np.ndarray


def _cells(part: Part, stride32: bool, batch: int = 16):
    for start in range(0, len(part.index), batch):
        idx = part.index[start:start + batch]
        feat32 = part.bank.feat32[idx] if stride32 else None
        yield cell_features(part.bank.feat8[idx], part.bank.feat16[idx], feat32)


def fit_whitening(parts: list[Part], cfg: TrainConfig, rng: np.random.Generator) -> Whitening:
    """PCA whitening fitted on a random sample of cells of (about ``whitening_images``) training images."""
    every = max(1, sum(len(p.index) for p in parts) // cfg.whitening_images)
    sampled = [Part(p.bank, p.index[::every], p.counts[::every]) for p in parts]
    per_image = max(1, cfg.whitening_cells // sum(len(p.index) for p in sampled))
    sample = []
    for part in sampled:
        for cells in _cells(part, cfg.stride32):
            for image_cells in cells:
                pick = rng.choice(len(image_cells), size=min(per_image, len(image_cells)), replace=False)
                sample.append(image_cells[pick])
    return Whitening.fit(np.concatenate(sample), cfg.components)


def grid(part: Part) -> tuple[int, int]:
    """(rows, cols) of the stride-16 cells of a part's images."""
    return tuple(part.bank.feat16.shape[2:])


def project(parts: list[Part], whitening: Whitening, stride32: bool = False) -> np.ndarray:
    """(images, cells, K) float32 whitened cells of all parts, in order."""
    out = [whitening(cells).astype(np.float32) for part in parts for cells in _cells(part, stride32)]
    return np.concatenate(out)


def fit_head(parts: list[Part], cfg: TrainConfig, scaled: list[list[Part]] = ()) -> DensityHead:
    """Train whitening + ``cfg.heads`` per-cell and ``cfg.spatial_heads`` spatial MLPs so that each training image's
    (averaged) map sums to its count.

    ``scaled`` holds the same training images at other scales (scale augmentation): their cells join
    the training, batches drawn within one scale; the whitening is fitted on ``parts`` only. The per-cell
    and the spatial members each draw as an ensemble of their one kind would: member 0 continues the
    whitening's random stream, member i draws its initialisation and batch order from the seed sequence
    (seed, i). A mixed ensemble is thus the members of the two single-kind ensembles, averaged.
    """
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    whitening = fit_whitening(parts, cfg, rng)
    groups = [(project(p, whitening, cfg.stride32), np.concatenate([q.counts for q in p]).astype(np.float64), _grid(p))
              for p in [parts, *scaled]]
    log.info("whitened %s images × cells in %.1f s", " + ".join(f"{z.shape[0]}×{z.shape[1]}" for z, *_ in groups),
             time.perf_counter() - start)
    after_whitening = rng.bit_generator.state
    members = [(kernel, i) for kernel, count in ((1, cfg.heads), (3, cfg.spatial_heads)) for i in range(count)]
    mlps = [train_mlp(groups, cfg, _member_rng(cfg.seed, i, after_whitening), kernel) for kernel, i in members]
    return DensityHead(whitening, mlps, stride32=cfg.stride32)


def _member_rng(seed: int, member: int, after_whitening: dict) -> np.random.Generator:
    if member:
        return np.random.default_rng([seed, member])
    rng = np.random.default_rng()
    rng.bit_generator.state = after_whitening
    return rng


def _grid(parts: list[Part]) -> tuple[int, int]:
    grids = {grid(p) for p in parts}
    if len(grids) != 1:
        raise ValueError(f"the images of one scale must share one cell grid, not {sorted(grids)}")
    return grids.pop()


def train_mlp(groups: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]], cfg: TrainConfig,
              rng: np.random.Generator, kernel: int = 1) -> Mlp:
    """Adam on a Huber loss of the count error (divided by sqrt(count + 1) when relative), cosine learning-rate decay.

    ``kernel`` is the output layer's kernel over the hidden cell map (1: per cell, 3: a spatial head).

    ``groups`` are (images, cells, K) whitened cells with their counts and cell grid, one per scale; a batch holds
    images of one group, and with several groups the batches of an epoch are shuffled together.
    """
    start = time.perf_counter()
    if cfg.loss not in ("relative", "absolute"):
        raise ValueError(f"loss must be 'relative' or 'absolute', not {cfg.loss!r}")
    z0, counts0, _ = groups[0]
    mlp = Mlp.init(cfg.components, cfg.hidden, rng, prior_density=float(counts0.mean() / z0.shape[1]), kernel=kernel)
    opt = Adam(cfg.lr, weight_decay=cfg.weight_decay)
    scales = [np.sqrt(c + 1.0) if cfg.loss == "relative" else np.ones_like(c) for _, c, _ in groups]
    steps = cfg.epochs * sum(-(-len(z) // cfg.batch_images) for z, _, _ in groups)
    images = sum(len(z) for z, _, _ in groups)
    step = 0
    for epoch in range(cfg.epochs):
        batches = []
        for g, (z, _, _) in enumerate(groups):
            order = rng.permutation(len(z))
            batches += [(g, np.sort(order[s:s + cfg.batch_images])) for s in range(0, len(order), cfg.batch_images)]
        if len(groups) > 1:
            batches = [batches[b] for b in rng.permutation(len(batches))]
        abs_err = 0.0
        for g, idx in batches:
            (z, counts, cells), scale = groups[g], scales[g]

            def dloss(pred: np.ndarray, idx=idx, counts=counts, scale=scale) -> np.ndarray:
                r = (pred - counts[idx]) / scale[idx]
                return np.clip(r, -cfg.huber_delta, cfg.huber_delta) / scale[idx] / len(idx)

            pred, grads = mlp.counts_and_grads(z[idx], dloss, cells)
            abs_err += float(np.abs(pred - counts[idx]).sum())
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / steps))  # cosine decay to zero
            opt.step(mlp.params(), grads, lr)
            step += 1
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            log.info("epoch %d: train MAE %.2f (%.0f s)", epoch + 1, abs_err / images, time.perf_counter() - start)
    return mlp


def predict_counts(head: DensityHead, part: Part) -> np.ndarray:
    rows_cols = grid(part)
    return np.concatenate([head.cell_density(head.whitening(cells), rows_cols).sum(axis=1)
                           for cells in _cells(part, head.stride32)])


def errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, mean relative error and the mean true count."""
    diff = pred - truth
    return {
        "images": len(truth),
        "mae": float(np.abs(diff).mean()),
        "rmse": float(np.sqrt((diff ** 2).mean())),
        "mean_rel_err": float((np.abs(diff) / np.maximum(truth, 1)).mean()),
        "mean_count": float(truth.mean()),
        "bias": float(diff.mean()),
    }
