"""YOLOX decoding and letterbox preprocessing on synthetic inputs."""

import numpy as np
import pytest

from detectors.preprocess import to_tensor
from detectors.registry import InputSpec
from detectors.yolox import decode, grid, nms

STRIDES = (8, 16, 32)
SIZE = (64, 64)  # cells: 8*8 + 4*4 + 2*2 = 84


def empty_output(n=1, classes=2):
    out = np.zeros((n, 84, 5 + classes), np.float32)
    return out


def test_grid_order_is_row_major_per_stride():
    offsets, scales = grid(64, 64, STRIDES)
    assert len(offsets) == 84
    assert offsets[1].tolist() == [1, 0] and offsets[8].tolist() == [0, 1]
    assert scales[63, 0] == 8 and scales[64, 0] == 16 and scales[80, 0] == 32


def test_decode_places_box_and_scores_obj_times_class():
    out = empty_output()
    cell = 64 + 4 * 1 + 2  # stride 16, gx=2, gy=1
    out[0, cell] = [0.5, 0.5, np.log(2), np.log(3), 0.9, 0.8, 0.1]
    boxes = decode(out, SIZE, STRIDES, 0, np.array([0.5], np.float32), 0.5, 0.45)[0]
    # centre (2.5*16, 1.5*16) = (40, 24); w=32, h=48 in model pixels; / ratio 0.5
    assert boxes.shape == (1, 5)
    assert boxes[0, :4].tolist() == pytest.approx([48, 0, 112, 96])
    assert boxes[0, 4] == pytest.approx(0.72)


def test_decode_threshold_uses_the_requested_class():
    out = empty_output()
    out[0, 0] = [0, 0, 0, 0, 0.9, 0.2, 0.9]
    ratios = np.ones(1, np.float32)
    assert len(decode(out, SIZE, STRIDES, 0, ratios, 0.5, 0.45)[0]) == 0
    assert len(decode(out, SIZE, STRIDES, 1, ratios, 0.5, 0.45)[0]) == 1


def test_decode_rejects_wrong_cell_count():
    with pytest.raises(ValueError, match="cells"):
        decode(np.zeros((1, 10, 7), np.float32), SIZE, STRIDES, 0, np.ones(1), 0.5, 0.45)


def test_nms_merges_overlaps_and_keeps_best_first():
    b = np.array([[0, 0, 10, 10, 0.6], [1, 1, 11, 11, 0.9], [50, 50, 60, 60, 0.7]], np.float32)
    assert nms(b, 0.45).tolist() == [1, 2]


def test_letterbox_top_left_with_padding_and_raw_bgr():
    spec = InputSpec(name="images", shape=[1, 3, 8, 8], colour="BGR", resize="letterbox_top_left", pad_value=114)
    img = np.zeros((2, 4, 3), np.uint8)
    img[..., 0] = 10  # blue
    tensor, ratios = to_tensor([img, img], spec)
    assert tensor.shape == (2, 3, 8, 8) and tensor.dtype == np.float32
    assert ratios.tolist() == [2.0, 2.0]
    assert tensor[0, 0, :4, :8].min() == 10 and tensor[0, 1, :4, :8].max() == 0
    assert (tensor[0, :, 4:, :] == 114).all()


def test_stretch_rgb_normalised():
    spec = InputSpec(name="input", shape=["batch", 3, 4, 4], colour="RGB", resize="stretch", scale=1 / 255,
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    img = np.zeros((8, 2, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    tensor, ratios = to_tensor([img], spec)
    assert tensor[0, 0].min() == pytest.approx(1.0)  # R first
    assert tensor[0, 2].max() == pytest.approx(-1.0)
    assert ratios[0].tolist() == [2.0, 0.5]
