"""``guanjia cameras status`` reads the health that ingest publishes to a real Redis."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from ingest.health import CameraHealth, CameraState, HealthPublisher
from pipeline.cli.cameras_cmd import cameras

pytestmark = pytest.mark.integration


def test_status_lists_cameras_and_filters_down_ones(redis_url, redis_client, redis_key_prefix, monkeypatch):
    prefix = redis_key_prefix.rstrip(":")
    now = time.time()
    HealthPublisher(redis_client, ttl_s=30, prefix=prefix).publish([
        CameraHealth("cam-up", CameraState.streaming, "rtsp://***@10.0.0.1/a", "keyframes", input_fps=25.0,
                     analysed_fps=0.5, last_frame_time=now, state_since=now - 60),
        CameraHealth("cam-down", CameraState.backoff, "rtsp://10.0.0.2/b", "keyframes", reconnects=4,
                     last_error_class="ConnectionRefusedError", last_error="refused", last_frame_time=now - 600,
                     state_since=now - 5),
    ])
    monkeypatch.setenv("GUANJIA_REDIS_URL", redis_url)
    runner = CliRunner()

    everything = runner.invoke(cameras, ["status", "--prefix", prefix, "--json"])
    assert everything.exit_code == 0, everything.output
    data = json.loads(everything.output)
    assert {c["camera_id"]: c["down"] for c in data["cameras"]} == {"cam-up": False, "cam-down": True}

    down = json.loads(runner.invoke(cameras, ["status", "--prefix", prefix, "--down", "--json"]).output)
    assert [c["camera_id"] for c in down["cameras"]] == ["cam-down"]
    assert down["cameras"][0]["reconnects"] == 4

    table = runner.invoke(cameras, ["status", "--prefix", prefix])
    assert table.exit_code == 0 and "cam-up" in table.output and "backoff" in table.output


def test_status_fails_clearly_without_redis(monkeypatch):
    monkeypatch.setenv("GUANJIA_REDIS_URL", "redis://admin:s3cret@127.0.0.1:1/0")
    result = CliRunner().invoke(cameras, ["status"])
    assert result.exit_code != 0
    assert "cannot read camera health" in result.output and "s3cret" not in result.output
