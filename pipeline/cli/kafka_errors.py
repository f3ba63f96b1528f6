"""One-line errors for an unreachable Kafka, shared by the commands that talk to it."""

from __future__ import annotations

import logging

import click

from ingest.urls import redact_url

SERVICES_HINT = "start it with `bash scripts/services.sh up` (or `guanjia services up`)"


def kafka_hosts(bootstrap: str) -> str:
    """Bootstrap servers for display: ``host:port`` only, credentials never."""
    return ",".join(redact_url(part.strip()).rsplit("@", 1)[-1] for part in bootstrap.split(","))


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
