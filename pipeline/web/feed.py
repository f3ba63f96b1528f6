"""Feeding the risk map from Kafka: one consumer over every partition of the topics it shows.

The page must see the whole city, not one worker's share of partitions, so it reads with no
consumer group and assigns itself all partitions. Events and camera health are replayed from the
beginning (open events and down cameras are rebuilt after a restart; ``LiveState`` keeps memory
bounded). Detections start at the end (old counts are of no use on a live map).

The consumer is created by the caller so that Kafka security settings stay in one place.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.web.state import LiveState

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
KINDS = ("detection", "event", "health")
REPLAYED = frozenset({"event", "health"})


def apply_message(
    state: LiveState, kind: str, value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> bool:
    """Decode one message value and fold it into ``state``; False when skipped (too large, not a JSON object)."""
    if not value or len(value) > max_bytes:
        return False
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    apply: Callable[[Mapping[str, Any]], None] = {
        "detection": state.apply_detection,
        "event": state.apply_event,
        "health": state.apply_health,
    }[kind]
    apply(record)
    return True


PAGE_CONSUMER_OPTIONS: dict[str, Any] = {
    "group_id": None,  # no group: this reader gets every partition
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",  # a topic that appears later is read from its start
    "metadata_max_age_ms": 5000,  # notice topics created after the page started
}
"""Options for the page's ``AIOKafkaConsumer``, next to ``pipeline.security.kafka_client_options(settings)``."""


def page_topics(topic: Callable[[str], str]) -> dict[str, str]:
    """Full topic name → kind, from ``Settings.topic`` (e.g. ``guanjia.detections.v1`` → ``detection``)."""
    return {
        topic("detections"): "detection",
        topic("governance-events"): "event",
        topic("camera-health"): "health",
    }


async def follow(
    state: LiveState,
    consumer: Any,
    topics: Mapping[str, str],
    *,
    batch: int = 2000,
    wait_s: float = 10.0,
    max_bytes: int = MAX_MESSAGE_BYTES,
    on_skip: Callable[[str, int], None] | None = None,
) -> None:
    """Fold every message of ``topics`` (name → ``detection`` / ``event`` / ``health``) into ``state``.

    ``consumer``: a started ``aiokafka.AIOKafkaConsumer`` made with :data:`PAGE_CONSUMER_OPTIONS`.
    Runs until cancelled. Topics missing after ``wait_s`` are logged and picked up when they appear;
    when none exists, ``RuntimeError``. Malformed messages and ones over ``max_bytes`` are skipped,
    never fatal; ``on_skip(topic, offset)`` counts them.
    """
    unknown = sorted(set(topics.values()) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown topic kind(s) {unknown}; use {', '.join(KINDS)}")
    consumer.subscribe(topics=list(topics))
    deadline = asyncio.get_running_loop().time() + wait_s
    while {tp.topic for tp in consumer.assignment()} != set(topics):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assigned = consumer.assignment()
    missing = sorted(set(topics) - {tp.topic for tp in assigned})
    if len(missing) == len(topics):
        raise RuntimeError(
            f"none of the topics {', '.join(missing)} exist; start the workers first"
        )
    for name in missing:
        log.warning("risk map: topic %s does not exist yet; it is read once it appears", name)
    for tp in assigned:
        # Let the initial offset lookup finish first: its answer would override a seek made meanwhile.
        await consumer.position(tp)
    replay = [tp for tp in assigned if topics[tp.topic] in REPLAYED]
    live = [tp for tp in assigned if topics[tp.topic] not in REPLAYED]
    if replay:
        await consumer.seek_to_beginning(*replay)
    if live:
        await consumer.seek_to_end(*live)
    while True:
        records = await consumer.getmany(timeout_ms=500, max_records=batch)
        for tp, messages in records.items():
            kind = topics[tp.topic]
            for message in messages:
                if not apply_message(state, kind, message.value, max_bytes) and on_skip is not None:
                    on_skip(tp.topic, message.offset)
