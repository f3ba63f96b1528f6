"""Camera assignment over a real Kafka consumer group: exclusive ownership, failover, spread, updates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from pipeline.assignment import (
    CameraAssignment,
    ensure_cameras_topic,
    parse_camera_record,
    publish_cameras,
    read_cameras_topic,
)
from pipeline.config.models import ResolvedCamera

pytestmark = pytest.mark.integration

PARTITIONS = 12
SESSION_MS = 6000  # the broker's group.min.session.timeout.ms
ENV = {"CAM_PW": "s3cret-pw"}


def camera(i: int, host: str = "10.0.0.1") -> ResolvedCamera:
    return ResolvedCamera(id=f"cam-{i:03d}", url=f"rtsp://admin:${{CAM_PW}}@{host}/stream{i}", group_id="g", grid=f"G{i % 5}")


class Fleet:
    """In-process members sharing a 'who holds which camera' map that records every double hold."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.holder: dict[str, str] = {}
        self.violations: list[str] = []
        self.events: list[tuple[str, str, str, str]] = []  # (member, kind, camera, url)
        self.members: dict[str, CameraAssignment] = {}
        self.deleted: list[tuple[str, str]] = []

    async def join(self, name: str) -> CameraAssignment:
        def on_add(cam: ResolvedCamera) -> None:
            if self.holder.get(cam.id) not in (None, name):
                self.violations.append(f"{cam.id} opened by {name} while {self.holder[cam.id]} holds it")
            self.holder[cam.id] = name
            self.events.append((name, "add", cam.id, cam.url))

        def on_change(cam: ResolvedCamera) -> None:
            self.events.append((name, "change", cam.id, cam.url))

        def on_remove(camera_id: str, kind: str = "remove") -> None:
            if self.holder.get(camera_id) == name:
                del self.holder[camera_id]
            self.events.append((name, kind, camera_id, ""))

        member = CameraAssignment(self.bootstrap, self.topic, group_id=self.group, on_add=on_add, on_change=on_change,
                                  on_remove=on_remove, on_release=lambda cid: on_remove(cid, "release"), on_deleted=lambda cid: self.deleted.append((name, cid)), session_timeout_ms=SESSION_MS, heartbeat_interval_ms=1000,
                                  environ=ENV, client_id=name)
        self.members[name] = await member.start()
        return member

    def owned(self) -> dict[str, set[str]]:
        return {name: set(m.cameras) for name, m in self.members.items()}


async def wait_for(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held (fails after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def partitioned(groups: list[set[str]], expected: set[str]) -> bool:
    """Every expected camera owned by exactly one of ``groups`` (and nothing else owned)."""
    return sum(len(g) for g in groups) == len(expected) and set().union(*groups) == expected


CHILD = """
import asyncio, json, sys
from pipeline.assignment import CameraAssignment
bootstrap, topic, group = sys.argv[1:4]
async def main():
    m = CameraAssignment(bootstrap, topic, group_id=group, on_add=lambda c: None, on_change=lambda c: None,
                         on_remove=lambda c: None, session_timeout_ms=%d, heartbeat_interval_ms=1000,
                         environ={"CAM_PW": "x"}, client_id="child")
    await m.start()
    while True:
        print(json.dumps(sorted(m.cameras)), flush=True)
        await asyncio.sleep(0.3)
asyncio.run(main())
""".replace("%d", str(SESSION_MS))


def test_members_share_fail_over_spread_and_follow_updates(kafka_bootstrap: str, kafka_topic: str) -> None:
    asyncio.run(_scenario(kafka_bootstrap, kafka_topic))


async def _scenario(bootstrap: str, topic: str) -> None:
    group = f"test-assign-{uuid.uuid4().hex[:8]}"
    cams = [camera(i) for i in range(48)]
    expected = {c.id for c in cams}
    assert await ensure_cameras_topic(bootstrap, topic, PARTITIONS)
    await publish_cameras(bootstrap, topic, cams)

    # the topic carries the template, never the interpolated password
    stored = await read_cameras_topic(bootstrap, topic)
    assert set(stored) == expected
    assert b"s3cret" not in b"".join(stored.values()) and b"${CAM_PW}" in stored["cam-001"]

    fleet = Fleet(bootstrap, topic, group)
    child = subprocess.Popen(  # noqa: ASYNC220 - started once; its output is read in an executor
        [sys.executable, "-c", CHILD, bootstrap, topic, group], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    child_owned: set[str] = set()

    async def read_child() -> None:
        nonlocal child_owned
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, child.stdout.readline)
            if not line:
                return
            child_owned = set(json.loads(line))

    reader = asyncio.create_task(read_child())
    try:
        await fleet.join("a")
        await fleet.join("b")

        # 1. three members: every camera owned by exactly one
        await wait_for(lambda: partitioned([*fleet.owned().values(), child_owned], expected)
                       and all(fleet.owned().values()) and child_owned, 60, "3 members own disjoint shares of all cameras")
        assert all(url.startswith("rtsp://admin:s3cret-pw@") for _, kind, _, url in fleet.events if kind == "add")
        assert {len(m.partitions) for m in fleet.members.values()} == {PARTITIONS // 3}

        # 2. kill -9 the child: its cameras move to a and b within the session timeout + 10 s
        lost = set(child_owned)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        took = await wait_for(lambda: partitioned(list(fleet.owned().values()), expected),
                              SESSION_MS / 1000 + 10, "a and b take over the killed member's cameras")
        assert lost and lost <= set().union(*fleet.owned().values())
        print(f"failover after kill -9 took {took:.1f}s")

        # 3. a fourth member joins: the load spreads to it, still exclusive
        await fleet.join("d")
        await wait_for(lambda: partitioned(list(fleet.owned().values()), expected) and all(fleet.owned().values()),
                       40, "a, b and d share the cameras")
        assert sorted(len(m.partitions) for m in fleet.members.values()) == [4, 4, 4]
        kinds = {kind for _, kind, _, _ in fleet.events}
        assert "release" in kinds and "remove" not in kinds  # moved to d: released, not removed from the fleet

        # 4. URL change → on_change on its owner only; tombstone → on_remove
        changed, removed = cams[5], cams[7]
        fleet.events.clear()
        kept = [c for c in cams if c.id != removed.id]
        kept[5] = changed.model_copy(update={"url": "rtsp://admin:${CAM_PW}@10.9.9.9/moved"})
        result = await publish_cameras(bootstrap, topic, kept)
        assert (result.published, result.tombstoned) == (1, [removed.id])
        await wait_for(lambda: ("change", changed.id) in {(k, c) for _, k, c, _ in fleet.events}
                       and ("remove", removed.id) in {(k, c) for _, k, c, _ in fleet.events}, 15, "change and removal seen")
        changes = [e for e in fleet.events if e[1] == "change"]
        assert changes == [(fleet.holder[changed.id], "change", changed.id, "rtsp://admin:s3cret-pw@10.9.9.9/moved")]
        assert all(removed.id not in owned for owned in fleet.owned().values())
        assert [cid for _, cid in fleet.deleted] == [removed.id]  # once: only its partition's owner reads it

        # 5. a clean stop hands its cameras over at once (it leaves the group)
        await fleet.members.pop("a").stop()
        await wait_for(lambda: partitioned(list(fleet.owned().values()), expected - {removed.id}), 20,
                       "b and d take over after a clean stop")
        assert not fleet.violations, fleet.violations
    finally:
        if child.poll() is None:
            child.kill()
        reader.cancel()
        for member in fleet.members.values():
            await member.stop()


def test_record_errors_name_the_camera_and_never_the_secret() -> None:
    from pipeline.assignment import CameraRecordError, camera_record

    record = camera_record(camera(1))
    with pytest.raises(CameraRecordError, match=r"camera cam-001: environment variable CAM_PW is not set"):
        parse_camera_record("cam-001", record, environ={})
    assert parse_camera_record("cam-001", record, environ=ENV).url == "rtsp://admin:s3cret-pw@10.0.0.1/stream1"
    with pytest.raises(CameraRecordError, match="record key and id"):
        parse_camera_record("cam-002", record, environ=ENV)
    with pytest.raises(CameraRecordError, match="malformed record"):
        parse_camera_record("cam-001", b"not json", environ=ENV)


def test_cameras_publish_ships_templates_and_tombstones_dropped_cameras(kafka_bootstrap: str, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from pipeline.cli.cameras_publish import publish

    prefix = f"guanjia-test-pub-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GUANJIA_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CAM_PW", "s3cret-pw")
    topic = f"{prefix}.cameras.v1"

    def write(ids: list[str]) -> str:
        cams = "".join(f"      - {{id: {i}, url: 'rtsp://admin:${{CAM_PW}}@10.0.0.9/{i}', grid: G1}}\n" for i in ids)
        path = tmp_path / "city.yaml"
        path.write_text(f"groups:\n  - id: gate\n    town: t\n    cameras:\n{cams}")
        return str(path)

    runner = CliRunner()
    first = runner.invoke(publish, [write(["a1", "a2", "a3"]), "--partitions", "3", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) | {"seconds": 0} == {"topic": topic, "cameras": 3, "published": 3, "unchanged": 0,
                                                        "tombstoned": [], "topic_created": True, "seconds": 0}
    stored = asyncio.run(read_cameras_topic(kafka_bootstrap, topic))
    assert set(stored) == {"a1", "a2", "a3"}
    assert all(b"${CAM_PW}" in v and b"s3cret" not in v for v in stored.values())

    again = runner.invoke(publish, [write(["a1", "a3"]), "--json"])
    out = json.loads(again.output)
    assert (out["published"], out["unchanged"], out["tombstoned"]) == (0, 2, ["a2"])
    assert set(asyncio.run(read_cameras_topic(kafka_bootstrap, topic))) == {"a1", "a3"}
    text = runner.invoke(publish, [write(["a1"])])
    assert text.exit_code == 0 and "1 tombstoned" in text.output and "removed a3" in text.output

    missing = runner.invoke(publish, [str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "no such config file" in missing.output
