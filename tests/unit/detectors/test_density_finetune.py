"""Fine-tuning (torch, the ``[train]`` extra): the torch graph is the ONNX graph, and what it trains exports exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.plugins.shared import shared_path

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from detectors.density import cut_backbone, letterbox, merge_backbone_and_head, tuned_initializers
from detectors.training.export import head_to_onnx
from detectors.training.finetune import OUTPUTS, FinetuneConfig, build, predict, train
from detectors.training.head import DensityHead, Mlp, Whitening
from detectors.training.torch_graph import OnnxGraph

CPU = torch.device("cpu")


def _backbone():
    return onnx.load(shared_path("models", "yolox_nano_coco_416.onnx"))


def _counts(model, images, long_side):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.array([session.run(None, {"images": letterbox(im, long_side)[0][None]})[0].sum() for im in images])


def _start_head(rng: np.random.Generator) -> DensityHead:
    dims, comps, hidden = 896, 16, 8
    whitening = Whitening(rng.normal(0, 1, dims).astype(np.float32), rng.normal(0, 0.02, (dims, comps)).astype(np.float32))
    mlps = [Mlp(rng.normal(0, 0.3, (comps, hidden)).astype(np.float32), rng.normal(0, 0.1, hidden).astype(np.float32),
                rng.normal(0, 0.3, (k * k * hidden, 1)).astype(np.float32), np.array([-1.0], np.float32), k) for k in (1, 3)]
    return DensityHead(whitening, mlps, stride32=True)


@pytest.mark.shared
def test_the_torch_graph_computes_what_onnxruntime_computes():
    cut = cut_backbone(_backbone(), OUTPUTS)
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 128, 160)).astype(np.float32)
    with torch.no_grad():
        ours = [t.numpy() for t in OnnxGraph(cut)(torch.from_numpy(image))]
    theirs = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": image})
    assert [o.shape for o in ours] == [(1, 128, 16, 20), (1, 128, 8, 10), (1, 128, 4, 5)]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=2e-4 * np.abs(b).max())


def test_the_torch_graph_names_an_operator_it_cannot_run():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(ValueError, match="Softmax"):
        OnnxGraph(helper.make_model(graph))


@pytest.mark.shared
def test_a_net_started_from_a_head_is_that_head_and_its_fine_tuned_weights_export_exactly():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(4)]
    counts = np.array([3.0, 5.0, 0.0, 7.0])
    cfg = FinetuneConfig(long_side=128, batch_images=2, epochs=2, warmup_epochs=1, precision="fp32")
    backbone, start = _backbone(), _start_head(rng)
    net, scaled = build(backbone, images, counts, cfg, CPU, start)
    before = predict(net, images, cfg, CPU)
    np.testing.assert_allclose(before, _counts(merge_backbone_and_head(backbone, head_to_onnx(start, {})), images, 128),
                               rtol=1e-4)
    history = train(net, scaled, counts, cfg, CPU)
    after = predict(net, images, cfg, CPU)
    assert len(history) == 2 and np.abs(after - before).max() > 1e-3
    tuned = net.backbone.initializer_arrays()
    original = {i.name: onnx.numpy_helper.to_array(i) for i in backbone.graph.initializer}
    assert max(np.abs(tuned[k] - original[k]).max() for k in tuned) > 0  # the backbone moved after its warm-up epoch
    exported = merge_backbone_and_head(tuned_initializers(backbone, tuned), head_to_onnx(net.density_head(), {}))
    np.testing.assert_allclose(after, _counts(exported, images, 128), rtol=1e-4)


@pytest.mark.shared
def test_a_fresh_head_learns_to_tell_an_empty_frame_from_a_busy_one():
    rng = np.random.default_rng(2)
    busy = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    empty = [np.full((64, 96, 3), 120, np.uint8) for _ in range(3)]
    counts = np.array([20.0] * 3 + [0.0] * 3)
    cfg = FinetuneConfig(long_side=96, batch_images=3, epochs=40, warmup_epochs=40, lr_head=3e-3, scales=(1.0,),
                         norm_images=6, spatial_heads=0)
    net, scaled = build(_backbone(), busy + empty, counts, cfg, CPU)
    train(net, scaled, counts, cfg, CPU)
    pred = predict(net, busy + empty, cfg, CPU)
    assert pred[:3].min() > 10 and pred[3:].max() < 3


@pytest.mark.shared
def test_distillation_holds_the_whitened_features_nearer_the_frozen_backbones():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(4)]
    counts = np.array([3.0, 5.0, 0.0, 7.0])
    changes = {}
    for weight in (0.0, 50.0):
        cfg = FinetuneConfig(long_side=128, batch_images=2, epochs=3, warmup_epochs=0, lr_backbone=1e-3,
                             precision="fp32", scales=(1.0,), distill=weight)
        net, scaled = build(_backbone(), images, counts, cfg, CPU, _start_head(np.random.default_rng(1)))
        frozen = net.whitened(scaled[0].pixels.float()).detach()
        history = train(net, scaled, counts, cfg, CPU)
        assert ("feature_change" in history[-1]) == (weight > 0)
        changes[weight] = float(((net.whitened(scaled[0].pixels.float()).detach() - frozen) ** 2).mean())
    assert 0 < changes[50.0] < 0.5 * changes[0.0]


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="fp16")
