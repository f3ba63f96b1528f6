"""ONNX Runtime sessions: one per model per process, providers and threads from settings, batch serving.

A model exported with a static batch of 1 (YOLOX) is served one of two ways:

- ``dynamic``: its batch dimension is made dynamic in memory with the ``onnx`` package (Reshape
  targets ``[1, …]`` become ``[0, …]``, i.e. "copy the batch dimension") and whole batches run at once;
  the right choice on a GPU.
- ``parallel``: single-image runs of the one session from a small thread pool, one intra-op thread
  each; measured faster on CPU (see docs/benchmarks.md, ``guanjia bench detect``).

``auto`` picks ``parallel`` on the CPU provider for a fixed input size and ``dynamic`` otherwise (CUDA /
TensorRT, or an input whose size follows the image, where one large run keeps every core busy).

Graphs built at load time from registry files (a frozen backbone merged with a project-trained head)
are served the same way through :meth:`Runtime.derived`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import numpy as np

from detectors.registry import ModelError, ModelRegistry, ModelSpec
from detectors.settings import RuntimeSettings

log = logging.getLogger(__name__)

BatchMode = Literal["dynamic", "parallel"]
T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")
_LOCK = threading.Lock()
_SESSIONS: dict[tuple, OnnxModel] = {}


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


def ort_session(model_bytes: bytes, providers: Sequence[str] = ("CPUExecutionProvider",),
                intra_op_threads: int = 0):
    """An onnxruntime session for an in-memory model: quiet logs, one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=list(providers))


class OnnxModel:
    """A verified model file behind one onnxruntime session."""

    def __init__(self, spec: ModelSpec, model_bytes: bytes, settings: RuntimeSettings):
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            Fail,
            InvalidArgument,
            InvalidGraph,
            InvalidProtobuf,
        )

        self.spec = spec
        self.model_id = spec.model_id
        self.providers = resolve_providers(settings.providers)
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        fixed_size = all(isinstance(d, int) for d in spec.input.shape[2:])
        mode = settings.batching if settings.batching != "auto" else ("parallel" if on_cpu and fixed_size else "dynamic")
        self.batch_mode: BatchMode = mode
        self.max_batch = settings.max_batch
        if mode == "dynamic" and spec.input.static_batch:
            model_bytes = make_batch_dynamic(model_bytes)
        self.parallel_runs = settings.parallel_runs or cpu_count()
        intra = settings.intra_op_threads or (1 if mode == "parallel" and self.parallel_runs > 1 else 0)
        try:
            self.session = ort_session(model_bytes, self.providers, intra)
        except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, RuntimeError) as exc:
            raise ModelError(f"model {spec.name}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        actual = self.session.get_providers()
        if actual[0] != self.providers[0]:
            log.warning("model %s: %s did not start; running on %s", spec.name, self.providers[0], actual[0])
        self.providers = actual
        self.input_name = spec.input.name
        self._pool = ThreadPoolExecutor(self.parallel_runs, thread_name_prefix=f"ort-{spec.name}") if mode == "parallel" and self.parallel_runs > 1 else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """First output for an NCHW float32 batch of any size, in order (served like :meth:`infer`)."""
        if len(batch) == 0:
            raise ValueError("empty batch")
        return np.concatenate(self.infer(batch, lambda chunk: (chunk, None), lambda out, _: [out]))

    def infer(self, items: Sequence[T], prepare: Callable[[Sequence[T]], tuple[np.ndarray, C]],
              finish: Callable[[np.ndarray, C], list[R]]) -> list[R]:
        """``finish(run(prepare(chunk)))`` over ``items``, results in order.

        In ``parallel`` mode each pool thread takes one item through prepare → run → finish, so
        pre- and post-processing of one image overlap the inference of another; in ``dynamic``
        mode chunks of ``max_batch`` items go through as one run.
        """
        size = self.max_batch if self.batch_mode == "dynamic" else 1
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
        return self._shared((spec.sha256,), spec, path.read_bytes, str(path))

    def derived(self, spec: ModelSpec, parts: Sequence[str], build: Callable[[], bytes]) -> OnnxModel:
        """The shared session for a graph built in memory, e.g. a registry backbone merged with a trained head.

        ``parts`` name what the graph is made of (the sha256 of every file it is built from): ``build``
        runs once per parts and runtime settings in this process. The caller verifies those files
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

        return self._shared(("derived", spec.name, *parts), spec, checked_build, "+".join(p[:12] for p in parts))

    def _shared(self, ident: tuple[str, ...], spec: ModelSpec, read: Callable[[], bytes], origin: str) -> OnnxModel:
        s = self.settings
        key = (*ident, tuple(s.providers), s.intra_op_threads, s.batching, s.parallel_runs, s.max_batch)
        with _LOCK:
            if key not in _SESSIONS:
                _SESSIONS[key] = OnnxModel(spec, read(), s)
                log.info("model %s loaded from %s on %s (%s batches)", spec.model_id, origin,
                         _SESSIONS[key].providers[0], _SESSIONS[key].batch_mode)
            return _SESSIONS[key]
