"""Fire fine-tuning (torch, the ``[train]`` extra): the torch graph is OnFire's graph, views are well formed, and a fit
changes only the weights it may and exports exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.plugins.shared import shared_path

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from detectors.density import tuned_initializers
from detectors.training.fire_finetune import (
    MEAN_RGB,
    STD_RGB,
    FireFinetuneConfig,
    augment,
    fire_logits,
    normalise,
    train,
    trainable_names,
)
from detectors.training.torch_graph import OnnxGraph


def _onfire():
    return onnx.load(shared_path("models", "shufflenetv2_onfire_224.onnx"))


def _ort_fire_logits(model, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = normalise(torch.from_numpy(images)).numpy()
    return -session.run(None, {"input": x})[0][:, 0]


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


@pytest.mark.shared
def test_the_torch_graph_runs_onfire_as_onnxruntime_does():
    model = _onfire()
    images = _images(3)
    ours = fire_logits(OnnxGraph(model), torch.from_numpy(images))
    np.testing.assert_allclose(ours, _ort_fire_logits(model, images), atol=1e-4)


@pytest.mark.shared
def test_last_stage_training_leaves_the_early_layers_and_exports_what_it_trained():
    model = _onfire()
    free = trainable_names(model, "last")
    everything = trainable_names(model, "all")
    assert "fc.weight" in free and free < everything
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv").input[1]
    assert first_conv not in free
    images = _images(8, seed=1)
    labels = np.r_[np.ones(4), np.zeros(4)].astype(np.float32)
    graph = train(model, torch.from_numpy(images), labels, FireFinetuneConfig(epochs=1, batch_images=4, trainable="last"))
    before = OnnxGraph(model).initializer_arrays()
    after = graph.initializer_arrays()
    changed = {n for n in after if not np.array_equal(after[n], before[n])}
    assert changed and changed <= free
    tuned = tuned_initializers(model, after)
    np.testing.assert_allclose(_ort_fire_logits(tuned, images), fire_logits(graph, torch.from_numpy(images)), atol=1e-4)


def test_views_of_a_flat_image_stay_flat_and_are_normalised_as_the_graph_expects():
    bgr = (30, 120, 200)
    images = torch.from_numpy(np.broadcast_to(np.array(bgr, np.uint8), (4, 224, 224, 3)).copy())
    cfg = FireFinetuneConfig(jitter=0.0, degrade=True)
    views = augment(images, cfg, torch.Generator().manual_seed(0))
    assert views.shape == (4, 3, 224, 224)
    rgb = np.array(bgr[::-1]) / 255.0
    expected = (rgb - np.array(MEAN_RGB)) / np.array(STD_RGB)
    np.testing.assert_allclose(views.mean(dim=(0, 2, 3)).numpy(), expected, atol=1e-5)
    assert float(views.std(dim=(2, 3)).max()) < 1e-5


def test_views_differ_between_draws_and_an_unknown_trainable_set_is_refused():
    images = torch.from_numpy(_images(2, seed=2))
    gen = torch.Generator().manual_seed(0)
    cfg = FireFinetuneConfig()
    a, b = augment(images, cfg, gen), augment(images, cfg, gen)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="trainable"):
        FireFinetuneConfig(trainable="some")
