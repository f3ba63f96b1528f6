"""The trained head as a small ONNX graph (feat8, feat16 → density), numerically equal to :class:`DensityHead`."""

from __future__ import annotations

import numpy as np

from detectors.density import (
    CONTEXT_OUTPUT,
    DELTA_PREFIX,
    DELTA_SCALE_PREFIX,
    DENSITY_OUTPUT,
    FEATURE_OUTPUTS,
)
from detectors.training.head import CONTEXT, DensityHead

OPSET = 13


def head_to_onnx(head: DensityHead, metadata: dict[str, str],
                 backbone_delta: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:  # noqa: F821
    """SpaceToDepth(feat8) ‖ feat16 ‖ AveragePool(feat16) [‖ Resize×2(feat32)] → 1×1 conv (whitening folded in)
    → ReLU → 1×1 conv (k×k for a spatial head, zero padding) → Softplus.

    An ensemble of M MLPs is one graph: the first conv has M·hidden outputs, the second is grouped
    (M groups, one map per member) and a last 1×1 conv averages the M maps. In an ensemble that mixes
    per-cell and spatial members, a per-cell member's output layer is the centre tap of a k×k kernel.

    ``backbone_delta`` (fine-tuned minus registry weights, by backbone initializer name) rides along as
    ``backbone_delta/<name>`` initializers, applied by :func:`detectors.density.merge_backbone_and_head`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, mlps = head.whitening, head.mlps
    members = len(mlps)
    # every member's first layer with the whitening folded in, side by side: one Conv for the whole ensemble
    w1 = np.concatenate([w.proj.astype(np.float64) @ m.w1.astype(np.float64) for m in mlps], axis=1)  # (D, M·hidden)
    b1 = np.concatenate([m.b1.astype(np.float64) for m in mlps]) - w.mean.astype(np.float64) @ w1
    kernel = max(m.kernel for m in mlps)
    # (M, hidden, k, k): member m's output reads only its own hidden units; w2 rows are in im2col order (row, col, unit)
    w2 = np.stack([_centred(m.w2[:, 0].reshape(m.kernel, m.kernel, -1).transpose(2, 0, 1), kernel) for m in mlps])
    inits = [
        numpy_helper.from_array(w1.T.astype(np.float32)[:, :, None, None], "w1"),
        numpy_helper.from_array(b1.astype(np.float32), "b1"),
        numpy_helper.from_array(w2.astype(np.float32), "w2"),
        numpy_helper.from_array(np.concatenate([m.b2 for m in mlps]).astype(np.float32), "b2"),
    ]
    f8, f16 = FEATURE_OUTPUTS
    cells = ["s2d", f16, "ctx"]
    nodes = [
        helper.make_node("SpaceToDepth", [f8], ["s2d"], blocksize=2),
        helper.make_node("AveragePool", [f16], ["ctx"], kernel_shape=[CONTEXT, CONTEXT],
                         pads=[CONTEXT // 2] * 4, strides=[1, 1], count_include_pad=0),
    ]
    inputs = [helper.make_tensor_value_info(f8, TensorProto.FLOAT, ["N", 128, "H8", "W8"]),
              helper.make_tensor_value_info(f16, TensorProto.FLOAT, ["N", 128, "H16", "W16"])]
    if head.stride32:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"))
        nodes.append(helper.make_node("Resize", [CONTEXT_OUTPUT, "", "up_scales"], ["up32"], mode="nearest",
                                      coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        inputs.append(helper.make_tensor_value_info(CONTEXT_OUTPUT, TensorProto.FLOAT, ["N", 128, "H32", "W32"]))
        cells.append("up32")
    nodes += [
        helper.make_node("Concat", cells, ["cells"], axis=1),
        helper.make_node("Conv", ["cells", "w1", "b1"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["hid"]),
        helper.make_node("Conv", ["hid", "w2", "b2"], ["logit"], group=members, kernel_shape=[kernel, kernel],
                         pads=[kernel // 2] * 4),
        helper.make_node("Softplus", ["logit"], [DENSITY_OUTPUT if members == 1 else "maps"]),
    ]
    if members > 1:
        inits.append(numpy_helper.from_array(np.full((1, members, 1, 1), 1.0 / members, np.float32), "mean"))
        nodes.append(helper.make_node("Conv", ["maps", "mean"], [DENSITY_OUTPUT]))  # the members' maps averaged
    graph = helper.make_graph(
        nodes, "crowd_density_head", inputs,
        [helper.make_tensor_value_info(DENSITY_OUTPUT, TensorProto.FLOAT, ["N", 1, "H16", "W16"])],
        inits,
    )
    add_backbone_delta(graph, backbone_delta or {})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="guanjia")
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=str(value)))
    onnx.checker.check_model(model)
    return model


def _centred(taps: np.ndarray, kernel: int) -> np.ndarray:
    """(hidden, k, k) output taps in the middle of a (hidden, kernel, kernel) kernel, zeros around."""
    pad = (kernel - taps.shape[1]) // 2
    return np.pad(taps, ((0, 0), (pad, pad), (pad, pad)))


def add_backbone_delta(graph: onnx.GraphProto, delta: dict[str, np.ndarray],  # noqa: F821
                       dtype: type[np.generic] | np.dtype = np.float32) -> None:
    """Append fine-tuning changes to backbone weights as ``backbone_delta/<name>`` initializers of a head graph,
    stored as ``dtype`` (the loader adds them to the float32 weights; float16 halves the file).

    With int8, each weight tensor's change is stored in steps of its output channel's largest change / 127
    (``backbone_delta_scale/<name>``, float32), and 1-D changes (biases) in float16.
    """
    from onnx import numpy_helper

    for name, change in sorted(delta.items()):
        change = np.asarray(change, np.float32)
        if np.dtype(dtype) != np.int8:
            graph.initializer.append(numpy_helper.from_array(change.astype(dtype), DELTA_PREFIX + name))
        elif change.ndim < 2:
            graph.initializer.append(numpy_helper.from_array(change.astype(np.float16), DELTA_PREFIX + name))
        else:
            steps, scale = quantize_per_channel(change)
            graph.initializer.append(numpy_helper.from_array(steps, DELTA_PREFIX + name))
            graph.initializer.append(numpy_helper.from_array(scale, DELTA_SCALE_PREFIX + name))


def quantize_per_channel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 steps, float32 scale per axis-0 channel): symmetric, ``values ≈ steps * scale``; an all-zero channel gets scale 1."""
    flat = values.reshape(values.shape[0], -1)
    peak = np.abs(flat).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    steps = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    return steps.reshape(values.shape), scale
