"""The events bench's backlog: its rate is timed from the first event to the last, so both ends must make events."""

import pytest

from pipeline import bench_events as be
from pipeline.embedded import EmbeddedRunner

from .helpers import CATALOG


@pytest.mark.parametrize("steps", [1, 2, 11, 12, 20, 21])
def test_last_detection_of_every_camera_makes_an_event(tmp_path, steps):
    from pipeline.config import load_config

    cameras = 3
    runner = EmbeddedRunner(load_config([be.write_config(tmp_path / "c.yaml", cameras)]).cameras, CATALOG)
    dets = be.backlog(cameras, steps, 1_000.0)
    outputs = [runner.feed(d) for d in dets]
    assert all(outputs[:cameras]), "step 0 of every camera opens an event"
    assert all(outputs[-cameras:]), "the last step of every camera opens or closes one"
    assert sum(map(len, outputs)) >= 2 * cameras * (steps // len(be.PATTERN))
