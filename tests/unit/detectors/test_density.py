"""The density head: ONNX export equals the training-time forward pass; the estimator counts SHB crowds sanely."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from detectors.base import CrowdEstimate
from detectors.density import DENSITY_OUTPUT, FEATURE_OUTPUTS, letterbox
from detectors.settings import Zone
from detectors.training.export import head_to_onnx
from detectors.training.head import (
    DensityHead,
    Mlp,
    Whitening,
    average_pool,
    cell_features,
    space_to_depth,
)
from detectors.zones import ZoneCounter
from tests.plugins.shared import shared_path


def _random_head(rng: np.random.Generator, k: int = 16, hidden: int = 8, members: int = 1,
                 stride32: bool = False, kernel: int = 1) -> DensityHead:
    f32 = rng.normal(size=(2, 128, 3, 4)) if stride32 else None
    sample = cell_features(rng.normal(size=(2, 128, 12, 16)), rng.normal(size=(2, 128, 6, 8)), f32)
    sample = sample.reshape(-1, sample.shape[-1])
    whitening = Whitening.fit(np.concatenate([sample, rng.normal(size=(2000, sample.shape[-1]))]), k)
    mlps = [Mlp.init(k, hidden, rng, prior_density=0.05, kernel=kernel) for _ in range(members)]
    for mlp in mlps:
        mlp.w2 *= 20  # make the output depend visibly on the input
    return DensityHead(whitening, mlps, stride32=stride32)


def _run_head(model, feat8: np.ndarray, feat16: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([DENSITY_OUTPUT], dict(zip(FEATURE_OUTPUTS, (feat8, feat16))))[0]


def test_exported_head_matches_reference_forward_pass():
    rng = np.random.default_rng(3)
    head = _random_head(rng)
    feat8 = rng.normal(size=(2, 128, 20, 28)).astype(np.float32)
    feat16 = rng.normal(size=(2, 128, 10, 14)).astype(np.float32)
    onnx_map = _run_head(head_to_onnx(head, {"stride": 16}), feat8, feat16)
    reference = head.density(feat8, feat16)
    assert onnx_map.shape == reference.shape == (2, 1, 10, 14)
    assert reference.std() > 1e-3
    np.testing.assert_allclose(onnx_map, reference, rtol=1e-4, atol=1e-5)


def test_exported_ensemble_is_the_mean_of_its_members_maps():
    rng = np.random.default_rng(4)
    head = _random_head(rng, members=3)
    feat8 = rng.normal(size=(1, 128, 16, 24)).astype(np.float32)
    feat16 = rng.normal(size=(1, 128, 8, 12)).astype(np.float32)
    onnx_map = _run_head(head_to_onnx(head, {"stride": 16}), feat8, feat16)
    members = [DensityHead(head.whitening, [m]).density(feat8, feat16) for m in head.mlps]
    assert np.abs(members[0] - members[1]).max() > 1e-2  # the members differ, so the mean is a real test
    np.testing.assert_allclose(onnx_map, np.mean(members, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_map, head.density(feat8, feat16), rtol=1e-4, atol=1e-5)


def test_exported_stride32_head_reads_feat32_upsampled_like_the_reference():
    rng = np.random.default_rng(5)
    head = _random_head(rng, members=2, stride32=True)
    feat8 = rng.normal(size=(1, 128, 16, 24)).astype(np.float32)
    feat16 = rng.normal(size=(1, 128, 8, 12)).astype(np.float32)
    feat32 = rng.normal(size=(1, 128, 4, 6)).astype(np.float32)
    model = head_to_onnx(head, {"stride": 16})
    assert [i.name for i in model.graph.input] == ["feat8", "feat16", "feat32"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_map = session.run([DENSITY_OUTPUT], {"feat8": feat8, "feat16": feat16, "feat32": feat32})[0]
    reference = head.density(feat8, feat16, feat32)
    np.testing.assert_allclose(onnx_map, reference, rtol=1e-4, atol=1e-5)
    moved = feat32.copy()
    moved[0, :, 1, 2] += 3.0  # one stride-32 cell feeds exactly the 2×2 stride-16 cells under it
    changed = np.abs(head.density(feat8, feat16, moved) - reference)[0, 0] > 1e-6
    assert changed[2:4, 4:6].all() and changed.sum() == 4


def test_exported_mixed_ensemble_centres_the_per_cell_members_in_the_spatial_kernel():
    rng = np.random.default_rng(8)
    spatial = _random_head(rng, members=1, kernel=3)
    per_cell = _random_head(rng, members=2)
    head = DensityHead(spatial.whitening, per_cell.mlps + spatial.mlps)
    feat8 = rng.normal(size=(2, 128, 16, 24)).astype(np.float32)
    feat16 = rng.normal(size=(2, 128, 8, 12)).astype(np.float32)
    model = head_to_onnx(head, {"stride": 16})
    w2 = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "w2")
    assert w2.shape == (3, 8, 3, 3) and not w2[:2, :, [0, 2], :].any() and not w2[:2, :, :, [0, 2]].any()
    np.testing.assert_allclose(_run_head(model, feat8, feat16), head.density(feat8, feat16), rtol=1e-4, atol=1e-5)


def test_exported_spatial_head_convolves_the_hidden_map_like_the_reference():
    rng = np.random.default_rng(6)
    head = _random_head(rng, members=2, kernel=3)
    feat8 = rng.normal(size=(2, 128, 16, 24)).astype(np.float32)
    feat16 = rng.normal(size=(2, 128, 8, 12)).astype(np.float32)
    model = head_to_onnx(head, {"stride": 16})
    assert [list(i.dims) for i in model.graph.initializer if i.name == "w2"] == [[2, 8, 3, 3]]
    onnx_map = _run_head(model, feat8, feat16)
    reference = head.density(feat8, feat16)
    np.testing.assert_allclose(onnx_map, reference, rtol=1e-4, atol=1e-5)
    moved = feat16.copy()
    moved[1, :, 0, 5] += 3.0  # one stride-16 cell on the top edge: its hidden units reach the 3×3 cells around it
    changed = np.abs(head.density(feat8, moved) - reference) > 1e-6
    assert not changed[0].any()
    # the 5×5 context mean spreads the change to 5×5 cells, the 3×3 output layer to 7×7 (clipped at the top edge)
    rows, cols = np.nonzero(changed[1, 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 3, 2, 8)


@pytest.mark.shared
def test_merged_graph_cuts_the_backbone_at_the_features_the_head_reads():
    import onnx

    from detectors.density import cut_backbone, merge_backbone_and_head

    backbone = onnx.load(shared_path("models", "yolox_nano_coco_416.onnx"))
    with pytest.raises(ValueError, match="unknown backbone feature"):
        cut_backbone(backbone, ["feat4"])
    rng = np.random.default_rng(6)
    image = rng.integers(0, 255, (3, 256, 320)).astype(np.float32)[None]
    for stride32 in (False, True):
        merged = merge_backbone_and_head(backbone, head_to_onnx(_random_head(rng, stride32=stride32), {}))
        outputs = [o.name for o in merged.graph.output]
        (density,) = ort.InferenceSession(merged.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            outputs, {"images": image})
        assert outputs == [DENSITY_OUTPUT] and density.shape == (1, 1, 16, 20)


def test_space_to_depth_and_context_pooling_follow_onnx_semantics():
    import onnx
    from onnx import TensorProto, helper

    x8 = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6)
    x16 = np.random.default_rng(0).normal(size=(1, 3, 5, 7)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["a"], ["s"], blocksize=2),
         helper.make_node("AveragePool", ["b"], ["p"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], count_include_pad=0)],
        "ops", [helper.make_tensor_value_info("a", TensorProto.FLOAT, None),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    s, p = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": x8, "b": x16})
    np.testing.assert_array_equal(space_to_depth(x8), s)
    np.testing.assert_allclose(average_pool(x16), p, rtol=1e-5, atol=1e-6)
    assert onnx.__version__


def test_letterbox_scales_long_side_and_pads_to_multiple_of_32():
    image = np.full((480, 640, 3), 7, np.uint8)
    tensor, box = letterbox(image, 1000)
    assert (box.width, box.height, box.input_width, box.input_height) == (1000, 750, 1024, 768)
    assert tensor.shape == (3, 768, 1024) and tensor.dtype == np.float32
    assert tensor[0, 749, 999] == 7 and tensor[0, 750, 0] == 114 and tensor[0, 0, 1000] == 114


def test_zone_sums_of_a_synthetic_density_map():
    density = np.zeros((48, 64), np.float32)  # a 1024×768 frame at 16 px per cell
    density[:, :32] = 0.01  # left half: 15.36 people
    density[10, 40] = 5.0  # one dense cell in the right half
    zones = [Zone(name="left", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]),
             Zone(name="right", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])]
    counts = {z.zone: z.count for z in ZoneCounter(zones).count(CrowdEstimate(np.zeros((0, 5)), density, 16.0), 768, 1024)[0]}
    assert counts["*"] == pytest.approx(20.36, abs=1e-3)
    assert counts["left"] == pytest.approx(15.36, abs=1e-3)
    assert counts["right"] == pytest.approx(5.0, abs=1e-3)


@pytest.fixture(scope="module")
def estimator():
    from detectors.density import DensityEstimator
    from detectors.registry import ModelError, ModelRegistry
    from detectors.runtime import Runtime
    from detectors.settings import CrowdSettings

    shared_path("models", "yolox_nano_coco_416.onnx")
    try:
        return DensityEstimator.from_registry(ModelRegistry.load(), CrowdSettings(estimator="density"), Runtime())
    except ModelError as exc:  # a shared model that fails its sha256 check is a failure, not a missing file
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.shared
def test_estimator_counts_shanghaitech_images_within_half(estimator):
    import cv2

    folder = shared_path("data", "crowd", "shanghaitech_B_train")
    gt = json.loads((folder / "gt_counts.json").read_text())
    names = ["IMG_3.jpg", "IMG_1.jpg", "IMG_4.jpg"]  # 29, 233 and 291 people
    images = [cv2.imread(str(folder / "images" / n)) for n in names]
    estimates = estimator.estimate(images)
    for name, image, est in zip(names, images, estimates):
        assert est.boxes.shape == (0, 5)
        assert est.density.shape == (48, 64) and est.density_stride == pytest.approx(16.0)
        assert est.density.min() >= 0
        assert abs(est.density.sum() - gt[name]) < 0.5 * gt[name], (name, est.density.sum(), gt[name])


@pytest.mark.shared
def test_estimator_map_covers_any_frame_size(estimator):
    image = np.full((1080, 1920, 3), 90, np.uint8)
    (est,) = estimator.estimate([image])
    assert est.density.shape == (36, 64)
    assert est.density_stride == pytest.approx(1920 / 64)
    assert est.density.sum() < 5  # a flat grey frame holds nobody


@pytest.mark.shared
def test_tuned_initializers_replace_weights_by_name_and_refuse_what_does_not_fit():
    import onnx

    from detectors.density import tuned_initializers

    backbone = onnx.load(shared_path("models", "yolox_nano_coco_416.onnx"))
    first = backbone.graph.initializer[0]
    original = onnx.numpy_helper.to_array(first)
    tuned = tuned_initializers(backbone, {first.name: original + 1.0})
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(tuned.graph.initializer[0]), original + 1.0)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(backbone.graph.initializer[0]), original)  # a copy
    with pytest.raises(KeyError, match="no_such_weight"):
        tuned_initializers(backbone, {"no_such_weight": original})
    with pytest.raises(ValueError, match="shape"):
        tuned_initializers(backbone, {first.name: original.ravel()[:1]})


def _backbone_head_and_weights(seed: int):
    """The registry backbone, a random head, the 4-d weights of the cut backbone, the rng, and a runner on one image."""
    import onnx

    from detectors.density import cut_backbone

    backbone = onnx.load(shared_path("models", "yolox_nano_coco_416.onnx"))
    rng = np.random.default_rng(seed)
    head = _random_head(rng, stride32=True)
    cut = cut_backbone(backbone, ["feat8", "feat16", "feat32"])
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in cut.graph.initializer if i.dims and len(i.dims) == 4}
    image = rng.integers(0, 255, (3, 128, 160)).astype(np.float32)[None]

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": image})[0]

    return backbone, head, weights, rng, run


@pytest.mark.shared
def test_a_head_carrying_backbone_deltas_runs_on_the_tuned_backbone_and_names_weights_it_lacks():

    from detectors.density import merge_backbone_and_head, tuned_initializers

    backbone, head, weights, rng, run = _backbone_head_and_weights(9)
    delta = {name: rng.normal(0, 0.05, w.shape).astype(np.float32) for name, w in list(weights.items())[:5]}
    tuned = tuned_initializers(backbone, {name: weights[name] + d for name, d in delta.items()})

    carried = run(merge_backbone_and_head(backbone, head_to_onnx(head, {}, backbone_delta=delta)))
    np.testing.assert_allclose(carried, run(merge_backbone_and_head(tuned, head_to_onnx(head, {}))), rtol=1e-5, atol=1e-6)
    assert np.abs(carried - run(merge_backbone_and_head(backbone, head_to_onnx(head, {})))).max() > 1e-4
    with pytest.raises(ValueError, match="no_such_weight"):
        merge_backbone_and_head(backbone, head_to_onnx(head, {}, backbone_delta={"no_such_weight": np.zeros(3)}))


@pytest.mark.shared
def test_backbone_deltas_stored_in_float16_halve_the_head_and_serve_a_float32_graph_tuned_by_the_rounded_change():
    import onnx

    from detectors.density import merge_backbone_and_head, tuned_initializers
    from detectors.training.export import add_backbone_delta

    backbone, head, weights, rng, run = _backbone_head_and_weights(11)
    delta = {name: rng.normal(0, 1e-3, w.shape).astype(np.float32) for name, w in list(weights.items())[:20]}
    bare, full, half = head_to_onnx(head, {}), head_to_onnx(head, {}), head_to_onnx(head, {})
    add_backbone_delta(full.graph, delta)
    add_backbone_delta(half.graph, delta, np.float16)
    size = {name: len(m.SerializeToString()) for name, m in (("bare", bare), ("full", full), ("half", half))}
    assert size["half"] - size["bare"] < 0.55 * (size["full"] - size["bare"])

    merged = merge_backbone_and_head(backbone, half)
    assert {i.data_type for i in merged.graph.initializer if i.name in delta} == {onnx.TensorProto.FLOAT}
    rounded = tuned_initializers(backbone, {n: weights[n] + d.astype(np.float16).astype(np.float32) for n, d in delta.items()})
    np.testing.assert_allclose(run(merged), run(merge_backbone_and_head(rounded, head_to_onnx(head, {}))), rtol=1e-5, atol=1e-6)


@pytest.mark.shared
def test_backbone_deltas_stored_as_int8_steps_serve_a_float32_graph_tuned_by_the_dequantized_change():
    import onnx

    from detectors.density import (
        DELTA_SCALE_PREFIX,
        cut_backbone,
        merge_backbone_and_head,
        tuned_initializers,
    )
    from detectors.training.export import add_backbone_delta, quantize_per_channel

    backbone, head, weights, rng, run = _backbone_head_and_weights(13)
    cut = cut_backbone(backbone, ["feat8", "feat16", "feat32"])
    biases = [(i.name, onnx.numpy_helper.to_array(i)) for i in cut.graph.initializer if len(i.dims) == 1 and i.dims[0] > 1]
    weights = {**weights, **dict(biases[:3])}
    delta = {name: rng.normal(0, 1e-3, w.shape).astype(np.float32) for name, w in list(weights.items())[-23:]}
    assert {d.ndim for d in delta.values()} == {1, 4}
    bare, full, small = head_to_onnx(head, {}), head_to_onnx(head, {}), head_to_onnx(head, {})
    add_backbone_delta(full.graph, delta)
    add_backbone_delta(small.graph, delta, np.int8)
    size = {name: len(m.SerializeToString()) for name, m in (("bare", bare), ("full", full), ("small", small))}
    assert size["small"] - size["bare"] < 0.3 * (size["full"] - size["bare"])

    def dequantized(d):
        if d.ndim < 2:
            return d.astype(np.float16).astype(np.float32)
        steps, scale = quantize_per_channel(d)
        return steps.astype(np.float32) * scale.reshape(-1, 1, 1, 1)

    for d in (d for d in delta.values() if d.ndim == 4):
        step = np.abs(d).reshape(len(d), -1).max(axis=1) / 127
        assert (np.abs(dequantized(d) - d) <= step.reshape(-1, 1, 1, 1) / 2 + 1e-12).all()
    merged = merge_backbone_and_head(backbone, small)
    assert {i.data_type for i in merged.graph.initializer if i.name in delta} == {onnx.TensorProto.FLOAT}
    assert not [i.name for i in merged.graph.initializer if "backbone_delta" in i.name]
    rounded = tuned_initializers(backbone, {n: weights[n] + dequantized(d) for n, d in delta.items()})
    np.testing.assert_allclose(run(merged), run(merge_backbone_and_head(rounded, head_to_onnx(head, {}))), rtol=1e-5, atol=1e-6)

    unscaled = onnx.ModelProto.FromString(small.SerializeToString())
    first_scale = next(i for i in unscaled.graph.initializer if i.name.startswith(DELTA_SCALE_PREFIX))
    unscaled.graph.initializer.remove(first_scale)
    with pytest.raises(ValueError, match=first_scale.name.removeprefix(DELTA_SCALE_PREFIX)):
        merge_backbone_and_head(backbone, unscaled)
    stray = head_to_onnx(head, {})
    add_backbone_delta(stray.graph, delta, np.float16)
    stray.graph.initializer.append(first_scale)
    with pytest.raises(ValueError, match="int8 scale"):
        merge_backbone_and_head(backbone, stray)


def test_per_channel_quantization_keeps_each_channel_within_half_a_step_and_an_unchanged_channel_at_zero():
    from detectors.training.export import quantize_per_channel

    values = np.stack([np.linspace(-2, 2, 12), np.zeros(12), np.linspace(0, 1e-4, 12)]).reshape(3, 3, 2, 2).astype(np.float32)
    steps, scale = quantize_per_channel(values)
    assert steps.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (3,)
    np.testing.assert_allclose(scale, [2 / 127, 1.0, 1e-4 / 127], rtol=1e-6)
    assert np.abs(steps).max() == 127 and not steps[1].any()
    restored = steps.astype(np.float32) * scale.reshape(3, 1, 1, 1)
    assert (np.abs(restored - values) <= scale.reshape(3, 1, 1, 1) / 2 + 1e-12).all()
