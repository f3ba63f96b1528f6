"""``guanjia page``: start-up errors a person sees (the Kafka path is in tests/integration)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.web.cli import page


def test_refuses_all_interfaces_without_a_token() -> None:
    result = CliRunner().invoke(page, ["--host", "0.0.0.0"], env={"GUANJIA_PAGE_TOKEN": ""})
    assert result.exit_code == 1
    assert "refusing to serve the risk-map page on 0.0.0.0" in result.output
    assert "GUANJIA_PAGE_TOKEN" in result.output


def test_unreachable_kafka_is_one_clear_line() -> None:
    result = CliRunner().invoke(page, ["--port", "0"], env={"GUANJIA_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.exit_code == 1
    assert "cannot reach Kafka at" in result.output and "guanjia services up" in result.output
    assert "Traceback" not in result.output
    with_credentials = CliRunner().invoke(page, ["--port", "0"], env={"GUANJIA_KAFKA_BOOTSTRAP": "user:s3cret@127.0.0.1:1"})
    assert with_credentials.exit_code == 1 and "is not host:port" in with_credentials.output
    assert "s3cret" not in with_credentials.output and "Traceback" not in with_credentials.output


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(page, ["--help"])
    assert result.exit_code == 0 and "guanjia page --config" in result.output


class FakeConsumer:
    """Stands in for ``AIOKafkaConsumer``: the page's start-up and shutdown without a broker."""

    def __init__(self, **options) -> None:
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


class Fed(Exception):
    """Ends ``_serve`` once the fake feed has looked at what the page set up."""


def serve_with_a_fake_feed(
    monkeypatch: pytest.MonkeyPatch, configs: tuple[Path, ...], look: Callable[..., None]
) -> None:
    """Run ``guanjia page``'s server with Kafka replaced; ``look(state, on_skip)`` runs in the feed."""
    import aiokafka

    from pipeline.web import cli, feed

    async def follow(state, consumer, topics, **options) -> None:
        look(state, options.get("on_skip"))
        raise Fed

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", FakeConsumer)
    monkeypatch.setattr(feed, "follow", follow)
    with pytest.raises(Fed):
        asyncio.run(cli._serve(configs, "127.0.0.1", 0, None))


def config_with_a_secret(tmp_path: Path) -> Path:
    config = tmp_path / "city.yaml"
    config.write_text(
        "groups:\n"
        "  - id: g\n"
        "    cameras:\n"
        "      - id: gate\n"
        "        name: Gate\n"
        "        url: rtsp://admin:${GUANJIA_TEST_CAM_PW}@10.0.0.5/h264\n"
        "        grid: G1\n"
        "        lat: 22.8\n"
        "        lon: 113.6\n",
        encoding="utf-8",
    )
    return config


def test_page_config_loads_without_the_camera_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page never opens a camera: it must not need (or hold) the passwords in its URLs.
    config = config_with_a_secret(tmp_path)
    monkeypatch.delenv("GUANJIA_TEST_CAM_PW", raising=False)
    seen: list[dict] = []
    serve_with_a_fake_feed(
        monkeypatch, (config,), lambda state, on_skip: seen.append(state.snapshot())
    )
    assert [(c["id"], c["name"], c["grid"]) for c in seen[0]["cameras"]] == [("gate", "Gate", "G1")]
    assert "10.0.0.5" not in json.dumps(seen[0])


def test_page_command_gets_past_the_config_without_the_camera_secrets(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        page,
        ["--port", "0", "--config", str(config_with_a_secret(tmp_path))],
        env={"GUANJIA_KAFKA_BOOTSTRAP": "127.0.0.1:1", "GUANJIA_TEST_CAM_PW": None},
    )
    assert "GUANJIA_TEST_CAM_PW" not in result.output
    assert "cannot reach Kafka at" in result.output  # got past the config


def test_page_counts_skipped_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    totals: list[int] = []

    def look(state, on_skip) -> None:
        assert on_skip is not None, "guanjia page must count skipped messages"
        on_skip("guanjia.detections.v1", 7)
        totals.append(state.snapshot()["totals"]["skipped_messages"])

    serve_with_a_fake_feed(monkeypatch, (), look)
    assert totals == [1]
