"""``guanjia page``: serve the live risk map fed from Kafka (every partition of events, health, detections)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

TOKEN_ENV = "GUANJIA_PAGE_TOKEN"
RETRY_S = 5.0


async def _serve(configs: tuple[Path, ...], host: str, port: int, token: str | None) -> None:
    from aiokafka import AIOKafkaConsumer

    from pipeline.security import kafka_client_options, start_kafka_client
    from pipeline.settings import get_settings
    from pipeline.web import LiveState, start_page
    from pipeline.web.feed import PAGE_CONSUMER_OPTIONS, follow, page_topics

    settings = get_settings()
    state = LiveState()
    if configs:
        from pipeline.config import ConfigError, load_config
        from pipeline.config.env import keep_templates

        try:
            # The page never opens a camera: leave ${VAR} templates (camera passwords) unfilled, so
            # this network-facing process needs no camera secret in its environment.
            with keep_templates():
                city = load_config(list(configs))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        state.set_cameras(cam.model_dump(mode="json", exclude={"url"}) for cam in city.cameras)
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), **PAGE_CONSUMER_OPTIONS)
    await start_kafka_client(consumer, settings)  # refused credentials / unreachable: one-line error
    page = None
    try:
        page = await start_page(state, host=host, port=port, token=token)
        hint = f" (token required: open {page.url}?token=<{TOKEN_ENV}> once)" if token else ""
        click.echo(f"risk map: {page.url}{hint}", err=True)
        topics = page_topics(settings.topic)
        while True:
            try:
                await follow(state, consumer, topics, on_skip=state.note_skipped)
            except RuntimeError as exc:
                click.echo(f"risk map: {exc}; retrying every {RETRY_S:.0f} s", err=True)
                await asyncio.sleep(RETRY_S)
    finally:
        if page is not None:
            await page.close()
        await consumer.stop()


@click.command("page", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Camera-group YAML file(s): names, grid cells and positions of the cameras.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=f"Address to bind; anything but loopback needs {TOKEN_ENV}.",
)
@click.option(
    "--port",
    default=8088,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
def page(configs: tuple[Path, ...], host: str, port: int) -> None:
    """Serve the live risk map (风险一张图) from Kafka: cameras, counts, health and open events.

    The page reads every partition of the governance-event, camera-health and detection topics
    (GUANJIA_TOPIC_PREFIX) with no consumer group, so it shows the whole city however many workers
    run. Set GUANJIA_PAGE_TOKEN to require a token (needed to bind beyond 127.0.0.1).

    \b
    Example:
      guanjia page --config configs/demo.yaml --port 8088
      GUANJIA_PAGE_TOKEN=$(openssl rand -hex 16) guanjia page --host 0.0.0.0
    """
    from pipeline.web.access import UnsafeBindError, check_bind

    token = os.environ.get(TOKEN_ENV) or None
    try:
        check_bind(host, token)
    except UnsafeBindError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        asyncio.run(_serve(configs, host, port, token))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    page()
