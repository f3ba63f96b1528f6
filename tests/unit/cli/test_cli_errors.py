"""What a person sees when something is missing: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli.demo_cmd import DEMO_CONFIG


def run(args: list[str], env: dict | None = None):
    return CliRunner().invoke(cli, args, env=env, prog_name="guanjia")


def write_config(path: Path, url: str, detectors: list[str]) -> Path:
    doc = {"groups": [{"id": "g", "town": "T", "cameras": [
        {"id": "c1", "url": url, "grid": "G1", "detectors": detectors}]}]}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, AttributeError, KeyError))
    for needle in needles:
        assert needle in result.output, result.output


def test_demo_missing_config_file(tmp_path):
    result = run(["demo", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "nope.yaml: no such config file")


def test_demo_says_which_footage_is_missing_and_where_to_put_it(tmp_path):
    result = run(["demo", "--out", str(tmp_path / "out")], env={"GUANJIA_SHARED_DIR": str(tmp_path / "elsewhere")})
    assert_one_line_error(result, "sample footage is missing", "demo-street", str(tmp_path / "elsewhere" / "data" / "video" / "vtest.avi"),
                          "GUANJIA_SHARED_DIR", "opencv-doc")
    assert not (tmp_path / "out").exists()  # nothing started


def test_demo_says_which_model_is_missing_and_how_to_fetch_it(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not opened: models are checked before any stream")
    config = write_config(tmp_path / "cams.yaml", str(clip), ["crowd"])
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"GUANJIA_MODELS_DIR": str(empty), "GUANJIA_SHARED_DIR": str(empty), "GUANJIA_CACHE_DIR": str(empty)}
    result = run(["demo", "--config", str(config), "--out", str(tmp_path / "out")], env=env)
    assert_one_line_error(result, "model yolox_nano_coco_416: no intact", "guanjia models fetch")


def test_demo_config_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - id: g\n    cameras:\n      - id: c1\n        url: /x.mp4\n        grid: G\n        colour: red\n")
    result = run(["demo", "--config", str(bad), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "bad.yaml:7", "colour")


def test_worker_ingest_unreachable_kafka_names_the_address_and_what_to_start(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"never opened")
    config = write_config(tmp_path / "cams.yaml", str(clip), [])
    env = {"GUANJIA_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = run(["worker", "ingest", "--config", str(config), "--no-metrics"], env=env)
    assert_one_line_error(result, "cannot reach Kafka at 127.0.0.1:1", "scripts/services.sh up")


def test_worker_ingest_needs_a_config():
    result = run(["worker", "ingest"])
    assert result.exit_code == 2 and "Missing option '--config'" in result.output


def test_worker_ingest_rejects_a_bad_port(tmp_path):
    config = write_config(tmp_path / "cams.yaml", "/x.mp4", [])
    result = run(["worker", "ingest", "--config", str(config), "--metrics-port", "70000"])
    assert result.exit_code == 2 and "--metrics-port" in result.output


def test_bench_all_rejects_an_unknown_benchmark():
    result = run(["bench", "all", "--only", "detect,warp"])
    assert result.exit_code == 2 and "unknown benchmark(s) ['warp']" in result.output


def test_demo_config_has_a_crowding_camera_with_a_zone_and_a_fire_camera():
    from pipeline.config import load_config

    cams = {c.id: c for c in load_config([DEMO_CONFIG]).cameras}
    street, fire = cams["demo-street"], cams["demo-house-fire"]
    assert [d.value for d in street.settings.detectors] == ["crowd"] and street.zones
    assert street.settings.rules.crowding.threshold <= 6  # vtest.avi shows 3-8 people
    assert [d.value for d in fire.settings.detectors] == ["fire"]
    assert street.url.endswith("data/video/vtest.avi") and fire.url.endswith("data/fire/furg/house6.mp4")


def test_kafka_commands_say_where_kafka_should_be_and_what_to_start():
    for args in (["events", "tail"], ["events", "ack", "some-id", "--by", "duty officer"],
                 ["sensors", "replay", str(DEMO_CONFIG.with_name("sensors-demo.csv")), "--speed", "0"]):
        result = run(args, env={"GUANJIA_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
        assert_one_line_error(result, "cannot reach Kafka at 127.0.0.1:1", "scripts/services.sh up")
        with_credentials = run(args, env={"GUANJIA_KAFKA_BOOTSTRAP": "user:secret@127.0.0.1:1"})
        assert_one_line_error(with_credentials, "GUANJIA_KAFKA_BOOTSTRAP", "is not host:port", "GUANJIA_KAFKA_PASSWORD")
        assert "secret" not in with_credentials.output


def test_events_worker_unreachable_kafka_is_one_line():
    result = run(["worker", "events", "--config", str(DEMO_CONFIG)], env={"GUANJIA_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert_one_line_error(result, "cannot reach Kafka at 127.0.0.1:1", "scripts/services.sh up")
