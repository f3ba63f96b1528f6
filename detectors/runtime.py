"""ONNX Runtime sessions: one per model per process, providers and threads from settings, batch serving.

A batch is served one of two ways; a model exported with a static batch of 1 (YOLOX) first gets a
dynamic batch dimension in memory with the ``onnx`` package (Reshape targets ``[1, …]`` become
``[0, …]``, i.e. "copy the batch dimension"; outputs equal batch 1 within 1e-4):

- ``dynamic``: chunks of ``max_batch`` images run at once with all intra-op threads; the right
  choice on a GPU.
- ``parallel``: the batch is cut into sub-batches, about two per pool thread and at most
  ``SUB_BATCH_PIXELS`` input pixels each, that run concurrently from a small thread pool with one
  intra-op thread each, each thread taking its sub-batch through
  prepare → run → finish; measured faster on CPU (see docs/benchmarks.md, ``guanjia bench detect``).

``auto`` picks ``parallel`` on the CPU provider for a fixed input size and ``dynamic`` otherwise (CUDA /
TensorRT, or an input whose size follows the image, where one large run keeps every core busy).

A fixed-size registry model is served from the resized uint8 image (``uint8_input``, default on): a
copy of its graph casts the input, subtracts the mean and carries ``scale / std`` and the channel order
in the first convolution's weights (:func:`fold_preprocessing`), so only a resize and a channel split
are left in Python, where they compete with inference for the cores.

Graphs built at load time from registry files (a frozen backbone merged with a project-trained head)
are served the same way through :meth:`Runtime.derived`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from detectors.preprocess import to_image_tensor, to_tensor
from detectors.registry import InputSpec, ModelError, ModelRegistry, ModelSpec
from detectors.settings import RuntimeSettings

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

BatchMode = Literal["dynamic", "parallel"]
T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")
# A parallel sub-batch holds at most this many input pixels: two 224² images. Measured on CPU: OnFire
# (224²) runs 8–10 % faster in 2–4-image calls than image by image, YOLOX-Nano (416²) 5–20 % slower
# (its activations outgrow the core's cache), so large inputs stay one image per call.
SUB_BATCH_PIXELS = 2 * 224 * 224
_LOCK = threading.Lock()  # guards the two dicts below, never held while a model loads
_SESSIONS: dict[tuple, OnnxModel] = {}
_LOADING: dict[tuple, threading.Lock] = {}  # one per key being loaded: a load waits only for the same model


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def resolve_providers(requested: list[str]) -> list[str]:
    """The requested providers that this onnxruntime build has, CPU last; the fallback is logged."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    chosen = [p for p in requested if p in present]
    missing = [p for p in requested if p not in present]
    if missing:
        log.warning("execution providers %s are not available (have %s); using %s",
                    missing, sorted(present), chosen or ["CPUExecutionProvider"])
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def make_batch_dynamic(model_bytes: bytes) -> bytes:
    """Return the model with a dynamic batch dimension (input, output and batch-1 Reshape targets)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    inits = {init.name: init for init in model.graph.initializer}
    consts = {node.output[0]: node for node in model.graph.node if node.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        target = node.input[1]
        if target in inits:
            tensor = inits[target]
        elif target in consts:
            tensor = consts[target].attribute[0].t
        else:
            continue  # computed at run time from a Shape: already follows the batch
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and shape.size and shape[0] == 1:
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def fold_preprocessing(model_bytes: bytes, spec: InputSpec) -> bytes | None:
    """The model taking the resized image as (N, 3, H, W) uint8 BGR instead of its normalised float tensor.

    Added in front: Cast, then Sub of ``mean / scale`` per channel; ``scale / std`` and the BGR → RGB
    swap go into the weights of the Convs that read the input. Subtracting before the conv, not in its
    bias, keeps the zero padding at the border exact. None when that is not possible (normalisation or
    a swap is needed but the input feeds something other than a plain Conv, or a fractional pad value).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inputs = [value for value in graph.input if value.name == spec.name]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT or not float(spec.pad_value).is_integer():
        return None
    served = np.arange(3) if spec.colour == "BGR" else np.array([2, 1, 0])  # model channel c ← served channel served[c]
    gain = np.float64(spec.scale) / np.asarray(spec.std, np.float64)
    mean = np.asarray(spec.mean, np.float64) / spec.scale
    consumers = [node for node in graph.node if spec.name in node.input]
    inits = {init.name: init for init in graph.initializer}
    if np.any(gain != 1) or spec.colour != "BGR":
        if not all(node.op_type == "Conv" and list(node.input).index(spec.name) == 0 and node.input[1] in inits
                   and all(a.name != "group" or a.i == 1 for a in node.attribute) for node in consumers):
            return None
        for node in consumers:
            weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64) * gain[None, :, None, None]
            folded = np.empty_like(weight)
            folded[:, served] = weight
            name = f"{node.input[1]}/folded"
            graph.initializer.append(numpy_helper.from_array(folded.astype(np.float32), name))
            node.input[1] = name
    cast, centred = f"{spec.name}/float", f"{spec.name}/centred"
    head = [helper.make_node("Cast", [spec.name], [cast], to=TensorProto.FLOAT, name=f"{spec.name}/cast")]
    if np.any(mean):
        offset = np.empty(3)
        offset[served] = mean
        graph.initializer.append(numpy_helper.from_array(offset.astype(np.float32).reshape(1, 3, 1, 1), f"{spec.name}/mean"))
        head.append(helper.make_node("Sub", [cast, f"{spec.name}/mean"], [centred], name=f"{spec.name}/sub_mean"))
    else:
        centred = cast
    for node in consumers:
        node.input[:] = [centred if name == spec.name else name for name in node.input]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(head + nodes)
    inputs[0].type.tensor_type.elem_type = TensorProto.UINT8
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.input}
    kept = [init for init in graph.initializer if init.name in used]  # drops the unfolded weights
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ort_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises for a graph it cannot load or run."""
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        Fail,
        InvalidArgument,
        InvalidGraph,
        InvalidProtobuf,
    )

    return Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, RuntimeError


def fold_shape_arithmetic(model_bytes: bytes, spec: InputSpec, model_name: str) -> bytes:
    """The model (``model_name``, for the log) with run-time shape arithmetic replaced by constants, for a fixed C×H×W input.

    An export with a dynamic batch computes every Reshape target (e.g. ShuffleNet's channel shuffle:
    Shape → Gather → Div → Unsqueeze → Concat) on each run: hundreds of tiny operators. Each Reshape
    target or Slice bound that is computed is evaluated at batch 1 and 2: the same value both times
    becomes a constant, a value that differs only by the batch in position 0 becomes a Reshape
    target with 0 there ("copy the batch dimension"). The dead arithmetic is dropped. The result
    must give the original's outputs at batch 3 (else the model is returned unchanged).
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    constant = {init.name for init in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    computed = sorted({name for node in graph.node for name in
                       (node.input[1:2] if node.op_type == "Reshape" else node.input[1:5] if node.op_type == "Slice" else [])
                       if name and name not in constant})
    if not computed:
        return model_bytes
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None) for name in computed)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    shape = tuple(int(d) for d in spec.shape[1:])
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        at1, at2 = (dict(zip(computed, session.run(computed, {spec.name: np.zeros((b, *shape), np.float32)})))
                    for b in (1, 2))
    except _ort_errors():  # serving the graph as it is reports them
        return model_bytes
    targets = {name for node in graph.node if node.op_type == "Reshape" for name in node.input[1:2]}
    replaced: dict[str, np.ndarray] = {}
    for name in computed:
        one, two = np.asarray(at1[name]), np.asarray(at2[name])
        if one.shape != two.shape:
            continue
        if np.array_equal(one, two):
            replaced[name] = one
        elif name in targets and one.ndim == 1 and (one[0], two[0]) == (1, 2) and np.array_equal(one[1:], two[1:]):
            replaced[name] = np.concatenate([[0], one[1:]]).astype(one.dtype)
    for name, value in replaced.items():
        graph.initializer.append(numpy_helper.from_array(value, name))
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        outputs = [o for o in node.output if o]
        if any(o in needed for o in outputs) and not all(o in replaced for o in outputs):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = needed | {value.name for value in graph.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]
    folded = model.SerializeToString()
    x = np.random.default_rng(0).uniform(-2, 2, (3, *shape)).astype(np.float32)
    before = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"]).run(None, {spec.name: x})
    after = ort.InferenceSession(folded, options, providers=["CPUExecutionProvider"]).run(None, {spec.name: x})
    if all(a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(before, after)):
        return folded
    log.warning("model %s: shape arithmetic left in place (constant-folded graph gave other outputs)", model_name)
    return model_bytes


def shuffle_as_gather(model_bytes: bytes) -> bytes:
    """The model with each constant-shape channel shuffle (Reshape to N×g×c/g×H×W, Transpose 0 2 1 3 4,
    Reshape back to N×c×H×W) done as one Gather of channels: the same permutation, exact, and cheaper
    than a 5-D transpose between two reshapes (≈ 3–5 % of OnFire's run)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    swaps: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()
    for node in graph.node:
        first, after = producer.get(node.input[0]) if node.op_type == "Transpose" else None, readers.get(node.output[0], [])
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        if (first is None or first.op_type != "Reshape" or perm != [[0, 2, 1, 3, 4]] or len(after) != 1
                or after[0].op_type != "Reshape" or len(readers.get(first.output[0], [])) != 1
                or first.input[1] not in values or after[0].input[1] not in values):
            continue
        grouped, back = values[first.input[1]], values[after[0].input[1]]
        if grouped.shape != (5,) or back.shape != (4,) or grouped[0] != 0 or back[0] != 0 or back[1] != grouped[1] * grouped[2]:
            continue
        groups, per_group = int(grouped[1]), int(grouped[2])
        order = np.array([(j % groups) * per_group + j // groups for j in range(groups * per_group)], np.int64)
        name = f"{node.name or node.output[0]}/channel_order"
        graph.initializer.append(numpy_helper.from_array(order, name))
        swaps[id(first)] = helper.make_node("Gather", [first.input[0], name], [after[0].output[0]], axis=1,
                                            name=f"{node.name or node.output[0]}/shuffle")
        dropped.update({id(node), id(after[0])})
    if not swaps:
        return model_bytes
    nodes = [swaps.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_session(model_bytes: bytes, providers: Sequence[str] = ("CPUExecutionProvider",),
                intra_op_threads: int = 0):
    """An onnxruntime session for an in-memory model: quiet logs, one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=list(providers))


def _served_graph(model_bytes: bytes, spec: ModelSpec, uint8_input: bool, fixed_size: bool,
                  rewrite: bool = True, rect: bool = False) -> tuple[bytes, bool, bool]:
    """The graph as served (dynamic batch; for a fixed input size and ``rewrite`` constant shapes and, when
    asked, uint8 input and open spatial dimensions for a ``rect`` letterbox), whether it takes uint8 and
    whether it takes rect canvases.

    Bytes the ``onnx`` package cannot parse are passed on untouched, so onnxruntime reports them. An
    optional rewrite that fails leaves the graph as it was before that rewrite (one warning). With open
    spatial dimensions the shape arithmetic is not folded: its constants would hold for the square only.
    """
    from google.protobuf.message import DecodeError

    opened = None
    try:
        if spec.input.static_batch:
            model_bytes = make_batch_dynamic(model_bytes)
        if fixed_size and rewrite and rect and spec.input.rect_multiple and spec.input.resize == "letterbox_top_left":
            opened = _optional(lambda b: free_spatial_dims(b, spec.input), model_bytes, spec.name, "rect letterbox")
            if opened is None:
                log.info("model %s: served at its declared %dx%d only (the graph does not run at smaller canvases)",
                         spec.name, spec.input.width, spec.input.height)
        if opened is not None:
            model_bytes = opened
        elif fixed_size and rewrite:
            model_bytes = _optional(lambda b: fold_shape_arithmetic(b, spec.input, spec.name), model_bytes, spec.name,
                                    "constant shapes") or model_bytes
        if fixed_size and rewrite:
            model_bytes = _optional(shuffle_as_gather, model_bytes, spec.name, "channel shuffle as Gather") or model_bytes
        folded = (_optional(lambda b: fold_preprocessing(b, spec.input), model_bytes, spec.name, "uint8 input")
                  if uint8_input and fixed_size and rewrite else None)
    except DecodeError:
        return model_bytes, False, False
    return (model_bytes if folded is None else folded), folded is not None, opened is not None


def free_spatial_dims(model_bytes: bytes, spec: InputSpec) -> bytes | None:
    """The model with its input height and width (and every output dimension but the batch) left open, so
    that a letterboxed image can be served in a canvas smaller than the declared square
    (:func:`detectors.preprocess.canvas_size`). None when the graph does not run at a canvas one
    ``rect_multiple`` smaller on each side (e.g. a flatten into a fixed-size layer)."""
    import onnx
    import onnxruntime as ort

    m = spec.rect_multiple
    model = onnx.load_from_string(model_bytes)
    inputs = [value for value in model.graph.input if value.name == spec.name]
    if not m or len(inputs) != 1 or spec.height - m < m or spec.width - m < m:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for value in model.graph.output:
        for i, dim in enumerate(value.type.tensor_type.shape.dim[1:], start=1):
            dim.dim_param = f"{value.name}_{i}"
    del model.graph.value_info[:]
    opened = model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(opened, options, providers=["CPUExecutionProvider"])
        session.run(None, {spec.name: np.zeros((1, 3, spec.height - m, spec.width - m), np.float32)})
    except _ort_errors():
        return None
    return opened


def _optional(rewrite: Callable[[bytes], bytes | None], model_bytes: bytes, model_name: str, what: str) -> bytes | None:
    """``rewrite(model_bytes)``, or None with one warning when it fails: a speed-up never stops a model from loading."""
    from google.protobuf.message import DecodeError

    try:
        return rewrite(model_bytes)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx checker, onnxruntime or numpy: the graph before it is still good
        first = (str(exc).strip().splitlines() or [""])[0]
        log.warning("model %s: %s skipped (%s: %s)", model_name, what, type(exc).__name__, first)
        return None


MergeGraphs = Callable[["onnx.ModelProto", "onnx.ModelProto"], "onnx.ModelProto"]
"""Builds one graph from a backbone and a head (e.g. ``detectors.density.merge_backbone_and_head``)."""


def merge_bytes(merge: MergeGraphs, backbone_bytes: bytes, head_bytes: bytes) -> bytes:
    """``merge`` applied to two serialised ONNX graphs, serialised."""
    import onnx

    return merge(onnx.load_from_string(backbone_bytes), onnx.load_from_string(head_bytes)).SerializeToString()


def graph_metadata(model_bytes: bytes) -> dict[str, str]:
    """The ``metadata_props`` of a serialised ONNX graph as a dict."""
    import onnx

    return {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}


class OnnxModel:
    """A verified model file behind one onnxruntime session.

    ``rewrite=False`` serves the file as published (only a static batch of 1 is made dynamic): the
    benchmark's ceiling.
    """

    def __init__(self, spec: ModelSpec, model_bytes: bytes, settings: RuntimeSettings, *, uint8_input: bool = False,
                 rewrite: bool = True):
        self.spec = spec
        self.model_id = spec.model_id
        self.providers = resolve_providers(settings.providers)
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        fixed_size = all(isinstance(d, int) for d in spec.input.shape[2:])
        mode = settings.batching if settings.batching != "auto" else ("parallel" if on_cpu and fixed_size else "dynamic")
        self.batch_mode: BatchMode = mode
        self.max_batch = settings.max_batch
        # TensorRT builds an engine per input shape: canvases that vary per batch would rebuild it
        rect = settings.rect_letterbox and self.providers[0] != "TensorrtExecutionProvider"
        model_bytes, self.uint8_input, self.rect = _served_graph(model_bytes, spec, uint8_input, fixed_size, rewrite, rect=rect)
        self.parallel_runs = settings.parallel_runs or cpu_count()
        intra = settings.intra_op_threads or (1 if mode == "parallel" and self.parallel_runs > 1 else 0)
        try:
            self.session = ort_session(model_bytes, self.providers, intra)
        except _ort_errors() as exc:
            raise ModelError(f"model {spec.name}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        actual = self.session.get_providers()
        if actual[0] != self.providers[0]:
            log.warning("model %s: %s did not start; running on %s", spec.name, self.providers[0], actual[0])
        self.providers = actual
        self.input_name = spec.input.name
        pixels = spec.input.height * spec.input.width if fixed_size else SUB_BATCH_PIXELS
        self._sub_batch = max(1, SUB_BATCH_PIXELS // pixels)
        self._pool = ThreadPoolExecutor(self.parallel_runs, thread_name_prefix=f"ort-{spec.name}") if mode == "parallel" and self.parallel_runs > 1 else None

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """BGR images → (the tensor this session takes, resize ratios): uint8 images or the normalised floats,
        letterboxed into the smallest canvas the graph allows when :attr:`rect`."""
        return (to_image_tensor if self.uint8_input else to_tensor)(images, self.spec.input, self.rect)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """First output for a batch of any size in the served input form (see :meth:`prepare`), in order."""
        if len(batch) == 0:
            raise ValueError("empty batch")
        return np.concatenate(self.infer(batch, lambda chunk: (chunk, None), lambda out, _: [out]))

    def infer(self, items: Sequence[T], prepare: Callable[[Sequence[T]], tuple[np.ndarray, C]],
              finish: Callable[[np.ndarray, C], list[R]]) -> list[R]:
        """``finish(run(prepare(chunk)))`` over ``items``, results in order.

        In ``parallel`` mode the items are cut into about two sub-batches per pool thread (one item
        each for small batches) and each pool thread takes its sub-batch through prepare → run →
        finish, so pre- and post-processing of one sub-batch overlap the inference of another while
        small models still run a few images per call; in ``dynamic`` mode chunks of ``max_batch``
        items go through as one run.
        """
        size = self.max_batch
        if self._pool is not None:
            size = min(size, self._sub_batch, max(1, -(-len(items) // (2 * self.parallel_runs))))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]

        def one(chunk: Sequence[T]) -> list[R]:
            tensor, context = prepare(chunk)
            return finish(self.session.run(None, {self.input_name: tensor})[0], context)

        parts = self._pool.map(one, chunks) if self._pool is not None and len(chunks) > 1 else map(one, chunks)
        return [result for part in parts for result in part]


class Runtime:
    """Hands out the process-wide :class:`OnnxModel` of each model (created on first use)."""

    def __init__(self, settings: RuntimeSettings | None = None):
        self.settings = settings or RuntimeSettings()

    def model(self, registry: ModelRegistry, name: str) -> OnnxModel:
        """The shared session for ``name``; the file is located and sha256-checked first."""
        spec = registry.spec(name)
        path = registry.locate(name)  # every registry proves its own file, even when the session exists
        return self._shared((spec.sha256,), spec, path.read_bytes, str(path), self.settings.uint8_input)

    def derived(self, spec: ModelSpec, parts: Sequence[str], build: Callable[[], bytes]) -> OnnxModel:
        """The shared session for a graph built in memory, e.g. a registry backbone merged with a trained head.

        ``parts`` name what the graph is made of (the sha256 of every file it is built from): ``build``
        runs once per parts and runtime settings in this process; a fixed-size input is served as uint8
        like a registry model when ``uint8_input`` is set (:meth:`OnnxModel.prepare` gives the tensor
        either way). The caller verifies those files
        (``registry.locate``) before calling. A graph that cannot be built or loaded raises
        :class:`ModelError`, never an onnx/onnxruntime traceback.
        """

        def checked_build() -> bytes:
            from google.protobuf.message import DecodeError
            from onnx.checker import ValidationError

            try:
                return build()
            except (ValueError, LookupError, ValidationError, DecodeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ModelError(f"model {spec.name}: cannot build its graph: {first}") from None

        return self._shared(("derived", spec.name, *parts), spec, checked_build, "+".join(p[:12] for p in parts),
                            self.settings.uint8_input)

    def merged(self, registry: ModelRegistry, head: str, merge: MergeGraphs,
               default_backbone: str) -> tuple[OnnxModel, bytes]:
        """Registry head ``head`` merged behind its backbone, served like :meth:`derived`; also the head's bytes.

        The backbone is the head's registry ``backbone``, else the ``backbone`` in the head file's
        metadata, else ``default_backbone``; both files are located and sha256-checked first.
        """
        spec = registry.spec(head)
        head_bytes = registry.locate(head).read_bytes()
        backbone = spec.backbone or graph_metadata(head_bytes).get("backbone", default_backbone)
        backbone_path = registry.locate(backbone)
        parts = (registry.spec(backbone).sha256, spec.sha256)
        model = self.derived(spec, parts, lambda: merge_bytes(merge, backbone_path.read_bytes(), head_bytes))
        return model, head_bytes

    def merged_files(self, spec: ModelSpec, backbone_bytes: bytes, head_bytes: bytes, merge: MergeGraphs) -> OnnxModel:
        """Like :meth:`merged` for two files read by the caller (scripts and tests); ``spec`` describes the head."""
        import hashlib

        parts = (hashlib.sha256(backbone_bytes).hexdigest(), spec.sha256)
        return self.derived(spec, parts, lambda: merge_bytes(merge, backbone_bytes, head_bytes))

    def _shared(self, ident: tuple[str, ...], spec: ModelSpec, read: Callable[[], bytes], origin: str,
                uint8_input: bool) -> OnnxModel:
        s = self.settings
        key = (*ident, tuple(s.providers), s.intra_op_threads, s.batching, s.parallel_runs, s.max_batch, uint8_input,
               s.rect_letterbox)
        with _LOCK:
            if key in _SESSIONS:
                return _SESSIONS[key]
            loading = _LOADING.setdefault(key, threading.Lock())
        with loading:
            with _LOCK:
                if key in _SESSIONS:
                    return _SESSIONS[key]
            model = OnnxModel(spec, read(), s, uint8_input=uint8_input)
            log.info("model %s loaded from %s on %s (%s batches%s)", spec.model_id, origin, model.providers[0],
                     model.batch_mode, ", rect letterbox" if model.rect else "")
            with _LOCK:
                _SESSIONS[key] = model
                del _LOADING[key]
        return model
