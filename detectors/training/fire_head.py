"""Train and cross-validate the fire head (numpy only): L2 logistic regression on frozen OnFire features.

Features come from the registry's OnFire graph with its feature maps exposed
(:func:`detectors.fire_tuned.expose_features`); the fit is Newton's method (IRLS) on standardised
features, and the standardisation is folded into the exported weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.evaluation import BinaryScores, binary_scores
from detectors.fire_tuned import (
    FEATURE_SIZE,
    FEATURE_TENSORS,
    LOGIT_OUTPUT,
    blend_logits,
    expose_features,
    pooled_features,
)
from detectors.preprocess import to_tensor
from detectors.registry import InputSpec
from detectors.training.data import iter_images


@dataclass(frozen=True, slots=True)
class LinearHead:
    """``p = sigmoid(x · weights + bias)`` on raw :func:`pooled_features` vectors."""

    weights: np.ndarray
    bias: float

    def logit(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.weights + self.bias

    def predict(self, features: np.ndarray, blend: float = 1.0, offset: float = 0.0) -> np.ndarray:
        """P(fire) as the scorer computes it: head logit blended with OnFire's (the last feature), shifted."""
        z = blend_logits(self.logit(features), features[:, -1].astype(np.float64), blend, offset)
        return 1.0 / (1.0 + np.exp(-z))


def pool_views(per_view: np.ndarray, pool: str = "mean") -> np.ndarray:
    """(V, N, 513) per-view features → (N, 513): their mean (what the exported head computes), or with ``max`` the
    max over views of every pooled map feature, OnFire's logit still averaged (research: no exported graph)."""
    if pool == "mean":
        return per_view.mean(0)
    if pool != "max":
        raise ValueError(f"unknown view pooling {pool!r}: mean or max")
    out = per_view.max(0)
    out[:, -1] = per_view[:, :, -1].mean(0)
    return out


class FeatureExtractor:
    """Pooled OnFire features of BGR images, batched; with ``views``, of each test-time view (:data:`VIEWS`)."""

    def __init__(self, backbone_bytes: bytes, input_spec: InputSpec, intra_op_threads: int = 0,
                 views: Sequence[str] = ("O",), pool: str = "mean"):
        import onnx

        from detectors.runtime import ort_session

        model = expose_features(onnx.load_from_string(backbone_bytes), views)
        self.session = ort_session(model.SerializeToString(), intra_op_threads=intra_op_threads)
        self.input_spec = input_spec
        self.views = tuple(views)
        self.pool = pool
        self.outputs = [*FEATURE_TENSORS.values(), LOGIT_OUTPUT]

    def maps(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(conv5, stage4, nofire_logit) arrays for a batch of BGR images (V·N rows, view-major)."""
        tensor, _ = to_tensor(images, self.input_spec)
        conv5, stage4, logit = self.session.run(self.outputs, {self.input_spec.name: tensor})
        return conv5, stage4, logit

    def view_features(self, images: Iterable[np.ndarray], batch: int = 16) -> np.ndarray:
        """(V, N, 513) pooled feature vectors of every view."""
        out, chunk = [], []
        for image in images:
            chunk.append(image)
            if len(chunk) == batch:
                out.append(pooled_features(*self.maps(chunk)).reshape(len(self.views), len(chunk), FEATURE_SIZE))
                chunk = []
        if chunk:
            out.append(pooled_features(*self.maps(chunk)).reshape(len(self.views), len(chunk), FEATURE_SIZE))
        return np.concatenate(out, axis=1) if out else np.zeros((len(self.views), 0, FEATURE_SIZE), np.float32)

    def features(self, images: Iterable[np.ndarray], batch: int = 16) -> np.ndarray:
        """(N, 513) pooled feature vectors, pooled over the views (:func:`pool_views`)."""
        return pool_views(self.view_features(images, batch), self.pool)


def fit_rows(rows: np.ndarray, labels: np.ndarray, items: np.ndarray, l2: float) -> LinearHead:
    """The head fitted on ``items`` (a mask or indices) of ``rows``: (N, 513), or (C, N, 513) with one training
    row per copy of each item (e.g. its test-time views, all in that item's fold)."""
    if rows.ndim == 2:
        return fit_logistic(rows[items], labels[items], l2)
    picked = rows[:, items]
    return fit_logistic(picked.reshape(-1, picked.shape[-1]), np.tile(labels[items], len(rows)), l2)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float, iterations: int = 100) -> LinearHead:
    """L2-regularised logistic regression by Newton's method on standardised features (bias unpenalised)."""
    x = features.astype(np.float64)
    y = labels.astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    w = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    weights = w[:-1] / std
    return LinearHead(weights=weights, bias=float(w[-1] - weights @ mean))


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per item: each class shuffled with ``seed`` and dealt round-robin into ``k`` folds."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=int)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        folds[idx] = np.arange(len(idx)) % k
    return folds


@dataclass(frozen=True, slots=True)
class FoldResult:
    repeat: int
    fold: int
    head: BinaryScores  # the head trained on the other folds
    baseline: BinaryScores  # OnFire alone on the same images


def cross_validate(features: np.ndarray, labels: np.ndarray, *, folds: int, repeats: int, seed: int, l2: float,
                   threshold: float, blend: float = 1.0, offset: float = 0.0,
                   train_rows: np.ndarray | None = None) -> tuple[list[FoldResult], np.ndarray]:
    """Stratified k-fold CV, repeated with seeds ``seed .. seed+repeats-1``.

    Returns the per-fold figures and the out-of-fold P(fire) per repeat, shape (repeats, N): every
    image is scored by a head that never saw it. ``train_rows`` (C, N, 513): fit on these copies of the
    training images instead of ``features`` (see :func:`fit_rows`).
    """
    rows = features if train_rows is None else train_rows
    baseline_p = 1.0 / (1.0 + np.exp(features[:, -1].astype(np.float64)))  # OnFire's P(fire) = sigmoid(-logit)
    y = labels.astype(bool)
    results: list[FoldResult] = []
    oof = np.zeros((repeats, len(y)))
    for r in range(repeats):
        assign = stratified_folds(y, folds, seed + r)
        for f in range(folds):
            test = assign == f
            head = fit_rows(rows, y, ~test, l2)
            oof[r, test] = head.predict(features[test], blend, offset)
            results.append(FoldResult(r, f, binary_scores(y[test].tolist(), oof[r, test].tolist(), threshold),
                                      binary_scores(y[test].tolist(), baseline_p[test].tolist(), threshold)))
    return results, oof


@dataclass(frozen=True, slots=True)
class CheckSet:
    """The does-not-break images: pooled features and whether each must score as fire."""

    features: np.ndarray  # (M, 513)
    must_fire: np.ndarray  # (M,) bool: True → P(fire) ≥ threshold, False → below it
    names: tuple[str, ...]


def check_images(shared: Path, furg_every: int = 10) -> tuple[list[np.ndarray], np.ndarray, tuple[str, ...]]:
    """The does-not-break images (BGR), whether each must score as fire, and their names.

    testdata fire photos (except the known early-fire miss f0221) and every ``furg_every``-th FURG house6 frame
    must score as fire; testdata non-fire and vtest frames must not (docs/accuracy.md, "Does not break")."""
    import av

    fire = [p for p in sorted((shared / "testdata" / "fire").glob("*")) if "f0221" not in p.name]
    nonfire = sorted((shared / "testdata" / "nonfire").glob("*")) + sorted((shared / "testdata" / "vtest").glob("*.jpg"))
    with av.open(str(shared / "data" / "fire" / "furg" / "house6.mp4")) as container:
        furg = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % furg_every == 0]
    testdata = shared / "testdata"
    images = [*iter_images(testdata, [str(p.relative_to(testdata)) for p in fire + nonfire]), *furg]
    must = np.r_[np.ones(len(fire), bool), np.zeros(len(nonfire), bool), np.ones(len(furg), bool)]
    names = tuple(p.name for p in fire + nonfire) + tuple(f"house6#{i * furg_every}" for i in range(len(furg)))
    return images, must, names


def load_checks(shared: Path, extractor: FeatureExtractor, furg_every: int = 10) -> CheckSet:
    """The does-not-break images (:func:`check_images`) as pooled features."""
    images, must, names = check_images(shared, furg_every)
    return CheckSet(extractor.features(images), must, names)


BLEND_GRID = tuple(round(b, 2) for b in np.arange(0.0, 1.001, 0.05))
OFFSET_GRID = tuple(round(c, 2) for c in np.arange(-3.0, 3.001, 0.25))


def select_blend(head_logits: np.ndarray, nofire: np.ndarray, labels: np.ndarray, check_head: np.ndarray,
                 checks: CheckSet, threshold: float, max_fpr: float = 0.05) -> tuple[float, float]:
    """(blend, offset) on the grid with the best F1 at FPR ≤ ``max_fpr`` among those that keep every check.

    ``head_logits``: out-of-fold head logits of the labelled images; ``check_head``: the head's logits on the
    checks. Falls back to the best F1 (any FPR) when no setting meets ``max_fpr``; errors when none keeps the checks.
    """
    cut = float(np.log(threshold / (1.0 - threshold)))
    check_nofire = checks.features[:, -1].astype(np.float64)
    best: tuple[float, float, float] | None = None
    for blend in BLEND_GRID:
        for offset in OFFSET_GRID:
            if not ((blend_logits(check_head, check_nofire, blend, offset) >= cut) == checks.must_fire).all():
                continue
            s = binary_scores(labels.tolist(), blend_logits(head_logits, nofire, blend, offset).tolist(), cut)
            key = s.f1 - (0.0 if s.fpr <= max_fpr else 1.0)
            if best is None or key > best[0]:
                best = (key, blend, offset)
    if best is None:
        raise ValueError("no blend/offset on the grid keeps every does-not-break check")
    return best[1], best[2]


def out_of_fold_logits(features: np.ndarray, labels: np.ndarray, *, folds: int, seed: int, l2: float,
                       train_rows: np.ndarray | None = None) -> np.ndarray:
    """Head logits of every item from a head fitted on the other folds (one stratified split)."""
    rows = features if train_rows is None else train_rows
    assign = stratified_folds(labels, folds, seed)
    out = np.zeros(len(labels))
    for f in range(folds):
        test = assign == f
        out[test] = fit_rows(rows, labels, ~test, l2).logit(features[test])
    return out


def nested_selection(features: np.ndarray, labels: np.ndarray, checks: CheckSet, *, folds: int, repeats: int,
                     seed: int, l2: float, threshold: float,
                     train_rows: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[float, float] | None]]:
    """What picking (blend, offset) by :func:`select_blend` is worth on unseen images.

    Per outer fold: inner out-of-fold logits of the training part, a pick under the checks with the head fitted
    on that part, then the outer fold scored with that pick. Returns P(fire) per repeat (repeats, N) and the picks
    (None where no setting kept every check: that fold is scored by OnFire alone, as the scorer would fall back).
    """
    y = labels.astype(bool)
    nofire = features[:, -1].astype(np.float64)
    oof = np.zeros((repeats, len(y)))
    picks: list[tuple[float, float]] = []
    for r, test, train, inner, head in _outer_folds(features, y, folds, repeats, seed, l2, train_rows):
        try:
            blend, offset = select_blend(inner, nofire[train], y[train], head.logit(checks.features), checks,
                                         threshold)
            picks.append((float(blend), float(offset)))
        except ValueError:  # no setting keeps the checks: this fold gets OnFire alone (blend 0, offset 0)
            blend, offset = 0.0, 0.0
            picks.append(None)
        oof[r, test] = head.predict(features[test], blend, offset)
    return oof, picks


INNER_SEED_OFFSET = 100  # nested CV's inner split of repeat r is seeded seed + 100 + r


def fold_masks(labels: np.ndarray, folds: int, seed: int, repeat: int, fold: int,
               inner: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training mask, held-out mask) over all items for outer ``fold`` of ``repeat`` (−1: nothing held out), or,
    with ``inner``, for that inner fold of nested CV's split of the outer training part."""
    outer = stratified_folds(labels, folds, seed + repeat) == fold if fold >= 0 else np.zeros(len(labels), bool)
    if inner is None:
        return ~outer, outer
    train = np.flatnonzero(~outer)
    held = np.zeros(len(labels), bool)
    held[train[stratified_folds(labels[train], folds, seed + INNER_SEED_OFFSET + repeat) == inner]] = True
    return ~outer & ~held, held


def _outer_folds(features: np.ndarray, y: np.ndarray, folds: int, repeats: int, seed: int, l2: float,
                 train_rows: np.ndarray | None):
    """Nested CV's outer loop: (repeat, test mask, train mask, inner out-of-fold logits of the training part,
    head fitted on the training part) per outer fold."""
    rows = features if train_rows is None else train_rows
    for r in range(repeats):
        for f in range(folds):
            train, test = fold_masks(y, folds, seed, r, f)
            inner = out_of_fold_logits(features[train], y[train], folds=folds, seed=seed + INNER_SEED_OFFSET + r, l2=l2,
                                       train_rows=rows[..., train, :])
            yield r, test, train, inner, fit_rows(rows, y, train, l2)


THRESHOLD_SHIFTS = tuple(round(c, 2) for c in np.arange(-6.0, 6.001, 0.25))


def pick_shift(logits: np.ndarray, labels: np.ndarray, max_fpr: float = 0.05) -> float:
    """The logit shift (a threshold: p ≥ 0.5 after shifting) with the best F1 at FPR ≤ ``max_fpr`` (else best F1)."""
    best: tuple[float, float] | None = None
    for shift in THRESHOLD_SHIFTS:
        s = binary_scores(labels.tolist(), (logits + shift).tolist(), 0.0)
        key = s.f1 - (0.0 if s.fpr <= max_fpr else 1.0)
        if best is None or key > best[0]:
            best = (key, shift)
    return best[1]


def nested_threshold(features: np.ndarray, labels: np.ndarray, *, folds: int, repeats: int, seed: int, l2: float,
                     blend: float, offset: float,
                     train_rows: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """The scorer with a threshold picked in-fold instead of a fixed 0.5 (the does-not-break checks not applied).

    Per outer fold: inner out-of-fold scores of the training part give the shift (:func:`pick_shift`), the head
    fitted on that part scores the outer fold shifted. Returns P(fire) per repeat (repeats, N) and the shifts.
    """
    y = labels.astype(bool)
    nofire = features[:, -1].astype(np.float64)
    oof = np.zeros((repeats, len(y)))
    shifts: list[float] = []
    for r, test, train, inner, head in _outer_folds(features, y, folds, repeats, seed, l2, train_rows):
        shift = pick_shift(blend_logits(inner, nofire[train], blend, offset), y[train])
        shifts.append(shift)
        z = blend_logits(head.logit(features[test]), nofire[test], blend, offset + shift)
        oof[r, test] = 1.0 / (1.0 + np.exp(-z))
    return oof, shifts
