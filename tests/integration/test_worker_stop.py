"""A clean stop of `guanjia worker ingest` (config mode, SIGTERM) leaves every camera's last health
report "stopped" (reason "worker stopped") on guanjia.camera-health.v1, so the events worker does not
open camera_offline for each of them. Real Kafka and Redis, a generated clip, the shared fire model."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from pipeline.records import CameraHealth
from tests.integration.fault_support import (
    ingest_env,
    read_records,
    start_ingest_worker,
    wait_for,
    write_fire_cameras,
)
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

CAMERAS = ["stop-1", "stop-2"]


def test_clean_stop_leaves_every_camera_stopped(clip, kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    video = clip(seconds=4.0, size="320x240", fps=10, gop=10)
    prefix = f"tstop-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.camera-health.v1"
    config = write_fire_cameras(tmp_path / "cams.yaml", "stop", video, CAMERAS)
    log = tmp_path / "worker.log"
    worker = start_ingest_worker(config, ingest_env(kafka_bootstrap, prefix, redis_url), log)
    try:
        def streaming() -> bool:
            reports = [CameraHealth.from_json(v) for v in read_records(kafka_bootstrap, topic)]
            return {r.camera_id for r in reports if r.state == "streaming"} == set(CAMERAS)

        assert wait_for(streaming, 150, every_s=1), log.read_text()[-3000:]
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    last: dict[str, CameraHealth] = {}
    for value in read_records(kafka_bootstrap, topic):  # keyed by camera: one partition each, in order
        report = CameraHealth.from_json(value)
        last[report.camera_id] = report
    assert {cam: (r.state, r.reason) for cam, r in last.items()} == {cam: ("stopped", "worker stopped") for cam in CAMERAS}
    assert {r.grid_id for r in last.values()} == {"G0", "G1"}
