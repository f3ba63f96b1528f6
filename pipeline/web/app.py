"""The risk-map page server: aiohttp, read-only, live updates over Server-Sent Events.

Routes: ``/`` (the page), ``/static/{app.js,app.css}``, ``/api/snapshot`` (JSON), ``/api/stream``
(SSE: a full snapshot on connect and on every change, a heartbeat comment when idle), ``/healthz``
and, when a Prometheus registry is given, ``/metrics``. Only GET/HEAD are routed.

With a token, every route except ``/healthz`` needs it: an ``Authorization: Bearer`` header, or
``/?token=…`` once — the server then sets an HttpOnly, SameSite=Strict cookie derived from the token
and redirects to ``/`` so the token leaves the address bar; the page's API calls carry the cookie.
Without a token (loopback only), every route except ``/healthz`` answers 403 unless the ``Host``
header names a loopback host, so a website the operator visits cannot read the page by DNS rebinding.

Snapshots are sent as strict JSON: a number that is not finite goes out as ``null``, never as the
``NaN``/``Infinity`` a browser's ``JSON.parse`` rejects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pipeline.web.access import (
    bearer_matches,
    check_bind,
    is_loopback_authority,
    secret_matches,
    session_value,
)
from pipeline.web.state import LiveState

log = logging.getLogger(__name__)

COOKIE = "guanjia_page"
PUBLIC_PATHS = frozenset({"/healthz"})
CONTENT_SECURITY_POLICY = "; ".join(  # noqa: FLY002 - one directive a line reads and diffs better
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}

STATE_KEY = web.AppKey("state", LiveState)
TOKEN_KEY = web.AppKey("token", str)
HUB_KEY = web.AppKey("hub", object)


class _Hub:
    """Builds one snapshot per change and hands it to every open stream (slow clients skip versions)."""

    def __init__(
        self, state: LiveState, interval_s: float, max_clients: int, max_events: int
    ) -> None:
        self.state = state
        self.interval_s = interval_s
        self.max_clients = max_clients
        self.max_events = max_events
        self.clients: set[asyncio.Queue[str | None]] = set()
        self.latest, self.version = self._encode()

    def _encode(self) -> tuple[str, int]:
        snapshot = self.state.snapshot(self.max_events)
        data = snapshot_json(snapshot)
        return f"id: {snapshot['version']}\nevent: snapshot\ndata: {data}\n\n", snapshot["version"]

    def publish(self, message: str | None) -> None:
        for queue in self.clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.state.version == self.version:
                continue
            try:
                # Off the event loop: with a thousand cameras a snapshot takes tens of milliseconds.
                self.latest, self.version = await asyncio.to_thread(self._encode)
            except Exception:  # keep serving the last good snapshot
                log.exception("risk map: building the snapshot failed; retrying on the next change")
                self.version = self.state.version
                continue
            self.publish(self.latest)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±Infinity) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def snapshot_json(snapshot: Any) -> str:
    """Strict JSON for the browser: never ``NaN`` or ``Infinity``, which ``JSON.parse`` rejects (one such
    value would break the page for good, as events replay from the beginning); they become ``null``."""
    try:
        return json.dumps(snapshot, ensure_ascii=False, allow_nan=False)
    except ValueError:  # rare (e.g. counts that overflow when summed): pay for the walk only then
        log.warning("risk map: the snapshot held a non-finite number; it is sent as null")
        return json.dumps(_finite(snapshot), ensure_ascii=False, allow_nan=False)


class _PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings (``?token=`` must never reach a log)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )


def _authorised(request: web.Request, token: str) -> bool:
    # Header values that are not UTF-8 arrive with surrogates: secret_matches counts them as wrong.
    if bearer_matches(request.headers.get("Authorization"), token):
        return True
    if secret_matches(request.cookies.get(COOKIE), session_value(token)):
        return True
    return secret_matches(request.query.get("token"), token)


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app.get(TOKEN_KEY)
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    if not token:
        # Loopback-only serving: refuse any other name in Host (DNS rebinding). The raw header, not
        # request.host, which falls back to this machine's name when the header is missing.
        if is_loopback_authority(request.headers.get("Host")):
            return await handler(request)
        return web.Response(
            status=403,
            text="403: without GUANJIA_PAGE_TOKEN this page answers only to localhost or a loopback "
            "address in the Host header; open it as http://127.0.0.1:<port>/ or set a token\n",
            headers={"Cache-Control": "no-store"},
        )
    if not _authorised(request, token):
        return web.Response(
            status=401,
            text="401: this page needs its token: send 'Authorization: Bearer <token>' or open /?token=<token> once\n",
            headers={"WWW-Authenticate": 'Bearer realm="guanjia"', "Cache-Control": "no-store"},
        )
    if "token" in request.query and request.path == "/":
        # Trade the token in the URL for a cookie, then drop it from the address bar and history.
        response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE, session_value(token), httponly=True, samesite="Strict", path="/"
        )
        return response
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def _asset(name: str) -> bytes:
    return resources.files("pipeline.web").joinpath(name).read_bytes()


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        body=_asset("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=_asset(name),
        content_type=ASSETS[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def _snapshot(request: web.Request) -> web.Response:
    hub: _Hub = request.app[HUB_KEY]  # type: ignore[assignment]
    snapshot = await asyncio.to_thread(request.app[STATE_KEY].snapshot, hub.max_events)
    return web.json_response(snapshot, headers={"Cache-Control": "no-store"}, dumps=snapshot_json)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})


def _stream_handler(heartbeat_s: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def stream(request: web.Request) -> web.StreamResponse:
        hub: _Hub = request.app[HUB_KEY]  # type: ignore[assignment]
        if len(hub.clients) >= hub.max_clients:
            raise web.HTTPServiceUnavailable(text="too many live viewers; retry later\n")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        hub.clients.add(queue)
        try:
            await response.write(b"retry: 3000\n\n" + hub.latest.encode())
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), heartbeat_s)
                except TimeoutError:
                    message = ": heartbeat\n\n"
                if message is None:
                    break
                await response.write(message.encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            hub.clients.discard(queue)
        return response

    return stream


def create_app(
    state: LiveState,
    token: str | None = None,
    *,
    registry: Any = None,
    push_interval_s: float = 1.0,
    heartbeat_s: float = 15.0,
    max_clients: int = 64,
    max_events: int = 300,
) -> web.Application:
    """The page's aiohttp application.

    ``registry``: a prometheus ``CollectorRegistry`` to expose on ``/metrics`` too. Changes are pushed at
    most every ``push_interval_s``; the page lists the ``max_events`` most urgent open events.
    """
    app = web.Application(middlewares=[_auth])
    app[STATE_KEY] = state
    if token:
        app[TOKEN_KEY] = token
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/snapshot", _snapshot)
    app.router.add_get("/api/stream", _stream_handler(heartbeat_s))
    app.router.add_get("/healthz", _healthz)
    if registry is not None:
        from pipeline.metrics import aiohttp_metrics_handler

        app.router.add_get("/metrics", aiohttp_metrics_handler(registry))

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        hub = _Hub(state, push_interval_s, max_clients, max_events)
        app[HUB_KEY] = hub
        task = asyncio.create_task(hub.run(), name="guanjia-page-hub")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def end_streams(app: web.Application) -> None:
        app[HUB_KEY].publish(None)  # type: ignore[attr-defined]

    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(end_streams)
    return app


@dataclass
class PageServer:
    """A running page: ``url`` to open, ``close()`` to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_page(
    state: LiveState,
    host: str = "127.0.0.1",
    port: int = 8088,
    token: str | None = None,
    **app_options: Any,
) -> PageServer:
    """Serve the page inside the running event loop (port 0 picks a free one); raises
    :class:`~pipeline.web.access.UnsafeBindError` for a non-loopback host without a token."""
    check_bind(host, token)
    runner = web.AppRunner(
        create_app(state, token, **app_options),
        access_log_class=_PathOnlyAccessLogger,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno, f"cannot serve the risk-map page on {host}:{port}: {exc.strerror}"
        ) from None
    bound_port = runner.addresses[0][1] if runner.addresses else port
    log.info(
        "risk-map page on http://%s:%s/%s", host, bound_port, " (token required)" if token else ""
    )
    return PageServer(runner, host, bound_port)
