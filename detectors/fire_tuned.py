"""Fire scoring that ignores sunsets: the frozen OnFire classifier plus a project-trained linear head.

The registry's OnFire ShuffleNetV2 (third-party, never committed) runs on the full frame as usual;
its last two feature maps (``conv5`` after ReLU, 64×7×7, and the ``stage4`` output, 192×7×7) are
pooled (spatial mean and max) and, with OnFire's own logit, fed to a logistic-regression head
trained on CAIR dev (``models/trained/fire_head.onnx``, trained by ``guanjia models train-fire``).
The head's logit is blended with OnFire's and shifted (``blend`` and ``offset``, stored in the head):
the head alone is the best on CAIR's web photos but scores CCTV fires and close-up flames too low, and
the blend with the offset keeps them while still vetoing OnFire's sunsets (docs/accuracy.md).
Backbone and head are merged into one ONNX graph at load time, so one pass gives ``p_fire``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

    from detectors.registry import InputSpec, ModelRegistry
    from detectors.runtime import OnnxModel, Runtime
    from detectors.settings import FireSettings

HEAD_MODEL = "fire_head"
BACKBONE_MODEL = "shufflenetv2_onfire_224"
# backbone tensor -> name of the graph output the head reads it from
FEATURE_TENSORS = {
    "/conv5/conv5.2/Relu_output_0": "fire_conv5",
    "/stage4/stage4.3/Reshape_1_output_0": "fire_stage4",
}
LOGIT_OUTPUT = "nofire_logit"
HEAD_INPUTS = (*FEATURE_TENSORS.values(), LOGIT_OUTPUT)
OUTPUT = "p_fire"
FEATURE_SIZE = 64 * 2 + 192 * 2 + 1
OPSET = 13  # the backbone's; merge_models needs the same
# test-time views of the 224×224 input (fire_tuned.view_nodes): as is, flipped, 4 corners + centre, flipped crops
VIEWS = ("O", "F", "tl", "tr", "bl", "br", "c", "Ftl", "Ftr", "Fbl", "Fbr", "Fc")
CROP_SCALE = 0.8
IR_VERSION = 7

Region = tuple[float, float, float, float]


def pooled_features(conv5: np.ndarray, stage4: np.ndarray, nofire_logit: np.ndarray) -> np.ndarray:
    """The head's input vector per image (reference for the ONNX head): (N, 513) float32.

    ``[mean(conv5), max(conv5), mean(stage4), max(stage4), nofire_logit]`` over the spatial axes.
    """
    parts = [conv5.mean((2, 3)), conv5.max((2, 3)), stage4.mean((2, 3)), stage4.max((2, 3)),
             nofire_logit.reshape(len(conv5), 1)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def view_nodes(source: str, target: str, views: Sequence[str], size: int = 224, crop: float = CROP_SCALE) -> list:
    """ONNX nodes turning ``source`` (N, C, size, size) into ``target`` (V·N, C, size, size): the views stacked.

    Views (see :data:`VIEWS`): ``O`` the input, ``F`` its horizontal flip, ``tl``/``tr``/``bl``/``br``/``c`` the
    corners and centre at ``crop`` scale resized back (bilinear), ``F…`` those of the flipped input.
    """
    from onnx import TensorProto, helper

    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown test-time views {unknown or '(none)'}; known: {', '.join(VIEWS)}")
    side = round(crop * size)
    edge = size - side
    corners = {"tl": (0, 0), "tr": (0, edge), "bl": (edge, 0), "br": (edge, edge), "c": (edge // 2, edge // 2)}
    p = f"{target}/"

    def const(name: str, values: list[int]):
        return helper.make_node("Constant", [], [p + name],
                                value=helper.make_tensor(p + name, TensorProto.INT64, [len(values)], values))

    nodes = [const("flip_starts", [-1]), const("flip_ends", [np.iinfo(np.int64).min]), const("w_axis", [3]),
             const("flip_steps", [-1]), const("hw_axes", [2, 3]), const("size", [size, size]),
             const("nc_start", [0]), const("nc_end", [2]),
             helper.make_node("Slice", [source, p + "flip_starts", p + "flip_ends", p + "w_axis", p + "flip_steps"],
                              [p + "F"]),
             helper.make_node("Shape", [source], [p + "shape"]),
             helper.make_node("Slice", [p + "shape", p + "nc_start", p + "nc_end"], [p + "nc"]),
             helper.make_node("Concat", [p + "nc", p + "size"], [p + "sizes"], axis=0)]
    outputs = []
    for view in views:
        if view in ("O", "F"):
            outputs.append(source if view == "O" else p + "F")
            continue
        base, corner = (p + "F", view[1:]) if view.startswith("F") else (source, view)
        y, x = corners[corner]
        nodes += [const(f"{view}_starts", [y, x]), const(f"{view}_ends", [y + side, x + side]),
                  helper.make_node("Slice", [base, p + f"{view}_starts", p + f"{view}_ends", p + "hw_axes"],
                                   [p + f"{view}_crop"]),
                  helper.make_node("Resize", [p + f"{view}_crop", "", "", p + "sizes"], [p + view], mode="linear",
                                   coordinate_transformation_mode="half_pixel")]
        outputs.append(p + view)
    nodes.append(helper.make_node("Concat", outputs, [target], axis=0))
    return nodes


def expose_features(backbone: onnx.ModelProto, views: Sequence[str] = ("O",)) -> onnx.ModelProto:
    """A copy of the OnFire graph whose outputs are ``nofire_logit`` and the two feature maps.

    With ``views`` other than ``("O",)`` the backbone runs on the stacked views of its input
    (:func:`view_nodes`), so every output has V·N rows, view-major.
    """
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(backbone)
    graph = model.graph
    produced = {out for node in graph.node for out in node.output}
    missing = [name for name in FEATURE_TENSORS if name not in produced]
    if missing or [o.name for o in graph.output] != [LOGIT_OUTPUT]:
        raise ValueError(f"backbone is not the OnFire ShuffleNetV2 export (missing {missing or LOGIT_OUTPUT})")
    if tuple(views) != ("O",):
        source = graph.input[0].name
        stacked = f"{source}_views"
        for node in graph.node:
            node.input[:] = [stacked if name == source else name for name in node.input]
        nodes = view_nodes(source, stacked, views, size=graph.input[0].type.tensor_type.shape.dim[3].dim_value or 224)
        for node in reversed(nodes):
            graph.node.insert(0, node)
    for internal, public in FEATURE_TENSORS.items():
        graph.node.append(helper.make_node("Identity", [internal], [public], name=f"expose_{public}"))
        graph.output.append(helper.make_tensor_value_info(public, onnx.TensorProto.FLOAT, None))
    return model


def blend_logits(head_logit: np.ndarray, nofire_logit: np.ndarray, blend: float, offset: float = 0.0) -> np.ndarray:
    """The scorer's fire logit: ``blend · head + (1 − blend) · OnFire + offset`` (OnFire's is ``−nofire_logit``)."""
    return blend * head_logit - (1.0 - blend) * nofire_logit + offset


def build_head(weights: np.ndarray, bias: float, blend: float = 1.0,
               metadata: dict[str, str] | None = None, *, offset: float = 0.0,
               views: Sequence[str] = ("O",)) -> onnx.ModelProto:
    """The trained head as ONNX: pooled features → ``p_fire = sigmoid(blend_logits(features · weights + bias, …))``.

    ``weights`` (513,) act on :func:`pooled_features` directly (standardisation already folded in);
    ``blend`` weighs the head's logit against OnFire's own and ``offset`` is added to the blend
    (see :func:`blend_logits`). With several ``views`` the inputs hold V·N rows (view-major, from
    :func:`expose_features` with the same views) and the pooled features, OnFire's logit included, are
    averaged over the views first; the views are stored in the metadata for the merge.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if weights.shape != (FEATURE_SIZE,):
        raise ValueError(f"head weights must have shape ({FEATURE_SIZE},), got {weights.shape}")
    c5, s4, logit = HEAD_INPUTS
    nodes = [
        helper.make_node("ReduceMean", [c5], ["c5_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMax", [c5], ["c5_max"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", [s4], ["s4_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMax", [s4], ["s4_max"], axes=[2, 3], keepdims=0),
        helper.make_node("Concat", ["c5_mean", "c5_max", "s4_mean", "s4_max", logit],
                         ["features" if len(views) == 1 else "view_features"], axis=1),
    ]
    onfire = logit
    if len(views) > 1:
        onfire = "mean_logit"
        nodes += [
            helper.make_node("Reshape", ["view_features", "views_shape"], ["per_view"]),
            helper.make_node("ReduceMean", ["per_view"], ["features"], axes=[0], keepdims=0),
            helper.make_node("Slice", ["features", "logit_start", "logit_end", "logit_axis"], [onfire]),
        ]
    nodes += [
        helper.make_node("Gemm", ["features", "head_w", "head_b"], ["head_logit"]),
        helper.make_node("Mul", ["head_logit", "blend_head"], ["head_part"]),
        helper.make_node("Mul", [onfire, "blend_onfire"], ["onfire_part"]),
        helper.make_node("Add", ["head_part", "onfire_part"], ["blended_logit"]),
        helper.make_node("Add", ["blended_logit", "fire_offset"], ["fire_logit"]),
        helper.make_node("Sigmoid", ["fire_logit"], [OUTPUT]),
    ]
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be within [0, 1], got {blend}")
    inits = [numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), "head_w"),
             numpy_helper.from_array(np.array([bias], np.float32), "head_b"),
             numpy_helper.from_array(np.array(blend, np.float32), "blend_head"),
             numpy_helper.from_array(np.array(-(1.0 - blend), np.float32), "blend_onfire"),
             numpy_helper.from_array(np.array(offset, np.float32), "fire_offset")]
    if len(views) > 1:
        inits += [numpy_helper.from_array(np.array([len(views), -1, FEATURE_SIZE], np.int64), "views_shape"),
                  numpy_helper.from_array(np.array([FEATURE_SIZE - 1], np.int64), "logit_start"),
                  numpy_helper.from_array(np.array([FEATURE_SIZE], np.int64), "logit_end"),
                  numpy_helper.from_array(np.array([1], np.int64), "logit_axis")]
        metadata = {"views": ",".join(views), **(metadata or {})}
    rows = "N" if len(views) == 1 else "VxN"
    graph = helper.make_graph(
        nodes, "fire_head",
        [helper.make_tensor_value_info(c5, TensorProto.FLOAT, [rows, 64, "h", "w"]),
         helper.make_tensor_value_info(s4, TensorProto.FLOAT, [rows, 192, "h", "w"]),
         helper.make_tensor_value_info(logit, TensorProto.FLOAT, [rows, 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="guanjia")
    model.ir_version = IR_VERSION
    for key, value in {"backbone": BACKBONE_MODEL, "blend": blend, "offset": offset, **(metadata or {})}.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    return model


def head_views(head: onnx.ModelProto) -> tuple[str, ...]:
    """The test-time views a head averages over (its ``views`` metadata; ``("O",)`` when absent)."""
    value = next((p.value for p in head.metadata_props if p.key == "views"), "O")
    return tuple(value.split(","))


def merge_backbone_and_head(backbone: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: image → OnFire → pooled features → head → ``p_fire`` (N, 1)."""
    import onnx
    from onnx import compose

    views = head_views(head)
    merged = compose.merge_models(expose_features(backbone, views), head, io_map=[(n, n) for n in HEAD_INPUTS],
                                  outputs=[OUTPUT])
    onnx.checker.check_model(merged)
    return merged


class TunedFireScorer:
    """P(fire) of the whole frame from OnFire features and the trained head (:class:`detectors.base.FireScorer`).

    The merged graph is served by the shared :class:`detectors.runtime.Runtime` like any registry model.
    """

    name = "tuned"

    def __init__(self, model: OnnxModel):
        self.model = model
        self.input_spec = model.spec.input
        self.model_id = model.model_id

    @classmethod
    def from_registry(cls, registry: ModelRegistry, settings: FireSettings, runtime: Runtime) -> TunedFireScorer:
        """Head ``fire_head`` (committed in models/trained, sha256-checked) on its registered OnFire backbone."""
        model, _ = runtime.merged(registry, HEAD_MODEL, merge_backbone_and_head, BACKBONE_MODEL)
        return cls(model)

    @classmethod
    def from_files(cls, backbone: Path | str, head: Path | str, input_spec: InputSpec, *,
                   providers: Sequence[str] = ("CPUExecutionProvider",), intra_op_threads: int = 0) -> TunedFireScorer:
        """Build from two ONNX files (scripts and tests; the registry is the normal way)."""
        import hashlib

        from detectors.registry import ModelSpec, OutputSpec
        from detectors.runtime import Runtime
        from detectors.settings import RuntimeSettings

        backbone_bytes, head_bytes = Path(backbone).read_bytes(), Path(head).read_bytes()
        spec = ModelSpec(name=HEAD_MODEL, file=Path(head).name, sha256=hashlib.sha256(head_bytes).hexdigest(),
                         size=len(head_bytes), task="fire_head", licence="unknown", source=str(head),
                         input=input_spec, output=OutputSpec(name=OUTPUT, decoding="sigmoid"))
        runtime = Runtime(RuntimeSettings(providers=list(providers), intra_op_threads=intra_op_threads))
        return cls(runtime.merged_files(spec, backbone_bytes, head_bytes, merge_backbone_and_head))

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(fire) per BGR image as a float64 array."""
        if not images:
            return np.zeros(0)
        p = self.model.infer(images, self.model.prepare, lambda out, _: list(out[:, 0]))
        return np.asarray(p, dtype=np.float64)

    def score(self, images: Sequence[np.ndarray]) -> list[tuple[float, Region | None]]:
        """(P(fire), None) per BGR image: the head classifies the whole frame and does not localise."""
        return [(float(p), None) for p in self.probabilities(images)]
