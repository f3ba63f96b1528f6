"""The benchmark's generator makes the fleet it claims (timing itself is `guanjia bench config`)."""

from __future__ import annotations

from pipeline.cli.bench_config import generate
from pipeline.config import load_config


def test_generated_inventory_spreads_cameras_over_grids_and_towns(tmp_path):
    path = generate(tmp_path, cameras=3000, grids=300, towns=33, zone_share=0.5)
    city = load_config([path])
    summary = city.summary()
    assert summary["cameras"] == 3000 and summary["grid_cells"] == 300 and summary["towns"] == 33
    assert 1200 < summary["zones"] < 1800
    assert len({id(c.settings) for c in city.cameras}) == 1  # one shared settings object
    assert city.cameras[0].settings.crowd.score_threshold == 0.45
