"""The page server: routes, security headers, token access, SSE updates, bind refusal."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.web import LiveState, UnsafeBindError, create_app, start_page
from pipeline.web.access import check_bind, is_loopback, session_value

TOKEN = "tok-7f3a9c1e5b"


def with_client(
    state: LiveState,
    test: Callable[[TestClient], Awaitable[None]],
    token: str | None = None,
    **options,
) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(state, token, **options))) as client:
            await test(client)

    asyncio.run(main())


def live_state() -> LiveState:
    state = LiveState()
    state.set_cameras([{"id": "c1", "name": "Gate", "grid": "g1", "lat": 22.8, "lon": 113.6}])
    return state


async def read_sse_event(response: aiohttp.ClientResponse, timeout: float = 5.0) -> dict:
    """Read lines until one complete ``event: snapshot`` message; return its data."""
    data = None
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and data is not None:
                return data


def test_page_assets_and_security_headers() -> None:
    async def test(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        assert '<script src="/static/app.js"' in html
        csp = page.headers["Content-Security-Policy"]
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ):
            assert directive in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        js = await client.get("/static/app.js")
        assert (js.status, js.content_type) == (200, "text/javascript")
        assert js.headers["Content-Security-Policy"] == csp
        css = await client.get("/static/app.css")
        assert (css.status, css.content_type) == (200, "text/css")
        for path in ("/static/../app.py", "/static/state.py", "/static/index.html", "/nope"):
            missing = await client.get(path)
            assert missing.status == 404, path
            assert "Content-Security-Policy" in missing.headers

    with_client(live_state(), test)


def test_snapshot_endpoint_and_read_only() -> None:
    state = live_state()
    state.apply_detection(
        {"camera_id": "c1", "capture_time": 1.0, "zones": [{"zone": "*", "count": 4}]}
    )

    async def test(client: TestClient) -> None:
        response = await client.get("/api/snapshot")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        snap = await response.json()
        assert snap["cameras"][0]["count"] == 4
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert (await client.request(method, "/api/snapshot")).status == 405
        assert (await client.get("/healthz")).status == 200

    with_client(state, test)


def test_token_required_on_every_route_but_healthz() -> None:
    async def test(client: TestClient) -> None:
        for path in ("/", "/static/app.js", "/api/snapshot", "/api/stream"):
            response = await client.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in await response.text()
        wrong = await client.get("/api/snapshot", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        assert (
            await client.get("/api/snapshot", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status == 200
        assert (await client.get("/healthz")).status == 200

    with_client(live_state(), test, token=TOKEN)


def test_token_in_url_is_traded_for_a_cookie_once() -> None:
    async def test(client: TestClient) -> None:
        assert (await client.get(f"/?token={TOKEN}x", allow_redirects=False)).status == 401
        first = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert first.status == 303
        assert first.headers["Location"] == "/"
        cookie = first.cookies["guanjia_page"]
        assert cookie.value == session_value(TOKEN) and TOKEN not in cookie.value
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        # The client's cookie jar now carries the session: the page and its API calls work without the token.
        assert (await client.get("/")).status == 200
        assert (await client.get("/static/app.js")).status == 200
        assert (await client.get("/api/snapshot")).status == 200

    with_client(live_state(), test, token=TOKEN)


def test_stream_sends_a_snapshot_then_each_change_then_heartbeats() -> None:
    state = live_state()

    async def test(client: TestClient) -> None:
        response = await client.get("/api/stream")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Security-Policy" in response.headers
        first = await read_sse_event(response)
        assert first["cameras"][0]["count"] is None
        state.apply_detection(
            {"camera_id": "c1", "capture_time": 2.0, "zones": [{"zone": "*", "count": 11}]}
        )
        state.apply_event(
            {
                "event_id": "e1",
                "status": "open",
                "rule": "crowding",
                "severity": "high",
                "camera_id": "c1",
                "routing": {"unit": "grid:g1", "deadline_at": 4e9},
            }
        )
        second = await read_sse_event(response)
        assert second["version"] > first["version"]
        assert second["cameras"][0]["count"] == 11
        assert second["events"][0]["event_id"] == "e1"
        async with asyncio.timeout(5):
            lines = []
            while not lines or lines[-1] != b": heartbeat\n":
                lines.append(await response.content.readline())
        response.close()

    with_client(state, test, push_interval_s=0.05, heartbeat_s=0.3)


def test_stream_refuses_viewers_over_the_limit() -> None:
    async def test(client: TestClient) -> None:
        first = await client.get("/api/stream")
        await read_sse_event(first)
        second = await client.get("/api/stream")
        assert second.status == 503
        first.close()

    with_client(live_state(), test, max_clients=1)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "guanjia.example", ""])
def test_refuses_non_loopback_bind_without_a_token(host: str) -> None:
    with pytest.raises(UnsafeBindError, match="GUANJIA_PAGE_TOKEN"):
        asyncio.run(start_page(LiveState(), host=host, port=0))


def test_empty_token_is_refused() -> None:
    with pytest.raises(UnsafeBindError, match="empty"):
        check_bind("127.0.0.1", "  ")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("localhost.evil.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_start_page_serves_on_a_real_port_and_logs_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        server = await start_page(live_state(), host="127.0.0.1", port=0, token=TOKEN)
        try:
            assert server.port > 0
            # A browser keeps cookies from IP hosts; aiohttp's default jar does not.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                async with session.get(server.url + "api/snapshot") as response:
                    assert response.status == 401
                async with session.get(server.url + f"?token={TOKEN}") as response:
                    assert response.status == 200  # after the redirect, with the cookie
                    assert "风险一张图" in await response.text()
                async with session.get(server.url + "api/snapshot") as response:
                    assert (await response.json())["cameras"][0]["id"] == "c1"
        finally:
            await server.close()

    asyncio.run(main())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /api/snapshot 401" in logged
    assert TOKEN not in logged


def test_start_page_with_a_token_may_bind_all_interfaces() -> None:
    async def main() -> None:
        server = await start_page(LiveState(), host="0.0.0.0", port=0, token=TOKEN)
        url = f"http://127.0.0.1:{server.port}/api/snapshot"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, headers=headers) as response,
            ):
                assert response.status == 200
        finally:
            await server.close()

    asyncio.run(main())


def test_metrics_can_be_mounted_on_the_page_app() -> None:
    from pipeline.metrics import Metrics

    metrics = Metrics(process=False)
    metrics.frames_analysed.labels("c1").inc(3)

    async def test(client: TestClient) -> None:
        response = await client.get("/metrics")
        assert response.status == 200
        assert 'guanjia_frames_analysed_total{camera="c1"} 3.0' in await response.text()

    with_client(LiveState(), test, registry=metrics.registry)


def test_closing_the_page_ends_open_streams() -> None:
    async def main() -> None:
        server = await start_page(live_state(), port=0)
        async with aiohttp.ClientSession() as session:
            response = await session.get(server.url + "api/stream")
            await read_sse_event(response)
            await server.close()
            async with asyncio.timeout(10):
                assert await response.content.read() == b""  # EOF, not a hang

    asyncio.run(main())


async def raw_get(client: TestClient, head: bytes) -> bytes:
    """Send one hand-written request (bytes no HTTP client would send) and return its status line."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + b"Connection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            return (await reader.readline()).rstrip()
    finally:
        writer.close()


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8088",
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "10.0.0.5:8088",
        "[2001:db8::1]:8088",
        "",
    ],
)
def test_without_a_token_only_loopback_host_names_are_served(host: str) -> None:
    # DNS rebinding: a website the operator visits points its own name at 127.0.0.1; the browser
    # then sends that name in Host. Without a token the Host is the only thing telling them apart.
    async def test(client: TestClient) -> None:
        for path in ("/", "/static/app.js", "/api/snapshot", "/api/stream"):
            response = await client.get(path, headers={"Host": host})
            assert response.status in (403, 421), (path, host)
            assert "c1" not in await response.text()
        assert (await client.get("/healthz", headers={"Host": host})).status == 200

    with_client(live_state(), test)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8088",
        "127.0.0.1",
        "127.0.0.1:8088",
        "127.9.9.9:80",
        "[::1]",
        "[::1]:8088",
    ],
)
def test_without_a_token_loopback_host_names_are_served(host: str) -> None:
    async def test(client: TestClient) -> None:
        response = await client.get("/api/snapshot", headers={"Host": host})
        assert response.status == 200, host
        assert (await response.json())["cameras"][0]["id"] == "c1"

    with_client(live_state(), test)


def test_with_a_token_any_host_name_is_served() -> None:
    # Behind a proxy or on a LAN address the name differs; the token already stops a rebinding page.
    async def test(client: TestClient) -> None:
        headers = {"Host": "guanjia.example:8088", "Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/snapshot", headers=headers)).status == 200

    with_client(live_state(), test, token=TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: \xe9 tok",
        b"Cookie: guanjia_page=\xff",
        b"Cookie: guanjia_page=abc\xc3",
    ],
)
def test_undecodable_credentials_are_wrong_not_a_server_error(
    header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def test(client: TestClient) -> None:
        status = await raw_get(
            client, b"GET /api/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n"
        )
        assert status == b"HTTP/1.1 401 Unauthorized"
        status = await raw_get(client, b"GET /?token=%ff%fe HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert status == b"HTTP/1.1 401 Unauthorized"

    with_client(live_state(), test, token=TOKEN)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_missing_or_undecodable_host_is_refused_without_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def test(client: TestClient) -> None:
        status = await raw_get(client, b"GET /api/snapshot HTTP/1.1\r\nHost: 127.0.0.1\xff\r\n")
        assert status in (b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 421 Misdirected Request")
        status = await raw_get(client, b"GET /api/snapshot HTTP/1.0\r\n")
        assert status in (b"HTTP/1.0 403 Forbidden", b"HTTP/1.0 421 Misdirected Request")

    with_client(live_state(), test)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_snapshots_never_carry_non_finite_numbers() -> None:
    # Counts near the float limit overflow when summed (people); browsers reject NaN/Infinity in
    # JSON, so the API and the stream must send strict JSON whatever the records held.
    state = live_state()
    state.set_cameras([{"id": "c1", "lat": 22.8, "lon": 113.6}, {"id": "c2"}])
    for camera in ("c1", "c2"):
        state.apply_detection(
            {"camera_id": camera, "capture_time": 1.0, "zones": [{"zone": "*", "count": 1.7e308}]}
        )

    def strict(text: str) -> dict:
        def refuse(word: str) -> None:
            raise AssertionError(f"{word} in the JSON")

        return json.loads(text, parse_constant=refuse)

    async def test(client: TestClient) -> None:
        response = await client.get("/api/snapshot")
        assert response.status == 200
        snap = strict(await response.text())
        assert snap["totals"]["people"] is None
        assert {c["id"]: c["count"] for c in snap["cameras"]} == {"c1": 1.7e308, "c2": 1.7e308}
        stream = await client.get("/api/stream")
        async with asyncio.timeout(5):
            while not (line := await stream.content.readline()).startswith(b"data: "):
                pass
        assert strict(line[6:].decode())["totals"]["people"] is None
        stream.close()

    with_client(state, test)
