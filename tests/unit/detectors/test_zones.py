"""Zone counting on synthetic boxes and density maps."""

import numpy as np
import pytest

from detectors.base import CrowdEstimate
from detectors.settings import Zone
from detectors.zones import ZoneCounter, cell_weights, polygon_mask

H, W = 100, 200
LEFT = Zone(name="left", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], area_m2=10)
TOP_RIGHT = Zone(name="top_right", polygon=[(0.5, 0), (1, 0), (1, 0.5), (0.5, 0.5)])


def boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def by_zone(counts):
    return {z.zone: (z.count, z.density_per_m2) for z in counts}


def test_boxes_are_counted_by_bottom_centre():
    # bottom-centres: (50, 90) left; (150, 40) top-right; a box spanning both halves whose bottom-centre is (110, 95): neither
    est = CrowdEstimate(boxes=boxes([40, 10, 60, 90, 0.9], [140, 0, 160, 40, 0.8], [20, 5, 200, 95, 0.7]))
    counts, kept = ZoneCounter([LEFT, TOP_RIGHT]).count(est, H, W)
    assert by_zone(counts) == {"*": (3.0, None), "left": (1.0, 0.1), "top_right": (1.0, None)}
    assert len(kept) == 3


def test_ignore_mask_drops_boxes_standing_in_it():
    ignore = [[(0, 0), (0.3, 0), (0.3, 1), (0, 1)]]
    est = CrowdEstimate(boxes=boxes([10, 10, 30, 80, 0.9], [70, 10, 90, 80, 0.9]))  # bottom-centres x=20 (ignored), x=80
    counts, kept = ZoneCounter([LEFT], ignore).count(est, H, W)
    assert by_zone(counts) == {"*": (1.0, None), "left": (1.0, 0.1)}
    assert kept[:, 0].tolist() == [70]


def test_box_bottom_on_the_frame_edge_is_clipped_inside():
    est = CrowdEstimate(boxes=boxes([0, 50, 20, 130, 0.9]))  # y2 beyond the frame
    counts, _ = ZoneCounter([LEFT]).count(est, H, W)
    assert by_zone(counts)["left"][0] == 1.0


def test_no_boxes_gives_zero_counts():
    counts, kept = ZoneCounter([LEFT]).count(CrowdEstimate(boxes=np.zeros((0, 5), np.float32)), H, W)
    assert by_zone(counts) == {"*": (0.0, None), "left": (0.0, 0.0)}
    assert kept.shape == (0, 5)


def test_density_map_zone_sum_is_the_map_inside_the_polygon():
    density = np.zeros((10, 20), np.float32)  # stride 10: one cell = 10x10 frame pixels
    density[2, 3] = 2.0  # left half
    density[1, 15] = 1.5  # top-right quarter
    density[8, 15] = 0.5  # bottom-right: only in "*"
    est = CrowdEstimate(boxes=np.zeros((0, 5), np.float32), density=density, density_stride=10)
    counts, _ = ZoneCounter([LEFT, TOP_RIGHT]).count(est, H, W)
    got = by_zone(counts)
    assert got["*"][0] == pytest.approx(4.0)
    assert got["left"][0] == pytest.approx(2.0)
    assert got["left"][1] == pytest.approx(0.2)
    assert got["top_right"][0] == pytest.approx(1.5)


def test_density_map_ignores_masked_cells_and_padding_beyond_the_frame():
    density = np.ones((12, 24), np.float32)  # the map covers padding beyond the 100x200 frame
    ignore = [[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]]
    est = CrowdEstimate(boxes=np.zeros((0, 5), np.float32), density=density, density_stride=10)
    counts, _ = ZoneCounter([LEFT], ignore).count(est, H, W)
    got = by_zone(counts)
    assert got["*"][0] == pytest.approx(100.0)  # right half of the frame: 10 x 10 cells
    assert got["left"][0] == pytest.approx(0.0)


def test_cell_weights_are_fractional_on_polygon_edges():
    mask = polygon_mask([[(0, 0), (0.25, 0), (0.25, 1), (0, 1)]], 20, 20)  # x < 5 px
    w = cell_weights(mask, 10, (2, 2))
    assert w[:, 0] == pytest.approx([0.5, 0.5])
    assert w[:, 1] == pytest.approx([0.0, 0.0])


def test_density_in_a_map_row_the_frame_edge_cuts_is_counted_whole():
    # 704x576 served at a long side of 1024: 11 frame pixels per cell, 576 / 11 = 52.4 rows -> a 53rd, partial row
    density = np.zeros((53, 64), np.float32)
    density[52, :] = 1.0 / 64
    bottom = Zone(name="bottom", polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])
    est = CrowdEstimate(boxes=np.zeros((0, 5), np.float32), density=density, density_stride=11)
    got = by_zone(ZoneCounter([bottom]).count(est, 576, 704)[0])
    assert got["*"][0] == pytest.approx(1.0) and got["bottom"][0] == pytest.approx(1.0)
    w = cell_weights(np.ones((576, 704), bool), 11, (54, 64))
    assert w[52] == pytest.approx(np.ones(64)) and not w[53].any()  # partial row whole, a row beyond the frame 0
