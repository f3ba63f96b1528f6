"""Kafka / Redis fixtures (owned by the services work).

The services are the real ones started by ``bash scripts/services.sh up``. When one is unreachable the
tests that need it are skipped locally, but fail when ``GUANJIA_REQUIRE_SERVICES=1`` (as in CI), so a
broken service can never turn a CI run green by skipping.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

from ingest.urls import redact_url
from pipeline.settings import Settings, get_settings

REQUIRE_ENV = "GUANJIA_REQUIRE_SERVICES"


def services_required() -> bool:
    """True when missing services must fail the run instead of skipping (CI)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def unavailable(what: str, reason: str) -> None:
    """Skip (locally) or fail (with GUANJIA_REQUIRE_SERVICES=1) because a service is unreachable."""
    message = f"{what} unreachable: {reason}; start it with `bash scripts/services.sh up`"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def _tcp_reachable(bootstrap: str, timeout: float = 2.0) -> str | None:
    """Return None when any ``host:port`` of a bootstrap list accepts a connection, else the last error."""
    error = "no address given"
    for address in filter(None, (part.strip() for part in bootstrap.split(","))):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return None
        except (OSError, ValueError) as exc:
            error = f"{address}: {exc}"
    return error


@pytest.fixture(scope="session")
def services_settings() -> Settings:
    """Process settings (GUANJIA_* env vars) as the pipeline itself would read them."""
    return get_settings()


@pytest.fixture(scope="session")
def kafka_bootstrap(services_settings: Settings) -> str:
    """Bootstrap servers of a reachable Kafka broker (GUANJIA_KAFKA_BOOTSTRAP)."""
    bootstrap = services_settings.kafka_bootstrap
    error = _tcp_reachable(bootstrap)
    if error is not None:
        unavailable(f"Kafka at {redact_url(bootstrap)}", error)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url(services_settings: Settings) -> str:
    """URL of a Redis server that answers PING (GUANJIA_REDIS_URL)."""
    url = services_settings.redis_url
    error = None
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        error = f"{type(exc).__name__}: {exc}"  # host:port only, never the password
    if error is not None:
        unavailable(f"Redis at {redact_url(url)}", error)
    return url


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "test"


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest, services_settings: Settings) -> str:
    """A topic name no other test (or earlier run) uses: ``<prefix>.test.<test name>.<random>``."""
    return f"{services_settings.topic_prefix}.test.{_slug(request.node.name, 80)}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_key_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix owned by one test; ``redis_client`` deletes every key under it afterwards."""
    return f"guanjia-test:{_slug(request.node.name, 60)}:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def redis_client(redis_url: str, redis_key_prefix: str) -> Iterator[redis.Redis]:
    """A redis-py client (str responses) on the test Redis; cleans up only keys under ``redis_key_prefix``."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{redis_key_prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
