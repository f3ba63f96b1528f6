"""Crowd density maps: the COCO YOLOX-Nano backbone (frozen, from the registry) plus a project-trained head.

The backbone graph is cut after the stride-8 and stride-16 branches of its detection head (the
features the box predictions are made from) and given a dynamic input size; the trained head
(``models/trained/crowd_density_head.onnx``) turns those features into a density map at stride 16
whose sum is the number of people. Both are merged into one ONNX graph at load time, so the
third-party weights are never committed and one pass serves the whole map.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from detectors.base import CrowdEstimate

if TYPE_CHECKING:
    import onnx

    from detectors.registry import ModelRegistry
    from detectors.runtime import OnnxModel, Runtime
    from detectors.settings import CrowdSettings

log = logging.getLogger(__name__)

HEAD_MODEL = "crowd_density"
BACKBONE_MODEL = "yolox_nano_coco_416"
FEATURE_OUTPUTS = ("feat8", "feat16")  # what every head reads
CONTEXT_OUTPUT = "feat32"  # the stride-32 features, read by heads trained with them (input named so)
LEVELS = {"feat8": 0, "feat16": 1, "feat32": 2}  # output name → YOLOX prediction level (stride 8·2^level)
DENSITY_OUTPUT = "density"
DELTA_PREFIX = "backbone_delta/"  # head initializers so named are fine-tuning changes to the backbone's weights
DELTA_SCALE_PREFIX = "backbone_delta_scale/"  # an int8 change's step, one per output channel (axis 0)
INPUT_NAME = "images"
PAD_VALUE = 114.0
ALIGN = 32  # the backbone downsamples by 32


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where an image sits in the network input: scaled by ``ratio`` and pasted at the top-left."""

    ratio: float
    width: int  # scaled image width inside the input
    height: int
    input_width: int
    input_height: int


def letterbox(image: np.ndarray, long_side: int) -> tuple[np.ndarray, Letterbox]:
    """Scale a BGR image so its long side is ``long_side``, pad right/bottom to a multiple of 32 with 114.

    Returns the CHW float32 tensor (raw 0–255, BGR, as YOLOX expects) and the placement.
    """
    h, w = image.shape[:2]
    ratio = long_side / max(h, w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    iw, ih = -(-nw // ALIGN) * ALIGN, -(-nh // ALIGN) * ALIGN
    canvas = np.full((ih, iw, 3), PAD_VALUE, dtype=np.float32)
    interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interp)
    canvas[:nh, :nw] = resized
    return canvas.transpose(2, 0, 1), Letterbox(ratio, nw, nh, iw, ih)


def _feature_tensors(graph: onnx.GraphProto, level: int) -> tuple[str, str]:
    """Names of the cls and reg branch features that feed YOLOX's predictions at ``level`` (0 = stride 8)."""
    by_weight = {node.input[1]: node for node in graph.node if node.op_type == "Conv" and len(node.input) > 1}
    try:
        cls_in = by_weight[f"head.cls_preds.{level}.weight"].input[0]
        reg_in = by_weight[f"head.reg_preds.{level}.weight"].input[0]
    except KeyError as exc:
        raise ValueError(f"backbone is not a YOLOX export with named head weights (missing {exc})") from None
    return cls_in, reg_in


def cut_backbone(model: onnx.ModelProto, outputs: Sequence[str] = FEATURE_OUTPUTS) -> onnx.ModelProto:
    """YOLOX with a dynamic N×3×H×W input, cut to ``outputs``: ``feat8`` (N,128,H/8,W/8), ``feat16``
    (N,128,H/16,W/16) and, when asked for, ``feat32`` (N,128,H/32,W/32).

    Each output is the cls-branch features followed by the reg-branch features of that stride.
    """
    import onnx
    from onnx import helper
    from onnx.utils import Extractor

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for dim, param in zip(graph.input[0].type.tensor_type.shape.dim, ("N", None, "H", "W")):
        if param:
            dim.ClearField("dim_value")
            dim.dim_param = param
    del graph.value_info[:]
    unknown = [o for o in outputs if o not in LEVELS]
    if unknown:
        raise ValueError(f"unknown backbone feature outputs {unknown}; known: {list(LEVELS)}")
    names = [_feature_tensors(graph, LEVELS[o]) for o in outputs]
    del graph.output[:]
    for pair in names:
        graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in pair)
    sub = Extractor(model).extract_model([graph.input[0].name], [n for pair in names for n in pair])
    for out_name, (cls_in, reg_in) in zip(outputs, names):
        sub.graph.node.append(helper.make_node("Concat", [cls_in, reg_in], [out_name], axis=1, name=f"concat_{out_name}"))
    del sub.graph.output[:]
    sub.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs)
    if graph.input[0].name != INPUT_NAME:
        raise ValueError(f"backbone input is {graph.input[0].name!r}, expected {INPUT_NAME!r}")
    return sub


def tuned_initializers(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with the named initializers replaced by fine-tuned values (same shapes, float32)."""
    import onnx
    from onnx import numpy_helper

    tuned = onnx.ModelProto.FromString(model.SerializeToString())
    by_name = {i.name: i for i in tuned.graph.initializer}
    for name, array in arrays.items():
        if name not in by_name:
            raise KeyError(f"tuned initializer {name!r} is not in the backbone graph")
        if tuple(by_name[name].dims) != array.shape:
            raise ValueError(f"tuned initializer {name!r}: shape {array.shape} differs from the backbone's "
                             f"{tuple(by_name[name].dims)}")
        by_name[name].CopyFrom(numpy_helper.from_array(np.asarray(array, np.float32), name))
    return tuned


def head_feature_inputs(head: onnx.ModelProto) -> list[str]:
    """The backbone feature outputs (``feat8``, ``feat16``, ``feat32``) a head graph reads, in its input order."""
    return [i.name for i in head.graph.input if i.name in LEVELS]


def merge_backbone_and_head(backbone: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: image → cut backbone (the features the head reads) → head → ``density`` (N,1,H/16,W/16)."""
    import onnx
    from onnx import compose

    inputs = head_feature_inputs(head)
    backbone, head = apply_backbone_delta(backbone, head)
    cut = cut_backbone(backbone, inputs)
    opset = max(op.version for op in list(cut.opset_import) + list(head.opset_import) if op.domain in ("", "ai.onnx"))
    for m in (cut, head):
        m.ir_version = max(cut.ir_version, head.ir_version)
        del m.opset_import[:]
        m.opset_import.append(onnx.helper.make_opsetid("", opset))
    head = compose.add_prefix(head, "head/", rename_inputs=False, rename_outputs=False)
    merged = compose.merge_models(cut, head, io_map=[(n, n) for n in inputs])
    del merged.opset_import[1:]  # merge_models lists the shared default domain once per model; tools want it once
    onnx.checker.check_model(merged)
    return merged


def apply_backbone_delta(backbone: onnx.ModelProto, head: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(backbone with the head's ``backbone_delta/<name>`` initializers added to its weights, the head without them).

    A head trained with a fine-tuned backbone carries only the changes the project trained; the
    third-party weights they apply to still come from the registry, checked by sha256. A change stored
    as int8 is multiplied by its ``backbone_delta_scale/<name>`` (one step per output channel) first.
    """
    import onnx
    from onnx import numpy_helper

    head = onnx.ModelProto.FromString(head.SerializeToString())
    carried = [i for i in head.graph.initializer if i.name.startswith((DELTA_PREFIX, DELTA_SCALE_PREFIX))]
    if not carried:
        return backbone, head
    kept = [i for i in head.graph.initializer if not i.name.startswith((DELTA_PREFIX, DELTA_SCALE_PREFIX))]
    del head.graph.initializer[:]
    head.graph.initializer.extend(kept)
    deltas = {i.name.removeprefix(DELTA_PREFIX): numpy_helper.to_array(i) for i in carried if i.name.startswith(DELTA_PREFIX)}
    scales = {i.name.removeprefix(DELTA_SCALE_PREFIX): numpy_helper.to_array(i)
              for i in carried if i.name.startswith(DELTA_SCALE_PREFIX)}
    original = {i.name: i for i in backbone.graph.initializer}
    missing = sorted(set(deltas) - set(original))
    if missing:
        raise ValueError(f"the density head tunes backbone weights the backbone does not have: {missing[:3]}")
    tuned = {name: numpy_helper.to_array(original[name]).astype(np.float32) + _delta_value(name, delta, scales.pop(name, None))
             for name, delta in deltas.items()}
    if scales:
        raise ValueError(f"the density head has scales for no int8 backbone change: {sorted(scales)[:3]}")
    return tuned_initializers(backbone, tuned), head


def _delta_value(name: str, delta: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """A stored backbone change as float32: int8 steps times their output channel's scale, else the value itself."""
    if delta.dtype != np.int8:
        if scale is not None:
            raise ValueError(f"the density head's change to {name} is {delta.dtype}, yet it carries an int8 scale")
        return delta.astype(np.float32)
    if scale is None or scale.shape != delta.shape[:1]:
        raise ValueError(f"the density head's int8 change to {name} needs one scale per output channel "
                         f"({delta.shape[0]}), has {None if scale is None else scale.shape}")
    return delta.astype(np.float32) * scale.astype(np.float32).reshape((-1,) + (1,) * (delta.ndim - 1))


def head_metadata(head: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in head.metadata_props}


class DensityEstimator:
    """Counts people with a density map (:class:`detectors.base.CrowdEstimator`).

    ``estimate`` returns one :class:`CrowdEstimate` per image with no boxes, ``density`` at
    ``density_stride`` original pixels per cell; zone counts are sums of the map inside the zone.
    The merged graph is served by the shared :class:`detectors.runtime.Runtime` like any registry model.
    """

    name = "density"

    def __init__(self, model: OnnxModel, head_bytes: bytes, *, long_side: int | None = None):
        import onnx

        meta = head_metadata(onnx.load_from_string(head_bytes))
        self.model = model
        self.model_id = model.model_id
        self.stride = int(meta.get("stride", 16))
        self.long_side = int(long_side or meta.get("long_side", 1024))

    @classmethod
    def from_files(cls, backbone: Path | str, head: Path | str, *, providers: Sequence[str] = ("CPUExecutionProvider",),
                   intra_op_threads: int = 0, long_side: int | None = None) -> DensityEstimator:
        """Build from two ONNX files (the registry is the normal way; this one is for scripts and tests)."""
        from detectors.registry import InputSpec, ModelSpec, OutputSpec
        from detectors.runtime import Runtime
        from detectors.settings import RuntimeSettings

        backbone_bytes, head_bytes = Path(backbone).read_bytes(), Path(head).read_bytes()
        spec = ModelSpec(
            name=HEAD_MODEL, file=Path(head).name, sha256=_sha(head_bytes), size=len(head_bytes), task="crowd_density",
            licence="unknown", source=str(head),
            input=InputSpec(name=INPUT_NAME, shape=["batch", 3, "height", "width"], colour="BGR",
                            resize="letterbox_top_left", pad_value=PAD_VALUE),
            output=OutputSpec(name=DENSITY_OUTPUT, decoding="density"))
        runtime = Runtime(RuntimeSettings(providers=list(providers), intra_op_threads=intra_op_threads))
        model = runtime.merged_files(spec, backbone_bytes, head_bytes, merge_backbone_and_head)
        return cls(model, head_bytes, long_side=long_side)

    @classmethod
    def from_registry(cls, registry: ModelRegistry, settings: CrowdSettings, runtime: Runtime) -> DensityEstimator:
        """Head ``crowd_density`` (or ``settings.model`` when that names a density model) on its registered backbone."""
        head_name = settings.model if registry.spec(settings.model).task == "crowd_density" else HEAD_MODEL
        model, head_bytes = runtime.merged(registry, head_name, merge_backbone_and_head, BACKBONE_MODEL)
        return cls(model, head_bytes)

    def density(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """(map, original pixels per cell) per BGR image; the map covers the image only (padding cut off)."""
        out: list[tuple[np.ndarray, float] | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape[:2], []).append(i)

        def prepare(indices: Sequence[int]) -> tuple[np.ndarray, Letterbox]:
            tensors, boxes = zip(*(letterbox(images[i], self.long_side) for i in indices))
            return np.stack(tensors), boxes[0]

        def finish(maps: np.ndarray, box: Letterbox) -> list[tuple[np.ndarray, float]]:
            rows, cols = -(-box.height // self.stride), -(-box.width // self.stride)
            return [(np.ascontiguousarray(m[0, :rows, :cols], dtype=np.float32), self.stride / box.ratio) for m in maps]

        for indices in groups.values():
            for i, result in zip(indices, self.model.infer(indices, prepare, finish)):
                out[i] = result
        return out  # type: ignore[return-value]

    def estimate(self, images: Sequence[np.ndarray]) -> list[CrowdEstimate]:
        """One estimate per BGR image: an empty box array and the density map."""
        return [CrowdEstimate(boxes=np.zeros((0, 5), np.float32), density=m, density_stride=s)
                for m, s in self.density(images)]


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
