"""``guanjia worker``: long-running worker processes."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.metrics_options import metrics_options, start_metrics

if TYPE_CHECKING:
    from pipeline.metrics import Metrics

EVENTS_GC_THRESHOLDS = (50_000, 20, 100)  # gc.set_threshold for the events worker (CPython's default: 700, 10, 10)


@click.group()
def worker() -> None:
    """Run a worker process (one per core).

    \b
    Example:
      guanjia worker events --config configs/demo.yaml
    """


# ---- guanjia worker events (the Faust app) -------------------------------------------------------
def events_metrics() -> Metrics:
    """The events worker's :class:`~pipeline.metrics.Metrics`: governance events, consumer lag and the
    process collectors. It produces no detections, so its page shows no ``detections_produced 0``."""
    from pipeline.metrics import Metrics

    metrics = Metrics()
    metrics.registry.unregister(metrics.detections_produced)
    return metrics


@worker.command("events")
@click.option("--config", "configs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Camera-group file(s) for zone thresholds and grid/village/town (repeatable).")
@click.option("--catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Event catalog and routing (default configs/catalog.yaml).")
@click.option("--app-id", default=None, help="Consumer group / changelog name (default <topic prefix>-events).")
@click.option("--batch", type=int, default=None,
              help="Messages taken per agent batch [default: pipeline.faust_app.DEFAULT_BATCH].")
@click.option("--tick", "tick_s", default=1.0, show_default=True, help="Seconds between deadline checks.")
@click.option("--loop", "loop_name", type=click.Choice(["uvloop", "aio"]), default="uvloop", show_default=True,
              help="Event loop: uvloop costs less per message than asyncio's own.")
@metrics_options(default_port=9109)
@click.option("--loglevel", default="warning", show_default=True)
def events_worker(configs: tuple[Path, ...], catalog: Path | None, app_id: str | None, batch: int | None,
                  tick_s: float, loop_name: str, metrics_port: int, metrics_host: str, no_metrics: bool,
                  loglevel: str) -> None:
    """Faust worker: detections, sensor readings and health in → governance events out; opened and
    closed events and the consumer lag of its input partitions to /metrics.

    \b
    Example:
      guanjia worker events --config configs/demo.yaml --loglevel info
      guanjia worker events --config configs/demo.yaml --metrics-port 9109
    """
    import faust
    import mode.loop

    from pipeline.catalog import DEFAULT_CATALOG, load_catalog
    from pipeline.config import ConfigError, load_config
    from pipeline.config.env import keep_templates
    from pipeline.faust_app import DEFAULT_BATCH, create_app
    from pipeline.rules.engine import RuleEngine
    from pipeline.settings import get_settings
    from pipeline.topics import ensure_topics

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mode.loop.use(loop_name)  # before any loop exists
    settings = get_settings()
    try:
        with keep_templates():  # the rules never open a stream: camera passwords stay out of this process
            city = load_config(list(configs)) if configs else None
        index = load_catalog(catalog or DEFAULT_CATALOG)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    from aiokafka.errors import KafkaConnectionError

    from pipeline.cli.kafka_errors import kafka_unreachable

    cameras = city.cameras if city else []
    engine = RuleEngine(cameras, index, city.rules if city else None)  # defaults.rules: sensor and fusion rules
    metrics = None if no_metrics else events_metrics()
    app = create_app(settings, engine, app_id=app_id,
                     batch=DEFAULT_BATCH if batch is None else batch, tick_s=tick_s, metrics=metrics)
    changelogs = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    try:
        asyncio.run(ensure_topics(settings, compacted=changelogs))
    except KafkaConnectionError as exc:
        raise kafka_unreachable(settings.kafka_bootstrap, exc) from None
    server = None if metrics is None else start_metrics(metrics.registry, metrics_host, metrics_port)
    click.echo(f"events worker: {len(cameras)} cameras, catalog {index.file.catalog.version}, "
               f"broker {settings.kafka_bootstrap}, topics {settings.topic_prefix}.*.v1"
               + (f", metrics {server.url}" if server else ""), err=True)
    # The desk keeps every event of the last day and the cameras' series in tables: with CPython's
    # default thresholds the cyclic collector rescanned that heap often enough to take ≈ 10 % of the
    # worker's CPU (0.67-0.72 s of 7 s in a 60,000-detection bench run; 0.07-0.09 s with these).
    gc.collect()
    gc.freeze()  # configuration, catalog and modules: long-lived, never garbage
    gc.set_threshold(*EVENTS_GC_THRESHOLDS)
    runner = faust.Worker(app, loglevel=loglevel.upper(), quiet=True)
    runner.spinner = None  # its handler puts the root logger at DEBUG: every debug call in aiokafka then costs a record
    try:
        runner.execute_from_commandline()
    finally:
        if server is not None:
            server.close()


# ---- guanjia worker ingest (added by the ingest/detector integration) ----------------------------
from pipeline.cli.worker_ingest import ingest

worker.add_command(ingest)
