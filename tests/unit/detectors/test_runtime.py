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
    first = Runtime().derived(spec, parts, build(2.0))
    again = Runtime().derived(spec, parts, build(2.0))
    other_head = Runtime().derived(spec, _parts("backbone-a", "head-b"), build(3.0))
    other_settings = Runtime(RuntimeSettings(max_batch=2)).derived(spec, parts, build(2.0))
    assert first is again
    assert other_head is not first and other_settings is not first
    assert builds == [2.0, 3.0, 2.0]
    x = np.ones((5, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(first.run(x), 2 * x)
    np.testing.assert_array_equal(other_head.run(x), 3 * x)


def test_derived_graph_serves_through_infer_in_order():
    model = Runtime(RuntimeSettings(batching="parallel", parallel_runs=2)).derived(
        _spec("derived_b"), _parts("b"), lambda: _scale_graph(0.5))
    items = list(range(7))
    out = model.infer(items, lambda chunk: (np.full((len(chunk), 3, 4, 4), chunk[0], np.float32), chunk[0]),
                      lambda y, i: [(i, float(y[0, 0, 0, 0]))])
    assert out == [(i, i * 0.5) for i in items]


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
