"""An ONNX graph run by torch with its float initializers as parameters, named as in the graph.

Fine-tuning writes the trained tensors back under the same initializer names, so the shipped graph is
the registry's graph with new weights (:func:`detectors.density.tuned_initializers`); a converter library would rename
modules and lose that mapping. Only the operators of the cut YOLOX backbone are implemented; any other
raises with its name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

SUPPORTED = ("Conv", "Sigmoid", "Mul", "Add", "Concat", "Slice", "MaxPool", "Resize")


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
        for init in graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.ndim >= 1 and array.size > 4:
                key = f"p{len(self.names)}"
                self.names[init.name] = key
                self.register_parameter(key, nn.Parameter(torch.from_numpy(array.copy())))
            else:
                self.constants[init.name] = array
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n), n.name) for n in graph.node]
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]

    def tensor(self, name: str, env: dict) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self.names[name])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        env = {self.input_name: images}
        for op, inputs, outputs, attrs, name in self.nodes:
            env[outputs[0]] = self._run(op, inputs, attrs, name, env)
        return [env[o] for o in self.output_names]

    def _run(self, op: str, inputs: list[str], attrs: dict, name: str, env: dict) -> torch.Tensor:
        if op == "Conv":
            x, w = env[inputs[0]], self.tensor(inputs[1], env)
            b = self.tensor(inputs[2], env) if len(inputs) > 2 and inputs[2] else None
            pad = _symmetric(attrs.get("pads", [0, 0, 0, 0]), name)
            return F.conv2d(x, w.to(x.dtype), None if b is None else b.to(x.dtype), stride=tuple(attrs.get("strides", [1, 1])),
                            padding=pad, dilation=tuple(attrs.get("dilations", [1, 1])), groups=attrs.get("group", 1))
        if op == "Sigmoid":
            return torch.sigmoid(env[inputs[0]])
        if op == "Mul":
            return env[inputs[0]] * env[inputs[1]]
        if op == "Add":
            return env[inputs[0]] + env[inputs[1]]
        if op == "Concat":
            return torch.cat([env[i] for i in inputs], dim=attrs["axis"])
        if op == "MaxPool":
            if attrs.get("ceil_mode", 0):
                raise ValueError(f"{name}: ceil_mode is not supported")
            return F.max_pool2d(env[inputs[0]], tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", [1, 1])),
                                _symmetric(attrs.get("pads", [0, 0, 0, 0]), name))
        if op == "Resize":
            scales = self.constants.get(inputs[2]) if len(inputs) > 2 else None
            if (attrs.get("mode") != b"nearest" or scales is None or list(scales[:2]) != [1, 1]
                    or attrs.get("coordinate_transformation_mode") != b"asymmetric" or attrs.get("nearest_mode") != b"floor"):
                raise ValueError(f"{name}: only nearest, asymmetric, floor Resize by constant scales is supported")
            return F.interpolate(env[inputs[0]], scale_factor=tuple(float(s) for s in scales[2:]), mode="nearest")
        if op == "Slice":
            x = env[inputs[0]]
            starts, ends = (self.constants[i] for i in inputs[1:3])
            axes = self.constants[inputs[3]] if len(inputs) > 3 and inputs[3] else np.arange(len(starts))
            steps = self.constants[inputs[4]] if len(inputs) > 4 and inputs[4] else np.ones(len(starts), int)
            index = [slice(None)] * x.dim()
            for s, e, a, st in zip(starts, ends, axes, steps):
                index[int(a)] = slice(int(s), min(int(e), x.shape[int(a)]), int(st))
            return x[tuple(index)]
        raise ValueError(f"{name}: operator {op} is not supported")

    def initializer_arrays(self) -> dict[str, np.ndarray]:
        """The current value of every trainable initializer, by its name in the graph."""
        return {name: getattr(self, key).detach().float().cpu().numpy() for name, key in self.names.items()}
