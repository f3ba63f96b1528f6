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


def test_core_plan_gives_the_timed_process_a_core_of_its_own_and_restores():
    import os
    import socket

    import pytest

    own = os.sched_getaffinity(0)
    if len(own) < 2:
        pytest.skip("needs two usable cores")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens here once closed: no broker to move
    plan = be.CorePlan(f"127.0.0.1:{port}", isolate=True)
    try:
        assert plan.timed == {max(own)} and plan.rest == own - {max(own)}
        assert os.sched_getaffinity(0) == plan.rest  # the bench itself leaves the timed core
        plan.place(0, timed=True)
        assert os.sched_getaffinity(0) == {max(own)}
        assert plan.describe() == {"isolated": True, "timed_cpus": [max(own)], "broker_threads_moved": 0}
    finally:
        plan.restore()
    assert os.sched_getaffinity(0) == own


def test_core_plan_without_isolate_moves_nothing():
    import os

    own = os.sched_getaffinity(0)
    plan = be.CorePlan("127.0.0.1:9", isolate=False)
    plan.place(0, timed=True)
    assert os.sched_getaffinity(0) == own and plan.describe()["isolated"] is False
