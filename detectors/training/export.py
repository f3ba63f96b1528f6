"""The trained head as a small ONNX graph (feat8, feat16 → density), numerically equal to :class:`DensityHead`."""

from __future__ import annotations

import numpy as np

from detectors.density import DENSITY_OUTPUT, FEATURE_OUTPUTS
from detectors.training.head import CONTEXT, DensityHead

OPSET = 13


def head_to_onnx(head: DensityHead, metadata: dict[str, str]) -> onnx.ModelProto:  # noqa: F821
    """SpaceToDepth(feat8) ‖ feat16 ‖ AveragePool(feat16) → 1×1 conv (whitening folded in) → ReLU → 1×1 conv → Softplus."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, mlp = head.whitening, head.mlp
    w1 = (w.proj.astype(np.float64) @ mlp.w1.astype(np.float64))  # (D, hidden)
    b1 = mlp.b1.astype(np.float64) - w.mean.astype(np.float64) @ w1
    inits = [
        numpy_helper.from_array(w1.T.astype(np.float32)[:, :, None, None], "w1"),
        numpy_helper.from_array(b1.astype(np.float32), "b1"),
        numpy_helper.from_array(mlp.w2.T.astype(np.float32)[:, :, None, None], "w2"),
        numpy_helper.from_array(mlp.b2.astype(np.float32), "b2"),
    ]
    f8, f16 = FEATURE_OUTPUTS
    nodes = [
        helper.make_node("SpaceToDepth", [f8], ["s2d"], blocksize=2),
        helper.make_node("AveragePool", [f16], ["ctx"], kernel_shape=[CONTEXT, CONTEXT],
                         pads=[CONTEXT // 2] * 4, strides=[1, 1], count_include_pad=0),
        helper.make_node("Concat", ["s2d", f16, "ctx"], ["cells"], axis=1),
        helper.make_node("Conv", ["cells", "w1", "b1"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["hid"]),
        helper.make_node("Conv", ["hid", "w2", "b2"], ["logit"]),
        helper.make_node("Softplus", ["logit"], [DENSITY_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes, "crowd_density_head",
        [helper.make_tensor_value_info(f8, TensorProto.FLOAT, ["N", 128, "H8", "W8"]),
         helper.make_tensor_value_info(f16, TensorProto.FLOAT, ["N", 128, "H16", "W16"])],
        [helper.make_tensor_value_info(DENSITY_OUTPUT, TensorProto.FLOAT, ["N", 1, "H16", "W16"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="guanjia")
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=str(value)))
    onnx.checker.check_model(model)
    return model
