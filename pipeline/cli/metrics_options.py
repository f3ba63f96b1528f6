"""The Prometheus options and start-up the workers share (``--metrics-port``, ``--metrics-host``, ``--no-metrics``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import MetricsServer

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_ENV = "GUANJIA_METRICS_TOKEN"


def metrics_options(default_port: int) -> Callable[[F], F]:
    """Add ``--metrics-port`` (default ``default_port``), ``--metrics-host`` and ``--no-metrics`` to a
    worker command; they arrive as ``metrics_port``, ``metrics_host`` and ``no_metrics``."""
    options = (
        click.option("--metrics-port", default=default_port, show_default=True, type=click.IntRange(0, 65535),
                     help="Prometheus /metrics port (0: a free port)."),
        click.option("--metrics-host", default="127.0.0.1", show_default=True,
                     help=f"Bind address of /metrics; any other than loopback needs {TOKEN_ENV}."),
        click.option("--no-metrics", is_flag=True, help="Do not serve /metrics."),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):  # the first one listed comes first in --help
            command = option(command)
        return command

    return decorate


def start_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` with the token from GUANJIA_METRICS_TOKEN (if set).

    A non-loopback bind without a token, or a port that cannot be bound, is a one-line
    :class:`click.ClickException`, raised before anything is served.
    """
    from pipeline.metrics import serve_metrics
    from pipeline.web.access import UnsafeBindError

    try:
        return serve_metrics(registry, host=host, port=port, token=os.environ.get(TOKEN_ENV) or None)
    except (UnsafeBindError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
