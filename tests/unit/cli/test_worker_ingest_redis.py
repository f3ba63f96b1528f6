"""A hung Redis (accepts connections, never answers: every call blocks until its socket timeout) must
stall neither the detection loop (evidence snapshots) nor the camera assignment's event loop (forgetting
tombstoned cameras), where a blocked loop misses heartbeats and sets off a rebalance."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from ingest.health import CameraHealth, CameraState, HealthPublisher
from pipeline.assignment import CameraAssignment
from pipeline.cli.worker_ingest import (
    RedisEvidence,
    RedisWriter,
    delivery_summary,
    health_forgetter,
)
from pipeline.security import redis_client
from pipeline.settings import Settings


@pytest.fixture
def hung_redis() -> Iterator:
    """A client of the worker's kind (2 s timeouts) on a port that completes TCP handshakes from its
    backlog but never reads or answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    try:
        yield redis_client(Settings(), url=url, socket_connect_timeout=2, socket_timeout=2)
    finally:
        server.close()


class Sink:  # what delivery_summary reads of a KafkaSink
    sent, failed, lost = 5, 0, 0


def test_evidence_writes_never_stall_the_detection_loop_and_what_is_dropped_is_counted(hung_redis) -> None:
    evidence = RedisEvidence(hung_redis, ttl_s=60, backlog=4)
    began = time.monotonic()
    for i in range(20):
        evidence.put(f"evidence/cam/{i}.jpg", b"\xff\xd8\xff" + bytes(1000))
    took = time.monotonic() - began
    assert took < 0.5, f"20 snapshots held the detection loop {took:.1f} s"
    assert evidence.writer.dropped >= 20 - 4 - 1  # one may be in the writer's hands already
    began = time.monotonic()
    evidence.close(timeout=0.3)
    assert time.monotonic() - began < 1.5  # a hung Redis does not hold up shutdown
    assert evidence.stored == 0 and evidence.not_stored == 20
    assert "0 evidence snapshots in Redis (20 not stored: Redis down or too slow)" in delivery_summary(Sink(), evidence)


def test_tombstones_never_block_the_assignment_loop(hung_redis) -> None:
    writer = RedisWriter("test-forget", 100)
    removed: list[str] = []
    member = CameraAssignment("127.0.0.1:1", "t.cameras.v1", on_add=lambda cam: None, on_change=lambda cam: None,
                              on_remove=removed.append, on_deleted=health_forgetter(HealthPublisher(hung_redis), writer))

    async def tombstones() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def heartbeat() -> None:  # stands for aiokafka's heartbeat task on the same loop
            last = loop.time()
            while True:
                await asyncio.sleep(0.02)
                gaps.append(loop.time() - last)
                last = loop.time()

        beat = asyncio.create_task(heartbeat())
        began = time.monotonic()
        for i in range(5):  # 5 tombstones × 2 calls × a 2 s socket timeout: 20 s inline, twice the session timeout
            await member._apply(0, f"gone-{i}", None)
        took = time.monotonic() - began
        await asyncio.sleep(0.2)
        beat.cancel()
        return took, max(gaps)

    took, longest_gap = asyncio.run(tombstones())
    assert took < 0.5 and longest_gap < 0.5, (took, longest_gap)
    writer.close(timeout=0.1)


@pytest.mark.integration
def test_a_forgotten_camera_leaves_redis(redis_url: str) -> None:
    client = redis_client(Settings(), url=redis_url, socket_connect_timeout=2, socket_timeout=2)
    publisher = HealthPublisher(client, prefix=f"t-forget-{uuid.uuid4().hex[:8]}")
    publisher.publish([CameraHealth(camera_id="cam-1", state=CameraState.error, url="", decode_mode="", last_frame_time=1.0)])
    assert client.exists(publisher.camera_key("cam-1"))
    writer = RedisWriter("test-forget", 100)
    health_forgetter(publisher, writer)("cam-1")
    assert writer.close(timeout=5) == 0 and (writer.done, writer.failed) == (1, 0)
    assert not client.exists(publisher.camera_key("cam-1"))
    assert client.zscore(publisher.last_seen_key, "cam-1") is None
