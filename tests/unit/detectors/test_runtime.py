"""Runtime.derived: graphs built in memory share the process-wide session cache, fail as ModelError, serve via infer."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from detectors.registry import InputSpec, ModelError, ModelSpec, OutputSpec
from detectors.runtime import Runtime
from detectors.settings import RuntimeSettings


def _scale_graph(factor: float, spatial: tuple[int | str, int | str] = (4, 4)) -> bytes:
    """x (N,3,H,W) → y = x · factor."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, *spatial])],
        initializer=[numpy_helper.from_array(np.array(factor, np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _spec(name: str, spatial: tuple[int | str, int | str] = (4, 4)) -> ModelSpec:
    return ModelSpec(name=name, file=f"{name}.onnx", sha256="0" * 64, size=1, task="test", licence="none", source="test",
                     input=InputSpec(name="x", shape=["batch", 3, *spatial], colour="BGR", resize="stretch"),
                     output=OutputSpec(name="y", decoding="none"))


FLOAT = RuntimeSettings(uint8_input=False)  # these tests feed float tensors of their own


def _parts(*labels: str) -> tuple[str, ...]:
    return tuple(hashlib.sha256(label.encode()).hexdigest() for label in labels)


def test_derived_graph_is_built_once_per_parts_and_settings():
    builds: list[float] = []

    def build(factor: float):
        def make() -> bytes:
            builds.append(factor)
            return _scale_graph(factor)
        return make

    spec, parts = _spec("derived_a"), _parts("backbone-a", "head-a")
    first = Runtime(FLOAT).derived(spec, parts, build(2.0))
    again = Runtime(FLOAT).derived(spec, parts, build(2.0))
    other_head = Runtime(FLOAT).derived(spec, _parts("backbone-a", "head-b"), build(3.0))
    other_settings = Runtime(FLOAT.model_copy(update={"max_batch": 2})).derived(spec, parts, build(2.0))
    assert first is again
    assert other_head is not first and other_settings is not first
    assert builds == [2.0, 3.0, 2.0]
    x = np.ones((5, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(first.run(x), 2 * x)
    np.testing.assert_array_equal(other_head.run(x), 3 * x)


def test_derived_graph_serves_through_infer_in_order():
    model = Runtime(RuntimeSettings(batching="parallel", parallel_runs=2, uint8_input=False)).derived(
        _spec("derived_b"), _parts("b"), lambda: _scale_graph(0.5))
    items = list(range(7))
    chunks: list[list[int]] = []

    def prepare(chunk):
        chunks.append(list(chunk))
        return np.stack([np.full((3, 4, 4), i, np.float32) for i in chunk]), list(chunk)

    out = model.infer(items, prepare, lambda y, owners: [(i, float(m[0, 0, 0])) for i, m in zip(owners, y)])
    assert out == [(i, i * 0.5) for i in items]
    assert sorted(i for c in chunks for i in c) == items and len(chunks) >= 2  # sub-batches for two pool threads


def test_auto_batching_is_dynamic_when_the_input_size_follows_the_image():
    fixed = Runtime().derived(_spec("derived_c"), _parts("c"), lambda: _scale_graph(1.0))
    sized = Runtime().derived(_spec("derived_d", ("H", "W")), _parts("d"), lambda: _scale_graph(1.0, ("H", "W")))
    assert fixed.batch_mode == "parallel"
    assert sized.batch_mode == "dynamic"
    x = np.ones((3, 3, 8, 6), np.float32)
    np.testing.assert_array_equal(sized.run(x), x)


def test_a_graph_that_cannot_be_built_is_a_model_error():
    def broken() -> bytes:
        raise ValueError("backbone is not a YOLOX export\nsecond line")

    with pytest.raises(ModelError, match=r"^model derived_e: cannot build its graph: backbone is not a YOLOX export$"):
        Runtime().derived(_spec("derived_e"), _parts("e"), broken)


def test_a_graph_onnxruntime_cannot_load_is_a_model_error():
    with pytest.raises(ModelError, match=r"^model derived_f: onnxruntime cannot load it: ") as info:
        Runtime().derived(_spec("derived_f"), _parts("f"), lambda: b"not an onnx graph")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def _conv_graph(consumer: str = "Conv") -> bytes:
    """x (N,3,8,8) float → 3×3 conv, stride 1, zero padding 1 (so the border sees the padding) → (N,4,8,8)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b")]
    if consumer == "Conv":
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        out_shape = ["N", 4, 8, 8]
    else:
        node = helper.make_node("Relu", ["x"], ["y"])
        out_shape = ["N", 3, 8, 8]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString()


IMAGENET = InputSpec(name="x", shape=["batch", 3, 8, 8], colour="RGB", resize="stretch", pad_value=0,
                     scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def test_folded_graph_takes_uint8_bgr_and_equals_the_normalised_float_model():
    from detectors.preprocess import to_image_tensor, to_tensor
    from detectors.runtime import fold_preprocessing, ort_session

    raw = _conv_graph()
    folded = fold_preprocessing(raw, IMAGENET)
    assert folded is not None
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(8, 8), (30, 20), (5, 11)]]
    floats, _ = to_tensor(images, IMAGENET)
    uint8, _ = to_image_tensor(images, IMAGENET)
    assert uint8.dtype == np.uint8 and uint8.shape == floats.shape
    ref = ort_session(raw).run(None, {"x": floats})[0]
    got = ort_session(folded).run(None, {"x": uint8})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)  # border pixels included: zero padding stays exact


def test_fold_is_refused_where_normalisation_cannot_go_into_a_conv():
    from detectors.runtime import fold_preprocessing

    assert fold_preprocessing(_conv_graph("Relu"), IMAGENET) is None
    plain = IMAGENET.model_copy(update={"colour": "BGR", "scale": 1.0, "mean": (0, 0, 0), "std": (1, 1, 1)})
    assert fold_preprocessing(_conv_graph("Relu"), plain) is not None  # a cast is all it needs
    assert fold_preprocessing(_conv_graph(), IMAGENET.model_copy(update={"pad_value": 0.5})) is None


@pytest.mark.parametrize("resize", ["letterbox_top_left", "stretch"])
def test_uint8_images_equal_the_unnormalised_float_tensor(resize):
    from detectors.preprocess import to_image_tensor, to_tensor

    spec = InputSpec(name="x", shape=[1, 3, 32, 48], colour="BGR", resize=resize, pad_value=114)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 64), (90, 40), (20, 200), (32, 48)]]
    floats, float_ratios = to_tensor(images, spec)
    uint8, ratios = to_image_tensor(images, spec)
    np.testing.assert_array_equal(uint8.astype(np.float32), floats)
    np.testing.assert_array_equal(ratios, float_ratios)


def _shuffle_graph() -> bytes:
    """x (N,4,2,2) → channel shuffle whose Reshape targets are computed from Shape on every run, like the OnFire export."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.array(value, np.int64), name)

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "rest5"], ["target5"], axis=0),
        helper.make_node("Reshape", ["x", "target5"], ["grouped"]),
        helper.make_node("Transpose", ["grouped"], ["shuffled"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Concat", ["n1", "rest4"], ["target4"], axis=0),
        helper.make_node("Reshape", ["shuffled", "target4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 2, 2])],
        initializer=[const("zero", 0), const("axes0", [0]), const("rest5", [2, 2, 2, 2]), const("rest4", [4, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString()


def test_shape_arithmetic_becomes_constants_and_outputs_stay_equal():
    import onnx

    from detectors.runtime import fold_shape_arithmetic, ort_session, shuffle_as_gather

    raw = _shuffle_graph()
    folded = fold_shape_arithmetic(raw, InputSpec(name="x", shape=["batch", 4, 2, 2], colour="BGR", resize="stretch"), "shuffle")
    ops = [node.op_type for node in onnx.load_from_string(folded).graph.node]
    assert ops == ["Reshape", "Transpose", "Reshape"]  # Shape, Gather, Unsqueeze, Concat gone
    gathered = shuffle_as_gather(folded)
    assert [node.op_type for node in onnx.load_from_string(gathered).graph.node] == ["Gather"]
    for n in (1, 3, 5):
        x = np.random.default_rng(n).normal(size=(n, 4, 2, 2)).astype(np.float32)
        ref = ort_session(raw).run(None, {"x": x})[0]
        np.testing.assert_array_equal(ort_session(folded).run(None, {"x": x})[0], ref)
        np.testing.assert_array_equal(ort_session(gathered).run(None, {"x": x})[0], ref)
    assert shuffle_as_gather(raw) == raw  # computed shapes: nothing it can prove, left alone


@pytest.mark.parametrize("rewrite", ["fold_shape_arithmetic", "shuffle_as_gather", "fold_preprocessing"])
def test_a_failing_optional_rewrite_leaves_the_graph_and_the_model_loads(monkeypatch, caplog, rewrite):
    import logging

    import onnx
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from detectors import runtime
    from detectors.preprocess import to_tensor

    error = Fail if rewrite == "fold_shape_arithmetic" else onnx.checker.ValidationError

    def broken(*args):
        raise error("rewrite went wrong\nsecond line")

    monkeypatch.setattr(runtime, rewrite, broken)
    spec = _spec(f"rewrite_{rewrite}").model_copy(update={"input": IMAGENET})
    with caplog.at_level(logging.WARNING, logger="detectors.runtime"):
        model = runtime.OnnxModel(spec, _conv_graph(), RuntimeSettings(), uint8_input=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"model rewrite_{rewrite}: ")
    assert warnings[0].endswith(f"skipped ({error.__name__}: rewrite went wrong)")
    assert model.uint8_input is (rewrite != "fold_preprocessing")
    images = [np.random.default_rng(6).integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(8, 8), (30, 20)]]
    floats, _ = to_tensor(images, IMAGENET)
    ref = runtime.ort_session(_conv_graph()).run(None, {"x": floats})[0]
    np.testing.assert_allclose(model.run(model.prepare(images)[0]), ref, rtol=0, atol=1e-4)


def test_derived_fixed_size_graph_takes_uint8_as_the_settings_say():
    from detectors.preprocess import to_tensor
    from detectors.runtime import ort_session

    spec = _spec("derived_g").model_copy(update={"input": IMAGENET})
    served = Runtime().derived(spec, _parts("g"), _conv_graph)
    as_file = Runtime(FLOAT).derived(spec, _parts("g"), _conv_graph)
    assert served.uint8_input and not as_file.uint8_input
    images = [np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(8, 8), (12, 30)]]
    assert served.prepare(images)[0].dtype == np.uint8 and as_file.prepare(images)[0].dtype == np.float32
    ref = ort_session(_conv_graph()).run(None, {"x": to_tensor(images, IMAGENET)[0]})[0]
    for model in (served, as_file):
        np.testing.assert_allclose(model.run(model.prepare(images)[0]), ref, rtol=0, atol=1e-4)


def test_a_slow_load_does_not_hold_up_other_models_and_builds_once():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    started, release = threading.Event(), threading.Event()
    builds: list[str] = []

    def slow() -> bytes:
        builds.append("slow")
        started.set()
        assert release.wait(30)
        return _scale_graph(2.0)

    spec = _spec("derived_h")
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(Runtime(FLOAT).derived, spec, _parts("h"), slow) for _ in range(2)]
        assert started.wait(30)
        other = pool.submit(Runtime(FLOAT).derived, _spec("derived_i"), _parts("i"), lambda: _scale_graph(3.0))
        loaded = other.result(timeout=30)  # the slow build is still running: the other model did not wait for it
        assert not any(f.done() for f in waiting)
        release.set()
        first, second = (f.result(timeout=30) for f in waiting)
    assert first is second and builds == ["slow"]
    np.testing.assert_array_equal(loaded.run(np.ones((1, 3, 4, 4), np.float32)), np.full((1, 3, 4, 4), 3.0, np.float32))


LETTERBOX = InputSpec(name="x", shape=["batch", 3, 8, 8], colour="BGR", resize="letterbox_top_left", rect_multiple=4)


@pytest.mark.parametrize(("sizes", "canvas"), [
    ([(60, 80)], (8, 8)),  # 80x60 → 8x6: 6 rows round up to 8
    ([(30, 80)], (4, 8)),  # 8x3 → 8x4
    ([(80, 30)], (8, 4)),  # portrait: 3x8 → 4x8
    ([(30, 80), (80, 80)], (8, 8)),  # the batch shares the canvas that holds its largest image
    ([(30, 80), (20, 80)], (4, 8)),
])
def test_rect_canvas_is_the_smallest_multiple_that_holds_the_batch(sizes, canvas):
    from detectors.preprocess import canvas_size, to_image_tensor

    images = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    assert canvas_size(images, LETTERBOX, rect=True) == canvas
    assert canvas_size(images, LETTERBOX) == (8, 8)
    assert canvas_size(images, LETTERBOX.model_copy(update={"rect_multiple": None}), rect=True) == (8, 8)
    assert canvas_size(images, LETTERBOX.model_copy(update={"resize": "stretch"}), rect=True) == (8, 8)
    tensor, ratios = to_image_tensor(images, LETTERBOX, rect=True)
    assert tensor.shape == (len(images), 3, *canvas)
    np.testing.assert_allclose(ratios, [min(8 / h, 8 / w) for h, w in sizes])  # the same scale as the square


def _flatten_graph() -> bytes:
    """x (N,3,8,8) → Reshape to (N, 192) → MatMul: runs at 8x8 only."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "flat"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(np.array([0, 192], np.int64), "flat"),
                     numpy_helper.from_array(np.ones((192, 2), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString()


def test_rect_letterbox_opens_a_convolutional_graph_and_refuses_a_fixed_one():
    from detectors.preprocess import to_tensor
    from detectors.runtime import OnnxModel, free_spatial_dims, ort_session

    assert free_spatial_dims(_flatten_graph(), LETTERBOX) is None
    spec = _spec("rect_flat").model_copy(update={"input": LETTERBOX})
    assert not OnnxModel(spec, _flatten_graph(), RuntimeSettings()).rect  # served at 8x8, as declared
    assert free_spatial_dims(_conv_graph(), LETTERBOX) is not None
    model = OnnxModel(_spec("rect_conv").model_copy(update={"input": LETTERBOX}), _conv_graph(), RuntimeSettings(),
                      uint8_input=True)
    assert model.rect and model.uint8_input
    wide = [np.random.default_rng(8).integers(0, 256, (30, 80, 3), dtype=np.uint8)]
    tensor, _ = model.prepare(wide)
    assert tensor.shape == (1, 3, 4, 8)
    square = to_tensor(wide, LETTERBOX)[0]
    ref = ort_session(_conv_graph()).run(None, {"x": square})[0]
    # the rows the image fills (3 of 4, the last one next to the padding) equal the square run's
    np.testing.assert_allclose(model.run(tensor)[:, :, :2], ref[:, :, :2], rtol=0, atol=1e-4)
    assert not OnnxModel(spec.model_copy(update={"input": LETTERBOX}), _conv_graph(),
                         RuntimeSettings(rect_letterbox=False)).rect
