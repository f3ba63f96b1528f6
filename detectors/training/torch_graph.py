"""An ONNX graph run by torch with its float initializers as parameters, named as in the graph.

Fine-tuning writes the trained tensors back under the same initializer names, so the shipped graph is
the registry's graph with new weights (:func:`detectors.density.tuned_initializers`); a converter library would rename
modules and lose that mapping. The operators implemented are those of the cut YOLOX backbone and of the OnFire
ShuffleNetV2 classifier, whose channel shuffle computes its shapes in the graph (Shape, Gather, Div, …): those
integer tensors are evaluated with numpy. Any other operator raises with its name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

SUPPORTED = ("Conv", "Sigmoid", "Relu", "Mul", "Add", "Div", "Concat", "Slice", "MaxPool", "Resize", "ReduceMean", "Gemm",
             "Constant", "Shape", "Gather", "Unsqueeze", "Cast", "Reshape", "Transpose")
WEIGHT_CONSUMERS = {"Conv", "Gemm"}
ONNX_INT_TYPES = {6: np.int32, 7: np.int64}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _symmetric(pads: Sequence[int], node: str) -> tuple[int, int]:
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        raise ValueError(f"{node}: asymmetric pads {list(pads)} are not supported")
    return top, left


class OnnxGraph(nn.Module):
    """``forward(images)`` → the graph's outputs, in order. Float initializers are trainable parameters."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        unsupported = sorted({n.op_type for n in graph.node} - set(SUPPORTED))
        if unsupported:
            raise ValueError(f"operators not supported by the torch runner: {unsupported}")
        self.names: dict[str, str] = {}  # initializer name → parameter name (dots are not allowed in the latter)
        self.constants: dict[str, np.ndarray] = {}
        consumers: dict[str, set[str]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, set()).add(node.op_type)
        for init in graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.ndim >= 1 and consumers.get(init.name, set()) <= WEIGHT_CONSUMERS:
                key = f"p{len(self.names)}"
                self.names[init.name] = key
                self.register_parameter(key, nn.Parameter(torch.from_numpy(array.copy())))
            else:
                self.constants[init.name] = array
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n), n.name) for n in graph.node]
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]

    def tensor(self, name: str, env: dict) -> torch.Tensor | np.ndarray:
        """A value by name: computed (torch, or numpy for shape arithmetic), a parameter, or a constant."""
        if name in env:
            return env[name]
        if name in self.names:
            return getattr(self, self.names[name])
        return self.constants[name]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        env = {self.input_name: images}
        for op, inputs, outputs, attrs, name in self.nodes:
            value = self._run(op, inputs, attrs, name, env)
            env[outputs[0]] = np.asarray(value) if isinstance(value, np.generic) else value
        return [env[o] for o in self.output_names]

    def _run(self, op: str, inputs: list[str], attrs: dict, name: str, env: dict) -> torch.Tensor | np.ndarray:
        args = [self.tensor(i, env) if i else None for i in inputs]
        if op == "Conv":
            x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
            pad = _symmetric(attrs.get("pads", [0, 0, 0, 0]), name)
            return F.conv2d(x, w.to(x.dtype), None if b is None else b.to(x.dtype), stride=tuple(attrs.get("strides", [1, 1])),
                            padding=pad, dilation=tuple(attrs.get("dilations", [1, 1])), groups=attrs.get("group", 1))
        if op == "Sigmoid":
            return torch.sigmoid(args[0])
        if op == "Relu":
            return torch.relu(args[0])
        if op in ("Mul", "Add", "Div"):
            a, b = args
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
                if op == "Div" and a.dtype.kind in "iu":
                    return (a // b).astype(a.dtype)
                return {"Mul": np.multiply, "Add": np.add, "Div": np.divide}[op](a, b)
            a, b = (torch.as_tensor(v).to(a if isinstance(a, torch.Tensor) else b) if isinstance(v, np.ndarray) else v
                    for v in (a, b))
            return {"Mul": torch.mul, "Add": torch.add, "Div": torch.div}[op](a, b)
        if op == "Concat":
            if all(isinstance(a, np.ndarray) for a in args):
                return np.concatenate(args, axis=attrs["axis"])
            return torch.cat(args, dim=attrs["axis"])
        if op == "MaxPool":
            if attrs.get("ceil_mode", 0):
                raise ValueError(f"{name}: ceil_mode is not supported")
            return F.max_pool2d(args[0], tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", [1, 1])),
                                _symmetric(attrs.get("pads", [0, 0, 0, 0]), name))
        if op == "Resize":
            scales = self.constants.get(inputs[2]) if len(inputs) > 2 else None
            if (attrs.get("mode") != b"nearest" or scales is None or list(scales[:2]) != [1, 1]
                    or attrs.get("coordinate_transformation_mode") != b"asymmetric" or attrs.get("nearest_mode") != b"floor"):
                raise ValueError(f"{name}: only nearest, asymmetric, floor Resize by constant scales is supported")
            return F.interpolate(args[0], scale_factor=tuple(float(s) for s in scales[2:]), mode="nearest")
        if op == "Slice":
            x, starts, ends = args[:3]
            axes = args[3] if len(args) > 3 and args[3] is not None else np.arange(len(starts))
            steps = args[4] if len(args) > 4 and args[4] is not None else np.ones(len(starts), int)
            index = [slice(None)] * x.dim()
            for s, e, a, st in zip(starts, ends, axes, steps):
                index[int(a)] = slice(int(s), min(int(e), x.shape[int(a)]), int(st))
            return x[tuple(index)]
        if op == "ReduceMean":
            return args[0].mean(dim=tuple(attrs["axes"]), keepdim=bool(attrs.get("keepdims", 1)))
        if op == "Gemm":
            a, b = args[0], args[1]
            if attrs.get("transA", 0):
                a = a.t()
            if attrs.get("transB", 0):
                b = b.t()
            out = attrs.get("alpha", 1.0) * (a @ b.to(a.dtype))
            if len(args) > 2 and args[2] is not None:
                c = args[2]
                out = out + attrs.get("beta", 1.0) * (torch.as_tensor(c) if isinstance(c, np.ndarray) else c).to(out)
            return out
        if op == "Constant":
            return numpy_helper.to_array(attrs["value"])
        if op == "Shape":
            return np.array(args[0].shape, dtype=np.int64)
        if op == "Gather":
            return np.take(args[0], args[1], axis=attrs.get("axis", 0))
        if op == "Unsqueeze":
            return np.expand_dims(args[0], tuple(int(a) for a in args[1]))
        if op == "Cast":
            dtype = ONNX_INT_TYPES.get(attrs["to"])
            if dtype is None or not isinstance(args[0], np.ndarray):
                raise ValueError(f"{name}: only casts of shape integers are supported")
            return args[0].astype(dtype)
        if op == "Reshape":
            x, shape = args
            shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
            return x.reshape(shape)
        if op == "Transpose":
            return args[0].permute(*attrs["perm"])
        raise ValueError(f"{name}: operator {op} is not supported")

    def initializer_arrays(self) -> dict[str, np.ndarray]:
        """The current value of every trainable initializer, by its name in the graph."""
        return {name: getattr(self, key).detach().float().cpu().numpy() for name, key in self.names.items()}
