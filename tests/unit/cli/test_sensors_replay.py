"""`guanjia sensors replay` says how many readings did not reach Kafka and exits 1; all delivered: exit 0."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import ClassVar

import aiokafka
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from click.testing import CliRunner

import pipeline.security
from pipeline.cli import cli

CSV = """sensor_id,kind,time,value,grid_id
smoke-1,smoke,0,0.01,G1
smoke-2,smoke,1,0.02,G1
smoke-3,smoke,2,0.03,G1
smoke-4,smoke,3,0.04,G1
"""


class Producer:
    """Fails the delivery of smoke-2 (the broker's answer) and refuses smoke-4 outright (too large)."""

    def __init__(self, **kwargs):
        pass

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        if key == b"smoke-4":
            raise MessageSizeTooLargeError()
        future = asyncio.get_running_loop().create_future()
        if key == b"smoke-2":
            asyncio.get_running_loop().call_later(0.05, future.set_exception, KafkaConnectionError("broker gone"))
        else:
            future.set_result(None)
        return future

    async def flush(self) -> None:  # never raises, as aiokafka's: the futures tell
        pass

    async def stop(self) -> None:
        pass


class AllDelivered(Producer):
    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, producer: type, speed: str = "0") -> object:
    csv = tmp_path / "readings.csv"
    csv.write_text(CSV, encoding="utf-8")
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", producer)

    async def start(client, settings) -> None:
        await client.start()

    monkeypatch.setattr(pipeline.security, "start_kafka_client", start)
    return CliRunner().invoke(cli, ["sensors", "replay", str(csv), "--speed", speed], env={"GUANJIA_TOPIC_PREFIX": "t"})


def test_failed_deliveries_are_counted_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = replay(tmp_path, monkeypatch, Producer)
    assert result.exit_code == 1, result.output
    assert "2 of 4 readings not delivered to t.sensor-readings.v1" in result.output
    assert "2 sent" in result.output and "Traceback" not in result.output


def test_all_delivered_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = replay(tmp_path, monkeypatch, AllDelivered)
    assert result.exit_code == 0, result.output
    assert "sent 4 readings to t.sensor-readings.v1" in result.output


class Recording(AllDelivered):
    """Keeps (wall time at send, the reading's stamped time) of every reading."""

    sent: ClassVar[list[tuple[float, float]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        Recording.sent.append((time.time(), json.loads(value)["time"]))
        return await super().send(topic, value, key)


@pytest.mark.parametrize("speed,spacing", [("10", 0.1), ("0", 1.0)])
def test_readings_are_stamped_when_sent_never_in_the_future(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            speed: str, spacing: float) -> None:
    Recording.sent = []
    result = replay(tmp_path, monkeypatch, Recording, speed)
    assert result.exit_code == 0, result.output
    sent_at, stamped = zip(*Recording.sent)
    assert all(s <= wall + 0.05 for wall, s in zip(sent_at, stamped)), Recording.sent  # was start + 3 s at --speed 10
    assert [round(b - a, 3) for a, b in itertools.pairwise(stamped)] == [spacing] * 3
    assert stamped[-1] == pytest.approx(sent_at[-1], abs=0.05)


@pytest.mark.parametrize("speed", ["-1", "nan", "inf"])
def test_a_speed_that_is_not_a_factor_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speed: str) -> None:
    result = replay(tmp_path, monkeypatch, AllDelivered, speed)
    assert result.exit_code == 2 and "is not a speed" in result.output, result.output
