"""Topic names and their creation with the configured partition count."""

from __future__ import annotations

import asyncio
import logging

from pipeline.settings import Settings

log = logging.getLogger(__name__)

# short name → what travels on it (key)
TOPICS: dict[str, str] = {
    "detections": "Detection (key: camera_id)",
    "sensor-readings": "SensorReading (key: sensor_id)",
    "governance-events": "GovernanceEvent (key: event_id)",
    "camera-health": "CameraHealth (key: camera_id)",
    "dead-letter": "DeadLetter (key: source topic)",
    "event-acks": "Ack (key: event_id)",
    "grid-signals": "internal: FireSignal / SensorReading re-keyed by grid_id",
    "event-changes": "internal: GovernanceEvent drafts and DeskTick (key: event_id)",
}


def topic_names(settings: Settings) -> dict[str, str]:
    return {short: settings.topic(short) for short in TOPICS}


async def ensure_topics(settings: Settings, partitions: int | None = None,
                        compacted: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Create the missing topics (idempotent); returns the names created.

    ``compacted`` names more topics to create with ``cleanup.policy=compact`` and the same partition
    count: the events worker's table changelogs, so that they exist before its consumer group's
    first assignment (Faust creates them itself only while it starts, racing that assignment).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from pipeline.security import kafka_client_options, start_kafka_client

    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await start_kafka_client(admin, settings)  # refused credentials / unreachable: one-line TransportError
    try:
        existing = set(await admin.list_topics())
        n = partitions or settings.topic_partitions
        new = [NewTopic(name, n, 1) for name in topic_names(settings).values() if name not in existing]
        new += [NewTopic(name, n, 1, topic_configs={"cleanup.policy": "compact"})
                for name in compacted if name not in existing]
        if new:
            await admin.create_topics(new)
            for _ in range(50):  # wait until metadata shows them
                if {t.name for t in new} <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
        return [t.name for t in new]
    finally:
        await admin.close()
