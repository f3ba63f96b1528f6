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
IR_VERSION = 7

Region = tuple[float, float, float, float]


def pooled_features(conv5: np.ndarray, stage4: np.ndarray, nofire_logit: np.ndarray) -> np.ndarray:
    """The head's input vector per image (reference for the ONNX head): (N, 513) float32.

    ``[mean(conv5), max(conv5), mean(stage4), max(stage4), nofire_logit]`` over the spatial axes.
    """
    parts = [conv5.mean((2, 3)), conv5.max((2, 3)), stage4.mean((2, 3)), stage4.max((2, 3)),
             nofire_logit.reshape(len(conv5), 1)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def expose_features(backbone: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the OnFire graph whose outputs are ``nofire_logit`` and the two feature maps."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(backbone)
    graph = model.graph
    produced = {out for node in graph.node for out in node.output}
    missing = [name for name in FEATURE_TENSORS if name not in produced]
    if missing or [o.name for o in graph.output] != [LOGIT_OUTPUT]:
        raise ValueError(f"backbone is not the OnFire ShuffleNetV2 export (missing {missing or LOGIT_OUTPUT})")
    for internal, public in FEATURE_TENSORS.items():
        graph.node.append(helper.make_node("Identity", [internal], [public], name=f"expose_{public}"))
        graph.output.append(helper.make_tensor_value_info(public, onnx.TensorProto.FLOAT, None))
    return model


def blend_logits(head_logit: np.ndarray, nofire_logit: np.ndarray, blend: float, offset: float = 0.0) -> np.ndarray:
    """The scorer's fire logit: ``blend · head + (1 − blend) · OnFire + offset`` (OnFire's is ``−nofire_logit``)."""
    return blend * head_logit - (1.0 - blend) * nofire_logit + offset


def build_head(weights: np.ndarray, bias: float, blend: float = 1.0,
               metadata: dict[str, str] | None = None, *, offset: float = 0.0) -> onnx.ModelProto:
    """The trained head as ONNX: pooled features → ``p_fire = sigmoid(blend_logits(features · weights + bias, …))``.

    ``weights`` (513,) act on :func:`pooled_features` directly (standardisation already folded in);
    ``blend`` weighs the head's logit against OnFire's own and ``offset`` is added to the blend
    (see :func:`blend_logits`).
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
        helper.make_node("Concat", ["c5_mean", "c5_max", "s4_mean", "s4_max", logit], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "head_w", "head_b"], ["head_logit"]),
        helper.make_node("Mul", ["head_logit", "blend_head"], ["head_part"]),
        helper.make_node("Mul", [logit, "blend_onfire"], ["onfire_part"]),
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
    graph = helper.make_graph(
        nodes, "fire_head",
        [helper.make_tensor_value_info(c5, TensorProto.FLOAT, ["N", 64, "h", "w"]),
         helper.make_tensor_value_info(s4, TensorProto.FLOAT, ["N", 192, "h", "w"]),
         helper.make_tensor_value_info(logit, TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="guanjia")
    model.ir_version = IR_VERSION
    for key, value in {"backbone": BACKBONE_MODEL, "blend": blend, "offset": offset, **(metadata or {})}.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    return model


def merge_backbone_and_head(backbone: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: image → OnFire → pooled features → head → ``p_fire`` (N, 1)."""
    import onnx
    from onnx import compose

    merged = compose.merge_models(expose_features(backbone), head, io_map=[(n, n) for n in HEAD_INPUTS],
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
