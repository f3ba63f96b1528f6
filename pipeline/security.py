"""Transport security in one place: settings → Kafka client options, Faust credentials, Redis clients.

Every Kafka and Redis client in the project is built from these, so PLAINTEXT/SSL/SASL and Redis ACL/TLS
are configured once (GUANJIA_* variables, see ``pipeline.settings``) and their errors read the same:
one line naming the address (credentials never) and the setting to check.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import click

from ingest.urls import redact_text, redact_url
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SASL_PROTOCOLS = {"SASL_PLAINTEXT", "SASL_SSL"}
SSL_PROTOCOLS = {"SSL", "SASL_SSL"}
KAFKA_HINT = "start it with `bash scripts/services.sh up` (or `guanjia services up`)"


class SecurityConfigError(click.ClickException):
    """Security settings that cannot work together (one line, names the GUANJIA_* variable).

    A ClickException, so any ``guanjia`` command that meets it prints the line and exits 1.
    """


class TransportError(click.ClickException):
    """A Kafka or Redis server refused us or cannot be reached (one line, address redacted)."""


REDIS_SCHEMES = ("redis", "rediss", "unix")
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9_.-]+|\[[0-9A-Za-z:.%]+\])(?::\d{1,5})?$")
_LEADING_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)(?=:|//)")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def unparseable(value: str, schemes: Collection[str] = ()) -> str:
    """``<unparseable rediss URL, 31 chars>`` (the scheme only when it is one of ``schemes``) or
    ``<unparseable, 7 chars>``: what a message shows of a value that does not parse. Its text is never shown:
    it may be a password pasted into the wrong variable, or a URL whose credentials redaction cannot find."""
    scheme = _LEADING_SCHEME.match(value)
    if scheme and scheme.group(1).lower() in schemes:
        return f"<unparseable {scheme.group(1).lower()} URL, {len(value)} chars>"
    return f"<unparseable, {len(value)} chars>"


def shown_url(url: str, schemes: Collection[str] = REDIS_SCHEMES) -> str:
    """A URL for a message: redacted when it parses as ``scheme://…`` with one of ``schemes``, else
    :func:`unparseable` (its scheme and length only)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return unparseable(url, schemes)
    scheme = parts.scheme.lower()
    if scheme in schemes and url[:len(scheme) + 3].lower() == f"{scheme}://":
        return redact_url(url)
    return unparseable(url, schemes)


def _host_port(part: str) -> bool:
    if _HOST_PORT.match(part):
        return True
    try:
        socket.inet_pton(socket.AF_INET6, part)  # aiokafka takes a bare IPv6 address too
    except (OSError, ValueError):
        return False
    return True


def kafka_hosts(bootstrap: str) -> str:
    """Bootstrap servers for display: ``host:port`` only, credentials never (an entry that is not
    ``host:port`` once ``user:password@`` is cut off shows as ``<unparseable, N chars>``)."""
    shown = []
    for part in bootstrap.split(","):
        part = part.strip()
        host = redact_url(part).rsplit("@", 1)[-1]
        shown.append(host if _host_port(host) else unparseable(part))
    return ",".join(shown)


def check_bootstrap(bootstrap: str) -> None:
    """SecurityConfigError unless GUANJIA_KAFKA_BOOTSTRAP is ``host:port[,host:port…]`` (aiokafka would
    raise a ValueError quoting the bad entry, e.g. a password written as the port)."""
    parts = [part.strip() for part in bootstrap.split(",")]
    for n, part in enumerate(parts, 1):
        if not _host_port(part) and (part or not any(parts)):  # an empty entry (a trailing comma) is skipped
            raise SecurityConfigError(
                f"GUANJIA_KAFKA_BOOTSTRAP: entry {n} of {len(parts)} ({unparseable(part)}) is not host:port; write "
                "host:port[,host:port...], with credentials in GUANJIA_KAFKA_USERNAME/GUANJIA_KAFKA_PASSWORD")


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for SSL/SASL_SSL (CA file or system CAs, optional client certificate); None otherwise."""
    if settings.kafka_security_protocol not in SSL_PROTOCOLS:
        if settings.kafka_ca_file or settings.kafka_cert_file:
            raise SecurityConfigError(
                f"GUANJIA_KAFKA_CA_FILE/CERT_FILE are set but GUANJIA_KAFKA_SECURITY_PROTOCOL is "
                f"{settings.kafka_security_protocol}; use SSL or SASL_SSL")
        return None
    if bool(settings.kafka_cert_file) != bool(settings.kafka_key_file):
        raise SecurityConfigError("GUANJIA_KAFKA_CERT_FILE and GUANJIA_KAFKA_KEY_FILE go together: set both or neither")
    try:
        context = ssl.create_default_context(cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None)
        if settings.kafka_cert_file:
            context.load_cert_chain(str(settings.kafka_cert_file), str(settings.kafka_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise SecurityConfigError(f"cannot load the Kafka TLS files (GUANJIA_KAFKA_CA_FILE/CERT_FILE/KEY_FILE): "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


def kafka_security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security (no bootstrap servers, but they are checked)."""
    check_bootstrap(settings.kafka_bootstrap)
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol in SASL_PROTOCOLS:
        password = _secret(settings.kafka_password)
        if not settings.kafka_username or not password:
            raise SecurityConfigError(
                f"GUANJIA_KAFKA_SECURITY_PROTOCOL={protocol} needs GUANJIA_KAFKA_USERNAME and GUANJIA_KAFKA_PASSWORD")
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=password)
    return options


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer/Consumer/AdminClient``: bootstrap servers plus security."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **kafka_security_options(settings)}


def faust_security_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``broker_credentials`` for the configured security (none for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options = kafka_security_options(settings)
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(options["ssl_context"])}
    credentials = faust.SASLCredentials(username=options["sasl_plain_username"],
                                        password=options["sasl_plain_password"],
                                        ssl_context=options.get("ssl_context"), mechanism=options["sasl_mechanism"])
    return {"broker_credentials": credentials}


def kafka_error(settings: Settings, exc: BaseException, causes: list[str] | None = None) -> TransportError:
    """One line for a Kafka client that could not start: refused credentials, TLS failure or unreachable.

    ``causes``: aiokafka's log lines from the attempt (its KafkaConnectionError alone does not say why).
    """
    from aiokafka import errors

    where = f"Kafka at {kafka_hosts(settings.kafka_bootstrap)} ({settings.kafka_security_protocol})"
    text = " ".join([str(exc), *(causes or [])])
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.IllegalSaslStateError) or "authentication" in text.lower():
        return TransportError(f"{where} refused the credentials of user {settings.kafka_username!r} "
                              f"({settings.kafka_sasl_mechanism}): check GUANJIA_KAFKA_USERNAME/GUANJIA_KAFKA_PASSWORD")
    if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "certificate" in text.lower():
        return TransportError(f"{where}: TLS handshake failed ({type(exc).__name__}); check GUANJIA_KAFKA_CA_FILE "
                              f"and GUANJIA_KAFKA_SECURITY_PROTOCOL")
    if " closed" in text:
        return TransportError(f"{where} closed the connection: check GUANJIA_KAFKA_SECURITY_PROTOCOL matches the "
                              f"listener, and whether it requires a client certificate (GUANJIA_KAFKA_CERT_FILE/KEY_FILE)")
    return TransportError(f"cannot reach {where} (GUANJIA_KAFKA_BOOTSTRAP; {type(exc).__name__}); {KAFKA_HINT}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _captured(logger: str) -> Iterator[_Collect]:
    """Keep aiokafka's connection errors (they say why, the exception does not) off the log, for :func:`kafka_error`."""
    target = logging.getLogger(logger)
    saved = target.level, target.propagate
    collect = _Collect()
    target.addHandler(collect)
    target.setLevel(logging.WARNING)
    target.propagate = False  # the one-line error says it all
    try:
        yield collect
    finally:
        target.removeHandler(collect)
        target.setLevel(saved[0])
        target.propagate = saved[1]


async def start_kafka_client(client: Any, settings: Settings) -> None:
    """``await client.start()`` for an aiokafka producer/consumer/admin; failures become a TransportError."""
    from aiokafka.errors import KafkaError

    with _captured("aiokafka") as seen:
        try:
            await client.start()
        except (KafkaError, OSError, ssl.SSLError) as exc:
            stop = getattr(client, "stop", None) or client.close
            with suppress(Exception):  # already failing; the first error is the one to show
                await stop()
            raise kafka_error(settings, exc, seen.messages) from None


# ---------------------------------------------------------------- Redis


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> Any:
    """A ``redis.Redis`` for ``url`` (default GUANJIA_REDIS_URL): ACL user/password and CA file from settings.

    Credentials written in the URL win over GUANJIA_REDIS_USERNAME/PASSWORD. ``options`` go to redis-py
    (timeouts, ``decode_responses``...).
    """
    import redis

    url = url or settings.redis_url
    kwargs: dict[str, Any] = {"socket_connect_timeout": 3, "socket_timeout": 5, **options}
    if settings.redis_username:
        kwargs.setdefault("username", settings.redis_username)
    if settings.redis_password is not None:
        kwargs.setdefault("password", settings.redis_password.get_secret_value())
    if url.startswith("rediss://"):
        kwargs.setdefault("ssl_cert_reqs", "required")
        if settings.redis_ca_file:
            kwargs.setdefault("ssl_ca_certs", str(settings.redis_ca_file))
    elif settings.redis_ca_file:
        raise SecurityConfigError(f"GUANJIA_REDIS_CA_FILE is set but {shown_url(url)} is not rediss://; "
                                  "use rediss:// for TLS")
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        # redis-py could not parse it: show neither the URL nor what its error quotes of it (a port that
        # is really part of a password with a '/', say)
        why = _QUOTED.sub("'…'", redact_text(str(exc)))
        raise SecurityConfigError(f"GUANJIA_REDIS_URL {unparseable(url, REDIS_SCHEMES)}: {why}") from None


def redis_error(url: str, exc: BaseException, settings: Settings | None = None) -> TransportError:
    """One line for a Redis failure naming the (redacted) address: refused credentials, TLS or unreachable."""
    import redis

    where = f"Redis at {shown_url(url)}"
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError) or "WRONGPASS" in str(exc) \
            or "NOAUTH" in str(exc):
        return TransportError(f"{where} refused the credentials ({type(exc).__name__}): check the URL's user or "
                              "GUANJIA_REDIS_USERNAME/GUANJIA_REDIS_PASSWORD")
    text = redact_text(str(exc))
    secret = settings.redis_password.get_secret_value() if settings is not None and settings.redis_password else ""
    if len(secret) >= 4:  # a shorter one would mask letters of the message (and show which ones match)
        text = text.replace(secret, "***")
    if "ssl" in text.lower() or "certificate" in text.lower():
        return TransportError(f"{where}: TLS handshake failed ({text}); check GUANJIA_REDIS_CA_FILE and rediss://")
    return TransportError(f"cannot reach {where} ({type(exc).__name__}: {text}); start it with "
                          "`bash scripts/services.sh up`")


def connect_redis(settings: Settings, url: str | None = None, **options: Any) -> Any:
    """:func:`redis_client` checked with PING; any failure is one TransportError line."""
    import redis

    url = url or settings.redis_url
    client = redis_client(settings, url, **options)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise redis_error(url, exc, settings) from None
    return client
