"""Camera records on guanjia.cameras.v1: templates out, interpolation on the worker, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.assignment import CameraRecordError, camera_record, parse_camera_record
from pipeline.config.env import keep_templates
from pipeline.config.errors import ConfigError
from pipeline.config.loader import load_config
from pipeline.config.models import ResolvedCamera

CONFIG = """\
groups:
  - id: gate
    town: Humen
    inventory: cams.csv
    cameras:
      - {id: inline-1, url: "rtsp://admin:${CAM_PW}@10.0.0.1/s1", grid: G1, name: "Gate $$1"}
"""
CSV = "id,url,grid,village,town,lat,lon\ncsv-1,rtsp://op:${CAM_PW}@10.0.0.2/s1,G2,,,,\n"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CAM_PW", raising=False)
    (tmp_path / "cams.csv").write_text(CSV)
    path = tmp_path / "city.yaml"
    path.write_text(CONFIG)
    return path


def test_config_loads_with_templates_kept_and_the_worker_fills_them_in(config: Path) -> None:
    with pytest.raises(ConfigError, match="CAM_PW is not set"):
        load_config([config])  # a normal load needs the secret
    with keep_templates():
        city = load_config([config])  # the publisher does not
    by_id = {c.id: c for c in city.cameras}
    assert by_id["inline-1"].url == "rtsp://admin:${CAM_PW}@10.0.0.1/s1"
    assert by_id["csv-1"].url == "rtsp://op:${CAM_PW}@10.0.0.2/s1"
    records = {cid: camera_record(cam) for cid, cam in by_id.items()}
    assert all(b"${CAM_PW}" in r for r in records.values())

    env = {"CAM_PW": "pa$$word"}
    cam = parse_camera_record("inline-1", records["inline-1"], environ=env)
    assert cam.url == "rtsp://admin:pa$$word@10.0.0.1/s1"
    assert cam.name == "Gate $1"  # $$ is a literal $, as when the file is loaded directly
    assert parse_camera_record("csv-1", records["csv-1"], environ=env).url == "rtsp://op:pa$$word@10.0.0.2/s1"


def test_interpolation_is_back_on_after_the_block(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with keep_templates():
        pass
    monkeypatch.setenv("CAM_PW", "x")
    assert load_config([config]).camera("inline-1").url == "rtsp://admin:x@10.0.0.1/s1"


def test_record_round_trip_is_versioned_json() -> None:
    cam = ResolvedCamera(id="c-1", url="rtsp://10.0.0.3/s", group_id="g", grid="G", zones=[
        {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}])
    data = json.loads(camera_record(cam))
    assert data["v"] == 1 and data["camera"]["id"] == "c-1"
    assert parse_camera_record("c-1", camera_record(cam), environ={}) == cam


@pytest.mark.parametrize(("value", "message"), [
    (b'{"v": 2, "camera": {}}', "unsupported record version 2"),
    (b'{"v": 1, "camera": {"id": "c-1", "url": "ftp://u:secret@h/x", "group_id": "g", "grid": "G"}}', "camera c-1: url:"),
    (b'{"v": 1}', "malformed record"),
    (b"\xff", "malformed record"),
])
def test_bad_records_name_the_camera_and_hide_secrets(value: bytes, message: str) -> None:
    with pytest.raises(CameraRecordError, match=message) as err:
        parse_camera_record("c-1", value, environ={})
    assert "secret" not in str(err.value)


def test_records_cannot_read_the_workers_own_credentials_and_only_urls_are_filled() -> None:
    env = {"GUANJIA_KAFKA_PASSWORD": "kafka-SECRET", "GUANJIA_REDIS_PASSWORD": "redis-SECRET", "CAM_PW": "cam"}
    url_steals = (b'{"v": 1, "camera": {"id": "c-1", "url": "rtsp://10.0.0.9/live/${GUANJIA_KAFKA_PASSWORD}",'
                  b' "group_id": "g", "grid": "G"}}')
    with pytest.raises(CameraRecordError, match="GUANJIA_KAFKA_PASSWORD holds this process's own credentials") as err:
        parse_camera_record("c-1", url_steals, environ=env)
    assert "SECRET" not in str(err.value)
    grid_steals = (b'{"v": 1, "camera": {"id": "c-2", "url": "rtsp://u:${CAM_PW}@10.0.0.9/s",'
                   b' "group_id": "g", "grid": "${GUANJIA_REDIS_PASSWORD}", "name": "${CAM_PW}"}}')
    cam = parse_camera_record("c-2", grid_steals, environ=env)
    assert cam.url == "rtsp://u:cam@10.0.0.9/s" and "SECRET" not in cam.model_dump_json() and cam.name == "${CAM_PW}"


def test_a_config_cannot_read_the_workers_own_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUANJIA_METRICS_TOKEN", "token-SECRET")
    path = tmp_path / "city.yaml"
    path.write_text('groups:\n  - id: g\n    cameras:\n      - {id: c1, url: "rtsp://h/${GUANJIA_METRICS_TOKEN}", grid: G1}\n')
    with pytest.raises(ConfigError, match="GUANJIA_METRICS_TOKEN holds this process's own credentials") as err:
        load_config([path])
    assert "token-SECRET" not in str(err.value) and ":4:" in str(err.value)
