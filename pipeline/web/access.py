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


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def session_value(token: str) -> str:
    """What the page's cookie holds: derived from the token, so the token itself is never stored in it."""
    return hmac.new(token.encode(), b"guanjia-page-session-v1", hashlib.sha256).hexdigest()
