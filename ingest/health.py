"""Per-camera health: the record, and its publication to Redis.

Layout in Redis (``prefix`` defaults to ``guanjia``):

- ``{prefix}:camera:{id}`` — a hash of :class:`CameraHealth` fields, expiring after ``ttl_s``
  (a worker that dies stops refreshing it, so it disappears);
- ``{prefix}:cameras:last_seen`` — a sorted set ``camera id → last frame time`` (epoch seconds);
  "which cameras are down" is one ``ZRANGEBYSCORE`` even at 450k cameras.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields
from enum import Enum

import redis

log = logging.getLogger(__name__)


class CameraState(str, Enum):
    """Lifecycle of one camera: connecting → streaming → backoff → connecting … (or error/ended)."""

    connecting = "connecting"
    streaming = "streaming"
    backoff = "backoff"
    error = "error"
    ended = "ended"
    stopped = "stopped"


@dataclass
class CameraHealth:
    """A snapshot of one camera's ingest health."""

    camera_id: str
    state: CameraState
    url: str
    """Redacted URL."""
    decode_mode: str
    input_fps: float = 0.0
    analysed_fps: float = 0.0
    frames_in: int = 0
    """Video packets read, decoded or not."""
    frames_decoded: int = 0
    """Frames the decoder returned (only packets the sampler sends to it are decoded)."""
    frames_analysed: int = 0
    dropped: int = 0
    reconnects: int = 0
    decode_errors: int = 0
    last_frame_time: float | None = None
    state_since: float = 0.0
    last_error_class: str | None = None
    last_error: str | None = None
    keyframe_interval_s: float | None = None
    updated_at: float = 0.0

    def to_redis(self) -> dict[str, str]:
        """Flat string mapping for ``HSET`` (None becomes an empty string)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, Enum):
                value = value.value
            out[key] = "" if value is None else str(value)
        return out

    @classmethod
    def from_redis(cls, data: dict) -> CameraHealth:
        """Inverse of :meth:`to_redis` (bytes or str keys and values)."""
        text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in data.items()}
        kwargs: dict = {}
        for f in fields(cls):
            raw = text.get(f.name, "")
            if f.name == "state":
                kwargs[f.name] = CameraState(raw or "stopped")
            elif f.name in ("camera_id", "url", "decode_mode"):
                kwargs[f.name] = raw
            elif f.name in ("last_error_class", "last_error"):
                kwargs[f.name] = raw or None
            elif f.name in ("last_frame_time", "keyframe_interval_s"):
                kwargs[f.name] = float(raw) if raw else None
            elif f.type in ("int",):
                kwargs[f.name] = int(raw or 0)
            else:
                kwargs[f.name] = float(raw or 0.0)
        return cls(**kwargs)


class HealthPublisher:
    """Writes health snapshots to Redis; a Redis outage is logged once and never raises."""

    def __init__(self, client: redis.Redis, ttl_s: float = 60.0, prefix: str = "guanjia"):
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._failing = False

    def camera_key(self, camera_id: str) -> str:
        return f"{self.prefix}:camera:{camera_id}"

    @property
    def last_seen_key(self) -> str:
        return f"{self.prefix}:cameras:last_seen"

    def publish(self, snapshots: list[CameraHealth]) -> bool:
        """Write all snapshots in one pipeline; False (logged once per outage) if Redis is down."""
        try:
            pipe = self.client.pipeline(transaction=False)
            seen = {}
            for snap in snapshots:
                key = self.camera_key(snap.camera_id)
                pipe.hset(key, mapping=snap.to_redis())
                pipe.expire(key, max(1, int(self.ttl_s)))
                seen[snap.camera_id] = snap.last_frame_time or 0.0
            if seen:
                pipe.zadd(self.last_seen_key, seen)
            pipe.execute()
        except redis.RedisError as exc:
            if not self._failing:
                log.warning("health: cannot publish to Redis (%s); analysis continues, retrying", type(exc).__name__)
            self._failing = True
            return False
        if self._failing:
            log.info("health: publishing to Redis again")
        self._failing = False
        return True

    def forget(self, camera_ids: list[str]) -> None:
        """Remove cameras that this worker no longer pulls."""
        if camera_ids:
            self.client.delete(*[self.camera_key(c) for c in camera_ids])
            self.client.zrem(self.last_seen_key, *camera_ids)


def read_health(client: redis.Redis, prefix: str = "guanjia") -> list[CameraHealth]:
    """All cameras known to the last-seen set, with their current hash (expired ones as ``stopped``)."""
    pub = HealthPublisher(client, prefix=prefix)
    ids = [c.decode() if isinstance(c, bytes) else c for c in client.zrange(pub.last_seen_key, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for camera_id in ids:
        pipe.hgetall(pub.camera_key(camera_id))
    out = []
    for camera_id, data in zip(ids, pipe.execute()):
        if data:
            out.append(CameraHealth.from_redis(data))
        else:
            last = client.zscore(pub.last_seen_key, camera_id)
            out.append(CameraHealth(camera_id=camera_id, state=CameraState.stopped, url="", decode_mode="",
                                    last_frame_time=last or None, last_error_class="HealthExpired",
                                    last_error="no health report within the TTL (worker gone?)"))
    return out


def down_cameras(client: redis.Redis, stale_after_s: float = 30.0, prefix: str = "guanjia", now: float | None = None) -> list[str]:
    """Camera ids without a frame for ``stale_after_s`` (one ZRANGEBYSCORE, fine at 450k)."""
    now = time.time() if now is None else now
    key = HealthPublisher(client, prefix=prefix).last_seen_key
    return [c.decode() if isinstance(c, bytes) else c for c in client.zrangebyscore(key, "-inf", now - stale_after_s)]
