"""One-line errors for an unreachable Kafka, shared by the commands that talk to it."""

from __future__ import annotations

import logging

import click

from pipeline.security import KAFKA_HINT as SERVICES_HINT
from pipeline.security import kafka_hosts

__all__ = ["SERVICES_HINT", "kafka_hosts", "kafka_unreachable", "start_kafka"]


def kafka_unreachable(bootstrap: str, exc: BaseException | None = None) -> click.ClickException:
    why = f"; {type(exc).__name__}" if exc is not None else ""
    return click.ClickException(f"cannot reach Kafka at {kafka_hosts(bootstrap)} (GUANJIA_KAFKA_BOOTSTRAP{why}); {SERVICES_HINT}")


async def start_kafka(client, bootstrap: str) -> None:
    """``await client.start()`` for an aiokafka producer/consumer; an unreachable broker becomes one line."""
    from aiokafka.errors import KafkaConnectionError

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # the one-line error says it all
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise kafka_unreachable(bootstrap, exc) from None
    finally:
        kafka_log.setLevel(level)
