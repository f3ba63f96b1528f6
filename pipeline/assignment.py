"""Cameras shared among ingest workers by Kafka's consumer-group assignment.

Camera configs live on the compacted topic ``guanjia.cameras.v1``, keyed by camera id; a removed
camera is a tombstone (null value). Records carry the ``${VAR}`` URL templates of the config files,
never interpolated secrets: each worker interpolates them from its own environment.

Every ingest worker joins one consumer group on that topic. Kafka decides which partitions a worker
owns; the worker reads its partitions from the beginning (the compacted topic *is* the state) and
pulls exactly the cameras found there. Membership, failure detection and failover are Kafka's:

- ``on_partitions_revoked`` runs before the worker rejoins, and the group waits for every member to
  rejoin, so the cameras of revoked partitions are closed before a new owner can open them;
- a worker that dies stops heart-beating and its partitions move after ``session_timeout_ms``;
- offsets are never committed: an assigned partition is always re-read from its start.

>>> a = AssignmentThread(CameraAssignment(bootstrap, topic, on_add=pool_add, on_change=pool_replace,
...                                       on_remove=pool_remove)).start()
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from ingest.urls import redact_text
from pipeline.config.env import TemplateError, interpolate
from pipeline.config.models import ResolvedCamera, resolve_file_url

log = logging.getLogger(__name__)

CAMERAS_TOPIC = "cameras"
"""Short topic name: ``Settings.topic(CAMERAS_TOPIC)`` is ``guanjia.cameras.v1``."""
RECORD_VERSION = 1
DEFAULT_GROUP = "guanjia-ingest"
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}

Security = Mapping[str, Any] | None
"""aiokafka security keyword arguments (``pipeline.security.kafka_security_options``)."""
OnCamera = Callable[[ResolvedCamera], object | Awaitable[object]]
OnRemove = Callable[[str], object | Awaitable[object]]


# ---- records ------------------------------------------------------------------------------------

def camera_record(cam: ResolvedCamera) -> bytes:
    """The value published for a camera: versioned JSON of the resolved camera (URL as a template).

    A relative file path that still holds a template (``${DIR:-../../shared}/a.mp4``) goes with the
    config's folder as ``base_dir``, next to ``camera``: the worker resolves the path once filled.
    """
    record: dict[str, Any] = {"v": RECORD_VERSION, "camera": cam.model_dump(mode="json")}
    if cam.url_base_dir is not None:
        record["base_dir"] = cam.url_base_dir
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


class CameraRecordError(ValueError):
    """A camera record that this worker cannot use (message names the camera and reason, no secrets)."""


def parse_camera_record(camera_id: str, value: bytes, environ: Mapping[str, str] | None = None) -> ResolvedCamera:
    """A published record → :class:`ResolvedCamera`, its URL's ``${VAR}`` filled from ``environ`` (default:
    os.environ; never this process's own credentials, :data:`pipeline.config.env.WORKER_SECRETS`)."""
    try:
        data = json.loads(value)
        if data.get("v") != RECORD_VERSION:
            raise CameraRecordError(f"camera {camera_id}: unsupported record version {data.get('v')!r}")
        camera = dict(data["camera"])
        if isinstance(camera.get("url"), str):  # the only field published as a template (publish fills the rest)
            camera["url"] = interpolate(camera["url"], environ)
            base_dir = data.get("base_dir")
            if isinstance(base_dir, str):  # a relative file path, resolved as a direct load would
                camera["url"] = resolve_file_url(camera["url"], base_dir)
        cam = ResolvedCamera.model_validate(camera)
    except TemplateError as exc:
        raise CameraRecordError(f"camera {camera_id}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CameraRecordError(f"camera {camera_id}: {where}: {redact_text(first['msg'])}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, CameraRecordError):
            raise
        raise CameraRecordError(f"camera {camera_id}: malformed record ({type(exc).__name__})") from None
    if cam.id != camera_id:
        raise CameraRecordError(f"camera {camera_id}: record key and id {cam.id!r} differ")
    return cam


# ---- topic and publishing -----------------------------------------------------------------------

async def ensure_cameras_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1,
                               security: Security = None) -> bool:
    """Create the compacted cameras topic if missing; True when it was created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            return False
        await admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=TOPIC_CONFIG)])
        for _ in range(100):
            if topic in set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        return True
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str, topic: str, security: Security = None) -> int:
    """Number of partitions of ``topic`` (0 when it does not exist)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
        return len(desc["partitions"]) if desc["error_code"] == 0 else 0
    finally:
        await admin.close()


async def read_cameras_topic(bootstrap: str, topic: str, security: Security = None) -> dict[str, bytes]:
    """The topic's current state: camera id → latest value (tombstoned ids left out)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    count = await topic_partitions(bootstrap, topic, security)
    if not count:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20, **(security or {}))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        state: dict[str, bytes] = {}
        remaining = {tp for tp in tps if end[tp] > 0}
        for tp in tps:
            if tp in remaining and await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    key = rec.key.decode()
                    if rec.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = rec.value
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):  # compaction may leave the last offsets empty
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return state
    finally:
        await consumer.stop()


@dataclass
class PublishResult:
    """What ``publish_cameras`` did."""

    published: int = 0
    unchanged: int = 0
    tombstoned: list[str] = field(default_factory=list)
    topic_created: bool = False


async def publish_cameras(bootstrap: str, topic: str, cameras: Iterable[ResolvedCamera], *, partitions: int = 12,
                          tombstone_missing: bool = True, skip_unchanged: bool = True,
                          security: Security = None) -> PublishResult:
    """Publish every camera (new or changed ones only, with ``skip_unchanged``) and tombstone the
    cameras that the topic has but ``cameras`` no longer lists. Waits until the broker acknowledged all."""
    from aiokafka import AIOKafkaProducer

    result = PublishResult(topic_created=await ensure_cameras_topic(bootstrap, topic, partitions, security=security))
    current = {} if result.topic_created else await read_cameras_topic(bootstrap, topic, security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=50, max_batch_size=1 << 20, compression_type="gzip",
                                max_request_size=8 << 20, **(security or {}))
    await producer.start()
    try:
        pending: list[asyncio.Future] = []
        seen: set[str] = set()
        for cam in cameras:
            seen.add(cam.id)
            value = camera_record(cam)
            if skip_unchanged and current.get(cam.id) == value:
                result.unchanged += 1
                continue
            pending.append(await producer.send(topic, value=value, key=cam.id.encode()))
            result.published += 1
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        if tombstone_missing:
            result.tombstoned = sorted(set(current) - seen)
            for camera_id in result.tombstoned:
                pending.append(await producer.send(topic, value=None, key=camera_id.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return result


# ---- the consumer-group member -------------------------------------------------------------------

async def _call(fn: Callable[..., Any], camera: ResolvedCamera | str) -> None:
    """Run a callback; its failure is logged with the camera id and never stops the member."""
    try:
        out = fn(camera)
        if inspect.isawaitable(out):
            await out
    except Exception:  # one camera's failure must not stop the assignment of the others
        camera_id = camera if isinstance(camera, str) else camera.id
        log.exception("camera %s: %s failed", camera_id, getattr(fn, "__name__", "callback"))


class CameraAssignment:
    """A member of the ingest consumer group that tracks the cameras of the partitions it owns.

    ``on_add(camera)`` / ``on_change(camera)`` / ``on_remove(camera_id)`` may be plain functions or
    coroutines; they run on this member's event loop, one at a time. ``cameras`` is what it owns now.
    ``on_release(camera_id)`` (optional, default ``on_remove``) closes a camera whose partition went to another
    member (a rebalance, or this member leaving): the camera goes on elsewhere, it was not removed.
    ``on_deleted(camera_id)`` (optional) follows every tombstone read, also of cameras this member never
    pulled and again when a partition is re-read: e.g. forget the camera's health.
    ``partitions``: the topic's partition count if this member has to create it; ``security``: TLS/SASL
    keyword arguments for aiokafka (``pipeline.security.kafka_security_options(settings)``).
    """

    def __init__(self, bootstrap: str, topic: str, *, on_add: OnCamera, on_change: OnCamera, on_remove: OnRemove,
                 on_deleted: OnRemove | None = None, on_release: OnRemove | None = None,
                 group_id: str = DEFAULT_GROUP, session_timeout_ms: int = 10_000, heartbeat_interval_ms: int = 2_000,
                 environ: Mapping[str, str] | None = None, client_id: str | None = None, partitions: int = 12,
                 security: Security = None):
        self.bootstrap = bootstrap
        self.security = dict(security or {})
        self.partitions_if_created = partitions
        self.topic = topic
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.client_id = client_id
        self.environ = environ
        self._on_add, self._on_change, self._on_remove = on_add, on_change, on_remove
        self._on_deleted = on_deleted
        self._on_release = on_release or on_remove
        self.cameras: dict[str, ResolvedCamera] = {}
        self._raw: dict[str, bytes] = {}
        self._partition_of: dict[str, int] = {}
        self._owned: set[int] = set()
        self._consumer = None
        self._task: asyncio.Task | None = None
        self.rebalances = 0

    @property
    def partitions(self) -> set[int]:
        """Partitions this member owns now."""
        return set(self._owned)

    async def start(self) -> Self:
        """Join the group and start following the owned partitions in a background task."""
        from aiokafka import AIOKafkaConsumer

        # a worker started before the first publish must not let the broker auto-create a
        # non-compacted single-partition topic
        await ensure_cameras_topic(self.bootstrap, self.topic, self.partitions_if_created, security=self.security)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id or "guanjia-ingest",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms, heartbeat_interval_ms=self.heartbeat_interval_ms,
            rebalance_timeout_ms=max(30_000, self.session_timeout_ms), max_poll_interval_ms=300_000,
            metadata_max_age_ms=30_000, **self.security)
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"camera-assignment-{self.topic}")
        return self

    async def stop(self) -> None:
        """Close every owned camera (on_remove) and leave the group, so that others take over at once."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._consumer is not None:
            await self._revoke(set(self._owned))  # before leaving: no overlap with the next owner
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000, max_records=5000)
            except KafkaError as exc:  # a broker outage: aiokafka reconnects by itself
                log.warning("camera assignment: %s: %s", type(exc).__name__, redact_text(str(exc)))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                for rec in records:
                    if tp.partition in self._owned:  # a rebalance may run while a callback awaits
                        await self._apply(tp.partition, rec.key.decode(), rec.value)

    async def _apply(self, partition: int, camera_id: str, value: bytes | None) -> None:
        known = camera_id in self.cameras
        if value is None:
            self._raw.pop(camera_id, None)
            self._partition_of.pop(camera_id, None)
            if known:
                del self.cameras[camera_id]
                await _call(self._on_remove, camera_id)
            if self._on_deleted is not None:
                await _call(self._on_deleted, camera_id)
            return
        if self._raw.get(camera_id) == value:
            return
        self._raw[camera_id] = value
        self._partition_of[camera_id] = partition
        try:
            cam = parse_camera_record(camera_id, value, self.environ)
        except CameraRecordError as exc:
            log.error("%s; not pulling it", exc)
            if known:
                del self.cameras[camera_id]
                await _call(self._on_remove, camera_id)
            return
        self.cameras[camera_id] = cam
        await _call(self._on_change if known else self._on_add, cam)

    async def _revoke(self, partitions: set[int]) -> None:
        gone = [cid for cid, p in self._partition_of.items() if p in partitions]
        for camera_id in gone:
            self._raw.pop(camera_id, None)
            self._partition_of.pop(camera_id, None)
            if self.cameras.pop(camera_id, None) is not None:
                await _call(self._on_release, camera_id)
        self._owned -= partitions


class _Listener(ConsumerRebalanceListener):
    """aiokafka rebalance callbacks; revocation finishes before this member rejoins the group."""

    def __init__(self, member: CameraAssignment):
        self.member = member

    async def on_partitions_revoked(self, revoked) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == self.member.topic}
        await self.member._revoke(parts)
        if parts:
            log.info("camera assignment: released partitions %s", sorted(parts))

    async def on_partitions_assigned(self, assigned) -> None:
        member = self.member
        member.rebalances += 1
        tps = [tp for tp in assigned if tp.topic == member.topic]
        member._owned = {tp.partition for tp in tps}
        if tps:
            await member._consumer.seek_to_beginning(*tps)
        log.info("camera assignment: owns partitions %s", sorted(member._owned))


class AssignmentThread:
    """Runs a :class:`CameraAssignment` on its own event loop thread, for threaded workers.

    The callbacks run on that thread.
    """

    def __init__(self, member: CameraAssignment):
        self.member = member
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="guanjia-assignment", daemon=True)

    def start(self, timeout: float = 60.0) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.member.start(), self.loop).result(timeout)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Close the owned cameras, leave the group and end the thread."""
        if not self.thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.member.stop(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            self.loop.close()

    def owned(self) -> list[str]:
        """Camera ids owned now (a copy, safe from other threads)."""
        return sorted(asyncio.run_coroutine_threadsafe(_snapshot(self.member), self.loop).result(10))


async def _snapshot(member: CameraAssignment) -> list[str]:
    return list(member.cameras)
