"""The risk-map page in real headless Debian Chromium, driven over the DevTools protocol.

The page is opened first; detections, an event, a down camera and a camera named like an XSS payload
are fed to the LiveState AFTER it loaded, so what the DOM shows arrived over the live SSE stream.
Set GUANJIA_UPDATE_DOCS_IMG=1 to refresh docs/img/riskmap.png from the screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.web import LiveState, start_page

pytestmark = pytest.mark.integration

HOSTILE = "<img src=x onerror=alert(1)>"
TOKEN = "page-token-3b8e51"
REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,860",
    "--remote-debugging-port=0",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]


def chromium_binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "Debian chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("GUANJIA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


class DevTools:
    """A minimal Chrome DevTools Protocol session over one page target's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            future = self.pending.pop(data["id"], None) if "id" in data else None
            if future is None:
                self.events.append(data)
            elif "error" in data:
                future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
            else:
                future.set_result(data.get("result", {}))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.pending[call_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        return await asyncio.wait_for(self.pending[call_id], 30)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        body = await self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out waiting for {what}; page text:\n{body[:2000]}")


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[DevTools]:
    process = await asyncio.create_subprocess_exec(
        chromium_binary(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"chromium did not open its DevTools port (exit code {process.returncode})"
                )
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(
                page["webSocketDebuggerUrl"], max_msg_size=64 * 2**20
            ) as ws:
                tools = DevTools(ws)
                yield tools
                tools.reader.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def inventory(with_hostile: bool) -> list[dict[str, Any]]:
    cams = [
        {
            "id": "dg-humen-001",
            "name": "虎门 Market gate",
            "grid": "HM-0101",
            "town": "虎门镇",
            "village": "北栅社区",
            "lat": 22.8150,
            "lon": 113.6720,
            "zones": [{"name": "gate", "crowd_threshold": 20}],
        },
        {
            "id": "dg-humen-002",
            "name": "Bus station",
            "grid": "HM-0102",
            "town": "虎门镇",
            "village": "北栅社区",
            "lat": 22.8210,
            "lon": 113.6810,
        },
        {
            "id": "dg-humen-003",
            "name": "Riverside",
            "grid": "HM-0203",
            "town": "虎门镇",
            "village": "龙眼社区",
            "lat": 22.8080,
            "lon": 113.6900,
        },
        {
            "id": "dg-humen-004",
            "name": "Warehouse row",
            "grid": "HM-0204",
            "town": "虎门镇",
            "village": "龙眼社区",
            "lat": 22.8040,
            "lon": 113.6770,
        },
    ]
    if with_hostile:
        cams.append(
            {
                "id": "dg-humen-666",
                "name": HOSTILE,
                "grid": "HM-0203",
                "town": "虎门镇",
                "lat": 22.8120,
                "lon": 113.6950,
            }
        )
    return cams


def feed(state: LiveState) -> None:
    """What the workers would send, after the page is open."""
    now = time.time()
    state.set_cameras(inventory(with_hostile=True))
    state.apply_detection(
        {
            "schema": "guanjia.detection.v1",
            "camera_id": "dg-humen-001",
            "seq": 7,
            "capture_time": now,
            "frame_width": 768,
            "frame_height": 576,
            "grid_id": "HM-0101",
            "crowd_estimator": "boxes",
            "zones": [{"zone": "*", "count": 37}, {"zone": "gate", "count": 23}],
            "fire": {"score": 0.02, "confirmed": False},
            "latency_ms": 41.0,
        }
    )
    state.apply_detection(
        {
            "camera_id": "dg-humen-002",
            "capture_time": now,
            "frame_width": 640,
            "frame_height": 480,
            "seq": 3,
            "zones": [{"zone": "*", "count": 4}],
        }
    )
    state.apply_health(
        {"camera_id": "dg-humen-003", "time": now, "state": "error", "reason": "TimeoutError"}
    )
    state.apply_event(
        {
            "schema": "guanjia.governance-event.v1",
            "event_id": "evt-7c1d",
            "revision": 0,
            "action": "opened",
            "status": "open",
            "rule": "crowding",
            "catalog_code": "01.01.01.01",
            "title_zh": "人员密集",
            "title_en": "Crowding",
            "severity": "high",
            "confidence": 0.9,
            "camera_id": "dg-humen-001",
            "zone": "gate",
            "grid_id": "HM-0101",
            "village": "北栅社区",
            "town": "虎门镇",
            "started_at": now - 45,
            "updated_at": now,
            "value": 23,
            "peak": 23,
            "routing": {
                "level": "grid",
                "unit": "grid:HM-0101 网格员",
                "department": "综治中心",
                "deadline_at": now + 15 * 60,
                "escalations": 0,
            },
        }
    )
    state.apply_detection(
        {
            "camera_id": "dg-humen-004",
            "capture_time": now,
            "frame_width": 640,
            "frame_height": 360,
            "seq": 12,
            "zones": [{"zone": "*", "count": 2}],
            "fire": {"score": 0.97, "confirmed": True},
        }
    )
    state.apply_event(
        {
            "event_id": "evt-f1re",
            "action": "escalated",
            "status": "open",
            "rule": "fire",
            "catalog_code": "02.01.01.01",
            "title_zh": "火情",
            "title_en": "Fire",
            "severity": "critical",
            "camera_id": "dg-humen-004",
            "grid_id": "HM-0204",
            "village": "龙眼社区",
            "town": "虎门镇",
            "fused": True,
            "peak": 0.97,
            "routing": {
                "level": "town",
                "unit": "town:虎门镇 应急管理办",
                "department": "消防救援",
                "deadline_at": now + 4 * 60,
                "escalations": 1,
            },
        }
    )


def test_riskmap_updates_live_and_renders_hostile_text_as_text(tmp_path: Path) -> None:
    chromium_binary()

    async def main() -> None:
        state = LiveState()
        state.set_cameras(inventory(with_hostile=False))
        server = await start_page(state, host="127.0.0.1", port=0, token=TOKEN, push_interval_s=0.1)
        profile = Path(tempfile.mkdtemp(prefix="guanjia-chromium-", dir=tmp_path))
        try:
            async with chromium(profile) as tools:
                for domain in ("Page", "Runtime", "Log"):
                    await tools.send(f"{domain}.enable")
                await tools.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=860,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await tools.send("Page.navigate", url=f"{server.url}?token={TOKEN}")
                await tools.wait_for(
                    "document.getElementById('conn')?.classList.contains('live')", "the SSE stream"
                )
                await tools.wait_for(
                    "document.body.dataset.version !== undefined", "the first snapshot"
                )
                assert (
                    await tools.evaluate("location.search") == ""
                )  # the token left the address bar
                assert (
                    await tools.evaluate("document.querySelectorAll('#events tbody tr').length")
                    == 0
                )

                feed(state)  # after the page loaded: everything below arrives over SSE

                await tools.wait_for(
                    "!!document.querySelector('#events tr[data-event-id=\"evt-7c1d\"]')",
                    "the event",
                )
                await tools.wait_for(
                    "document.querySelector('#cameras tr[data-camera=\"dg-humen-001\"] td.count')?.textContent === '37'",
                    "the live count",
                )
                row = await tools.evaluate(
                    "document.querySelector('#events tr[data-event-id=\"evt-7c1d\"]').innerText"
                )
                for text in (
                    "人员密集",
                    "01.01.01.01",
                    "grid:HM-0101 网格员",
                    "Market gate",
                    "gate",
                    "HM-0101",
                ):
                    assert text in row, text
                assert (
                    await tools.evaluate("document.getElementById('t-events').textContent") == "2"
                )
                order = await tools.evaluate(
                    "[...document.querySelectorAll('#events tbody tr')].map(r => r.dataset.eventId)"
                )
                assert order == ["evt-f1re", "evt-7c1d"]  # critical before high
                fire_row = await tools.evaluate(
                    "document.querySelector('#events tr[data-event-id=\"evt-f1re\"]').innerText"
                )
                assert "peak 0.97" in fire_row and "escalated ×1" in fire_row
                assert (
                    await tools.evaluate(
                        "document.querySelector('#map g.cam[data-camera=\"dg-humen-004\"]').getAttribute('class')"
                    )
                    == "cam state-fire"
                )
                marker = await tools.evaluate(
                    "[...document.querySelectorAll('#map g.cam[data-camera=\"dg-humen-001\"] text')].map(t => t.textContent)"
                )
                assert marker == ["37", "虎门 Market gate"]
                assert (
                    await tools.evaluate(
                        "document.querySelector('#map g.cam[data-camera=\"dg-humen-001\"]').getAttribute('class')"
                    )
                    == "cam state-crowding"
                )
                zones = await tools.evaluate(
                    "document.querySelector('#cameras tr[data-camera=\"dg-humen-001\"] td.zones').textContent"
                )
                assert zones == "gate 23"

                # down camera stands out: flagged on the map and listed
                assert (
                    await tools.evaluate(
                        "document.querySelector('#map g.cam[data-camera=\"dg-humen-003\"]').getAttribute('class')"
                    )
                    == "cam state-down"
                )
                assert "Riverside" in await tools.evaluate(
                    "document.getElementById('down-list').innerText"
                )

                # the hostile name is text: shown verbatim, no element created, no script ran
                assert await tools.evaluate("document.querySelectorAll('img').length") == 0
                assert await tools.evaluate(
                    f"[...document.querySelectorAll('#cameras td.cam-name')].some(td => td.textContent === {json.dumps(HOSTILE)})"
                )
                assert await tools.evaluate(
                    f"[...document.querySelectorAll('#map text.name')].some(t => t.textContent === {json.dumps(HOSTILE)})"
                )

                # the deadline counts down in the page without a new snapshot
                first = await tools.evaluate(
                    "document.querySelector('#events td.left').textContent"
                )
                assert first.count(":") == 1 and not first.startswith("overdue"), first
                await tools.wait_for(
                    f"document.querySelector('#events td.left').textContent !== {json.dumps(first)}",
                    "the countdown",
                    5,
                )

                shot = await tools.send("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                (tmp_path / "riskmap.png").write_bytes(png)
                (tmp_path / "riskmap.html").write_text(
                    await tools.evaluate("document.documentElement.outerHTML")
                )
                assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
                if os.environ.get("GUANJIA_UPDATE_DOCS_IMG") == "1":
                    (REPO_ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(
                        tmp_path / "riskmap.png", REPO_ROOT / "docs" / "img" / "riskmap.png"
                    )

                problems = [
                    e
                    for e in tools.events
                    if e["method"] in ("Page.javascriptDialogOpening", "Runtime.exceptionThrown")
                ]
                problems += [
                    e
                    for e in tools.events
                    if e["method"] == "Log.entryAdded"
                    and e["params"]["entry"]["level"] == "error"
                    and "favicon" not in e["params"]["entry"].get("url", "")
                ]
                assert problems == [], problems  # no alert, no script error, no CSP violation
        finally:
            await server.close()

    asyncio.run(main())


def test_riskmap_without_the_token_shows_401_in_the_browser(tmp_path: Path) -> None:
    chromium_binary()

    async def main() -> None:
        server = await start_page(LiveState(), host="127.0.0.1", port=0, token=TOKEN)
        try:
            async with chromium(tmp_path / "profile") as tools:
                await tools.send("Page.enable")
                await tools.send("Page.navigate", url=server.url)
                text = await tools.wait_for(
                    "document.body && document.body.innerText", "the 401 page"
                )
                assert text.startswith("401")
                assert await tools.evaluate("document.getElementById('map')") is None
        finally:
            await server.close()

    asyncio.run(main())
