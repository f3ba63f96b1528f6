"""Who may reach the page and the metrics: loopback by default, a bearer token for anything wider."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


class UnsafeBindError(ValueError):
    """Raised at start-up when a server would be reachable from the network without a token."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; hostnames and wildcard addresses are not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(
    host: str, token: str | None, what: str = "the risk-map page", env: str = "GUANJIA_PAGE_TOKEN"
) -> None:
    """Refuse to serve on a non-loopback address without a token (the data is live crowd and fire state)."""
    if token is not None and not token.strip():
        raise UnsafeBindError(f"{what}: the token is empty; set a real secret in {env} or unset it")
    if not is_loopback(host) and not token:
        raise UnsafeBindError(
            f"refusing to serve {what} on {host or '0.0.0.0'} without a token: anyone on the network could read "
            f"live crowd counts and alarms. Set {env} to a long random secret (clients then send "
            f"'Authorization: Bearer <token>'), or bind to 127.0.0.1 and reach it through an SSH tunnel or a proxy."
        )


def is_loopback_authority(authority: str | None) -> bool:
    """True when an HTTP ``Host`` header names a loopback host, with or without a port:
    ``localhost:8088``, ``127.0.0.1``, ``[::1]:8088``. Anything else, a missing header included, is not.

    Without a token this is what stops DNS rebinding: a website the operator visits can point its
    own name at 127.0.0.1, but the browser still sends that name in ``Host``.
    """
    if not authority:
        return False
    host = authority.strip()
    if ":" in host and not host.startswith("[") and is_loopback(host):
        return True  # a bare ``::1`` (browsers bracket it, but it is unambiguous)
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return False
        return ":" in host and is_loopback(host)  # brackets hold an IPv6 address, nothing else
    name, colon, port = host.rpartition(":")
    if colon:
        if ":" in name or not _is_port(colon + port):
            return False  # a bare IPv6 address must be bracketed in Host
        host = name
    return is_loopback(host)


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


def secret_matches(given: str | None, secret: str) -> bool:
    """Constant-time comparison; a value that is not valid text (undecodable header bytes) is wrong."""
    if given is None:
        return False
    try:
        given_bytes = given.encode()
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given_bytes, secret.encode())


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and secret_matches(value.strip(), token)


def session_value(token: str) -> str:
    """What the page's cookie holds: derived from the token, so the token itself is never stored in it."""
    return hmac.new(token.encode(), b"guanjia-page-session-v1", hashlib.sha256).hexdigest()
