"""``guanjia cameras publish``: camera configs → the compacted topic that ingest workers share."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import click


@click.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--partitions", default=12, show_default=True,
              help="Partitions if the topic is created (the most ingest workers that can share it; see `guanjia plan`).")
@click.option("--no-tombstones", is_flag=True, help="Keep cameras that the topic has but the configs no longer list.")
@click.option("--all", "publish_all", is_flag=True, help="Publish unchanged cameras too (default: only new or changed).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def publish(configs: tuple[Path, ...], partitions: int, no_tombstones: bool, publish_all: bool, as_json: bool) -> None:
    """Publish every camera of the configs to guanjia.cameras.v1 (key: camera id) and tombstone the
    cameras that the topic has but the configs no longer list.

    URLs go out as written, with their ${VAR} templates: each worker fills them in from its own
    environment, so passwords never travel on Kafka.

    \b
    Example:
      guanjia cameras publish configs/example-city.yaml
    """
    from aiokafka.errors import KafkaConnectionError

    from pipeline.assignment import CAMERAS_TOPIC, publish_cameras
    from pipeline.cli.kafka_errors import kafka_unreachable
    from pipeline.config.env import keep_templates
    from pipeline.config.errors import ConfigError
    from pipeline.config.loader import load_config
    from pipeline.security import kafka_security_options
    from pipeline.settings import get_settings

    missing = [str(p) for p in configs if not p.is_file()]
    if missing:
        raise click.ClickException(f"no such config file: {', '.join(missing)}")
    try:
        with keep_templates():
            city = load_config(configs)
    except ConfigError as exc:
        raise click.ClickException(f"config has errors (run `guanjia config validate`):\n{exc}") from None
    settings = get_settings()
    security = kafka_security_options(settings)
    topic = settings.topic(CAMERAS_TOPIC)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    try:
        result = asyncio.run(publish_cameras(settings.kafka_bootstrap, topic, city.cameras, partitions=partitions,
                                             tombstone_missing=not no_tombstones, skip_unchanged=not publish_all,
                                             security=security))
    except (KafkaConnectionError, OSError) as exc:
        raise kafka_unreachable(settings.kafka_bootstrap, exc) from None
    seconds = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({"topic": topic, "cameras": len(city.cameras), "published": result.published,
                               "unchanged": result.unchanged, "tombstoned": result.tombstoned,
                               "topic_created": result.topic_created, "seconds": round(seconds, 3)}))
        return
    created = " (topic created)" if result.topic_created else ""
    click.echo(f"{topic}{created}: {len(city.cameras)} camera(s), {result.published} published, "
               f"{result.unchanged} unchanged, {len(result.tombstoned)} tombstoned in {seconds:.1f}s")
    for camera_id in result.tombstoned[:20]:
        click.echo(f"  removed {camera_id}")
    if len(result.tombstoned) > 20:
        click.echo(f"  … and {len(result.tombstoned) - 20} more")
