"""The tuned fire scorer: exported head = reference computation, test-image expectations, hard negatives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.fire_tuned import (
    FEATURE_SIZE,
    HEAD_INPUTS,
    OUTPUT,
    blend_logits,
    build_head,
    pooled_features,
)
from detectors.training.fire_head import cross_validate, fit_logistic, stratified_folds
from tests.plugins.shared import shared_path


def _random_head(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.05, FEATURE_SIZE), float(rng.normal())


@pytest.mark.parametrize(("blend", "offset"), [(1.0, 0.0), (0.3, 0.0), (0.8, 1.5)])
def test_exported_head_equals_reference(blend, offset):
    import onnxruntime as ort

    weights, bias = _random_head()
    head = build_head(weights, bias, blend, offset=offset)
    session = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    conv5 = rng.random((3, 64, 7, 7), dtype=np.float32) * 4
    stage4 = rng.normal(size=(3, 192, 7, 7)).astype(np.float32)
    logit = rng.normal(size=(3, 1)).astype(np.float32) * 3
    got = session.run([OUTPUT], dict(zip(HEAD_INPUTS, (conv5, stage4, logit))))[0][:, 0]
    z = blend_logits(pooled_features(conv5, stage4, logit).astype(np.float64) @ weights + bias, logit[:, 0], blend,
                     offset)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-4, atol=1e-6)


def test_merged_model_equals_features_then_head():
    """Backbone + head merged in one graph give the same P(fire) as features extracted and scored apart."""
    import cv2

    from detectors.fire_tuned import TunedFireScorer
    from detectors.registry import ModelRegistry
    from detectors.training.fire_head import FeatureExtractor, LinearHead

    backbone = shared_path("models", "shufflenetv2_onfire_224.onnx")
    images = [cv2.imread(str(p)) for p in sorted(shared_path("testdata", "fire").glob("*"))[:3]]
    spec = ModelRegistry.load().spec("shufflenetv2_onfire_224").input
    weights, bias = _random_head(2)
    head_file = _tmp_head(weights, bias, 0.8, 1.5)
    merged = TunedFireScorer.from_files(backbone, head_file, spec).probabilities(images)
    features = FeatureExtractor(backbone.read_bytes(), spec).features(images)
    np.testing.assert_allclose(merged, LinearHead(weights, bias).predict(features, 0.8, 1.5), rtol=1e-4, atol=1e-5)


def _tmp_head(weights, bias, blend, offset):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "head.onnx"
    path.write_bytes(build_head(weights, bias, blend, offset=offset).SerializeToString())
    return path


def test_logistic_fit_separates_and_folds_are_stratified():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(-1, 1, (80, 5)), rng.normal(1.5, 1, (20, 5))])
    y = np.r_[np.zeros(80, bool), np.ones(20, bool)]
    head = fit_logistic(x, y, l2=0.1)
    x_aug = np.hstack([x, np.zeros((100, 1))])  # predict() reads the last column as OnFire's logit
    accuracy = ((LinearHeadShim(head).predict(x_aug) >= 0.5) == y).mean()
    assert accuracy > 0.9
    folds = stratified_folds(y, 5, seed=3)
    assert all((y[folds == f]).sum() == 4 and (folds == f).sum() == 20 for f in range(5))


class LinearHeadShim:
    def __init__(self, head):
        self.head = head

    def predict(self, x):
        return 1 / (1 + np.exp(-(x[:, :-1] @ self.head.weights + self.head.bias)))


@pytest.fixture(scope="module")
def tuned_scorer():
    from detectors.fire_tuned import TunedFireScorer
    from detectors.registry import ModelRegistry
    from detectors.runtime import Runtime
    from detectors.settings import FireSettings

    shared_path("models", "shufflenetv2_onfire_224.onnx")
    return TunedFireScorer.from_registry(ModelRegistry.load(), FireSettings(scorer="tuned"), Runtime())


def test_committed_head_on_testdata(tuned_scorer):
    """Fire test images ≥ 0.5 (except the known early-fire miss f0221), non-fire < 0.5."""
    import cv2

    fire = [p for p in sorted(shared_path("testdata", "fire").glob("*")) if "f0221" not in p.name]
    nonfire = sorted(shared_path("testdata", "nonfire").glob("*")) + sorted(shared_path("testdata", "vtest").glob("*.jpg"))
    p_fire = tuned_scorer.probabilities([cv2.imread(str(p)) for p in fire])
    p_non = tuned_scorer.probabilities([cv2.imread(str(p)) for p in nonfire])
    assert len(fire) == 5 and len(nonfire) == 11
    assert (p_fire >= 0.5).all(), dict(zip([p.name for p in fire], p_fire.round(3)))
    assert (p_non < 0.5).all(), dict(zip([p.name for p in nonfire], p_non.round(3)))


def test_hard_negatives_cross_validated():
    """On CAIR dev, heads never trained on the images they score cut OnFire's false alarms to a third at equal recall."""
    from detectors.registry import ModelRegistry
    from detectors.training.data import iter_images
    from detectors.training.fire_head import FeatureExtractor

    folder = shared_path("data", "fire", "cair_dev")
    labels = json.loads((folder / "labels.json").read_text())
    names = sorted(labels)
    y = np.array([labels[n] == "fire" for n in names])
    spec = ModelRegistry.load().spec("shufflenetv2_onfire_224").input
    x = FeatureExtractor(shared_path("models", "shufflenetv2_onfire_224.onnx").read_bytes(), spec).features(
        iter_images(folder / "images", names))
    _, oof = cross_validate(x, y, folds=5, repeats=1, seed=0, l2=0.3, threshold=0.5, blend=0.8, offset=1.5)
    onfire = 1 / (1 + np.exp(x[:, -1].astype(np.float64)))
    fp_head, fp_onfire = (oof[0][~y] >= 0.5).sum(), (onfire[~y] >= 0.5).sum()
    recall_head, recall_onfire = (oof[0][y] >= 0.5).mean(), (onfire[y] >= 0.5).mean()
    assert fp_onfire >= 40 and fp_head <= fp_onfire / 3, (fp_head, fp_onfire)
    assert recall_head >= recall_onfire - 0.05, (recall_head, recall_onfire)


def test_house6_clip_detected(tuned_scorer):
    """FURG house6 (fire in every frame): every 30th frame scores ≥ 0.5."""
    import av

    with av.open(str(shared_path("data", "fire", "furg", "house6.mp4"))) as container:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % 30 == 0]
    p = tuned_scorer.probabilities(frames)
    assert len(frames) == 30 and (p >= 0.5).all(), p.round(3)


def test_select_blend_keeps_the_checks():
    """The pick is the best labelled F1 only among settings whose check images land on the right side."""
    from detectors.training.fire_head import CheckSet, select_blend

    rng = np.random.default_rng(4)
    y = np.r_[np.ones(40, bool), np.zeros(160, bool)]
    head = np.where(y, 3.0, -3.0) + rng.normal(0, 1, 200)  # the head separates the labelled images
    nofire = np.where(y, -1.0, 1.0) * 2 + rng.normal(0, 3, 200)  # OnFire's logit separates them poorly
    free, _ = select_blend(head, nofire, y, np.zeros(0), CheckSet(np.zeros((0, FEATURE_SIZE)), np.zeros(0, bool), ()), 0.5)
    # a check fire image scored −20 by the head and +1 by OnFire (nofire_logit −1): only blends ≤ 0.19 keep it
    check = CheckSet(np.full((1, FEATURE_SIZE), -1.0), np.ones(1, bool), ("check",))
    blend, offset = select_blend(head, nofire, y, np.array([-20.0]), check, 0.5)
    assert blend * -20.0 + (1 - blend) * 1.0 + offset >= 0
    assert blend <= 0.19 < free


def test_nested_selection_scores_every_image_out_of_fold():
    from detectors.training.fire_head import CheckSet, nested_selection

    rng = np.random.default_rng(5)
    y = np.r_[np.ones(30, bool), np.zeros(90, bool)]
    x = rng.normal(0, 1, (120, FEATURE_SIZE))
    x[:, :5] += y[:, None] * 2.0
    checks = CheckSet(np.zeros((0, FEATURE_SIZE)), np.zeros(0, bool), ())
    p, picks = nested_selection(x, y, checks, folds=3, repeats=1, seed=0, l2=3.0, threshold=0.5)
    assert p.shape == (1, 120) and len(picks) == 3
    assert ((p[0] >= 0.5) == y).mean() > 0.85


def test_train_fire_command_writes_the_blended_head(tmp_path):
    """`guanjia models train-fire` with one repeat: figures as JSON and a head carrying blend and offset."""
    import onnx
    from click.testing import CliRunner

    from pipeline.cli.train_fire_cmd import train_fire

    shared_path("data", "fire", "cair_dev")
    result = CliRunner().invoke(train_fire, ["--repeats", "1", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert (figures["blend"], figures["offset"]) == (0.8, 1.5)
    assert figures["cv"]["0.5"]["fpr"] < figures["baseline"]["0.5"]["fpr"] / 2
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "fire_head.onnx")).metadata_props}
    assert (meta["blend"], meta["offset"]) == ("0.8", "1.5")


def test_head_over_views_equals_the_mean_of_view_features():
    """With several test-time views the head averages the pooled features of the V·N view-major rows, then scores."""
    import onnxruntime as ort

    weights, bias = _random_head(3)
    views = ("O", "F", "c")
    session = ort.InferenceSession(build_head(weights, bias, 0.8, offset=1.5, views=views).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(6)
    conv5 = rng.random((3 * 2, 64, 7, 7), dtype=np.float32) * 4
    stage4 = rng.normal(size=(3 * 2, 192, 7, 7)).astype(np.float32)
    logit = rng.normal(size=(3 * 2, 1)).astype(np.float32) * 3
    got = session.run([OUTPUT], dict(zip(HEAD_INPUTS, (conv5, stage4, logit))))[0][:, 0]
    features = pooled_features(conv5, stage4, logit).astype(np.float64).reshape(3, 2, FEATURE_SIZE).mean(0)
    z = blend_logits(features @ weights + bias, features[:, -1], 0.8, 1.5)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-4, atol=1e-6)


def test_views_are_the_flipped_and_cropped_input():
    """View F scores exactly the mirrored image; view c the stretched frame's centre 0.8 crop (bilinear, ≈)."""
    import cv2

    from detectors.registry import ModelRegistry
    from detectors.training.fire_head import FeatureExtractor

    backbone = shared_path("models", "shufflenetv2_onfire_224.onnx").read_bytes()
    spec = ModelRegistry.load().spec("shufflenetv2_onfire_224").input
    images = [cv2.imread(str(p)) for p in sorted(shared_path("testdata", "fire").glob("*"))[:2]]
    per_view = FeatureExtractor(backbone, spec, views=("O", "F", "c")).view_features(images)
    plain = FeatureExtractor(backbone, spec)
    assert per_view.shape == (3, 2, FEATURE_SIZE)
    np.testing.assert_allclose(per_view[0], plain.features(images), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(per_view[1], plain.features([cv2.flip(i, 1) for i in images]), rtol=1e-4, atol=1e-3)
    centre = plain.features([cv2.resize(cv2.resize(i, (224, 224))[22:201, 22:201], (224, 224)) for i in images])
    assert np.abs(per_view[2] - centre).max() < 0.05 * np.abs(centre).max()
    assert np.abs(per_view[0] - centre).max() > 0.1 * np.abs(centre).max()


def test_unknown_view_is_rejected():
    from detectors.fire_tuned import view_nodes

    with pytest.raises(ValueError, match="unknown test-time views"):
        view_nodes("input", "views", ("O", "zoom"))


def test_training_copies_stay_in_their_fold():
    """fit_rows with copies: one row per copy of the chosen items only; a single copy equals the plain fit."""
    from detectors.training.fire_head import fit_rows

    rng = np.random.default_rng(7)
    y = np.r_[np.ones(20, bool), np.zeros(60, bool)]
    x = rng.normal(0, 1, (80, 6)) + y[:, None]
    items = np.arange(80) % 4 != 0
    single = fit_rows(x[None], y, items, 0.3)
    np.testing.assert_allclose(single.weights, fit_logistic(x[items], y[items], 0.3).weights)
    shifted = x + rng.normal(0, 0.3, x.shape)
    copies = np.stack([x, shifted])
    copies[:, ~items] = 1e6  # held-out items (and their copies) must never reach the fit
    expected = fit_logistic(np.concatenate([x[items], shifted[items]]), np.tile(y[items], 2), 0.3)
    np.testing.assert_allclose(fit_rows(copies, y, items, 0.3).weights, expected.weights)


def test_pool_views_max_keeps_onfire_logit_averaged():
    from detectors.training.fire_head import pool_views

    per_view = np.array([[[1.0, -2.0, 4.0]], [[3.0, -5.0, 0.0]]])  # 2 views, 1 image, 2 features + logit
    np.testing.assert_allclose(pool_views(per_view), [[2.0, -3.5, 2.0]])
    np.testing.assert_allclose(pool_views(per_view, "max"), [[3.0, -2.0, 2.0]])
    with pytest.raises(ValueError, match="unknown view pooling"):
        pool_views(per_view, "median")


def test_nested_threshold_moves_a_biased_head_back():
    """A scorer whose logits sit 4 too low misses every fire at 0.5; the in-fold threshold recovers them."""
    from detectors.training.fire_head import nested_threshold, pick_shift

    rng = np.random.default_rng(8)
    y = np.r_[np.ones(30, bool), np.zeros(90, bool)]
    assert 2.0 <= pick_shift(np.where(y, -2.0, -6.0), y) < 6.0  # any shift in [2, 6) separates these
    x = rng.normal(0, 1, (120, 8))  # the last column plays OnFire's logit
    x[:, :5] += y[:, None] * 2.0
    p, shifts = nested_threshold(x, y, folds=3, repeats=1, seed=0, l2=3.0, blend=1.0, offset=-4.0)
    assert p.shape == (1, 120) and len(shifts) == 3 and min(shifts) >= 2.0
    assert ((p[0] >= 0.5) == y).mean() > 0.85


def test_nested_fold_without_a_pick_falls_back_to_onfire():
    """Contradictory checks (the same image must and must not fire): no pick, every fold scored by OnFire alone."""
    from detectors.training.fire_head import CheckSet, nested_selection

    rng = np.random.default_rng(9)
    y = np.r_[np.ones(15, bool), np.zeros(45, bool)]
    x = rng.normal(0, 1, (60, 8))  # the last column plays OnFire's logit
    contradictory = CheckSet(np.zeros((2, 8)), np.array([True, False]), ("a", "a again"))
    p, picks = nested_selection(x, y, contradictory, folds=3, repeats=1, seed=0, l2=3.0, threshold=0.5)
    assert picks == [None, None, None]
    np.testing.assert_allclose(p[0], 1 / (1 + np.exp(x[:, -1])))


def test_fold_masks_split_outer_folds_and_their_inner_folds_as_nested_cv_does():
    from detectors.training.fire_head import INNER_SEED_OFFSET, fold_masks

    y = np.r_[np.ones(13, bool), np.zeros(40, bool)]
    held = [fold_masks(y, 5, seed=2, repeat=1, fold=f)[1] for f in range(5)]
    assert (np.sum(held, axis=0) == 1).all()  # the outer folds partition the items
    np.testing.assert_array_equal(held[3], stratified_folds(y, 5, seed=3) == 3)
    train, test = fold_masks(y, 5, seed=2, repeat=1, fold=3)
    inner = [fold_masks(y, 5, seed=2, repeat=1, fold=3, inner=k) for k in range(5)]
    assert all(not (h & test).any() and not (t & test).any() and not (t & h).any() for t, h in inner)
    np.testing.assert_array_equal(np.sum([h for _, h in inner], axis=0), train)  # inner folds partition the outer training part
    expected = stratified_folds(y[train], 5, seed=2 + INNER_SEED_OFFSET + 1) == 4
    np.testing.assert_array_equal(inner[4][1][train], expected)
    everything, nothing = fold_masks(y, 5, seed=2, repeat=0, fold=-1)
    assert everything.all() and not nothing.any()
