"""Prometheus metrics for a worker: one :class:`Metrics` per process, in its own registry.

Two ways to feed the per-camera families:

* push-style — ``metrics.frames_analysed.labels(camera_id).inc()``;
* scrape-time — ``Metrics(camera_stats=fn)`` where ``fn()`` returns per-camera stats dicts (ingest's
  plain counters); they are read only when Prometheus scrapes, so 1,000 cameras cost nothing between
  scrapes. In this mode the per-camera attributes refuse ``labels()`` (one source per family).

Camera labels are camera ids; anything that does not look like one (a URL, credentials, a path) is
replaced by ``invalid-<hash>`` so a misconfigured caller can never put a secret on the metrics page.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from pipeline.web.access import bearer_matches, check_bind, is_loopback_authority

log = logging.getLogger(__name__)

PREFIX = "guanjia"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_CAMERA_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
UP_STATES = frozenset({"streaming", "up", "ok"})
REQUEST_TIMEOUT_S = 10.0
"""Seconds a metrics client has to send its whole request, and for each write of the answer."""
MAX_CONNECTIONS = 16
"""Metrics connections served at once; more are closed on accept (each costs a thread and an fd)."""
REFUSED_WARN_EVERY_S = 60.0

CameraStats = Callable[[], Iterable[Any]]
"""Returns one dict (or dataclass, e.g. ingest's ``CameraHealth``) per camera: ``camera_id`` plus any of
frames_received (frames_in), frames_decoded, frames_analysed, frames_dropped (dropped), reconnects,
decode_errors (monotonic counts), state (streaming / backoff / error …) and last_frame_time (epoch s)."""

# family name → (help, stats keys accepted, in order)
CAMERA_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "frames_received": (
        "Video frames (packets) read from the stream per camera, decoded or not.",
        ("frames_received", "frames_in"),
    ),
    "frames_decoded": ("Frames decoded per camera.", ("frames_decoded", "decoded")),
    "frames_analysed": (
        "Frames analysed by the detectors per camera.",
        ("frames_analysed", "frames_analyzed", "analysed"),
    ),
    "frames_dropped": (
        "Frames decoded but dropped (a newer frame replaced them before analysis) per camera.",
        ("frames_dropped", "dropped"),
    ),
    "reconnects": ("Stream reconnects per camera.", ("reconnects", "reconnect_count")),
    "decode_errors": ("Packets the decoder rejected per camera.", ("decode_errors",)),
}
CAMERA_UP_HELP = (
    "1 while the camera is streaming, 0 otherwise (connecting, backoff, error, stopped)."
)
LAST_FRAME_HELP = "Capture time of the camera's last frame, seconds since the epoch."


def camera_label(camera_id: Any) -> str:
    """The camera id if it looks like one, else ``invalid-<sha256 prefix>`` (never a URL or a secret)."""
    text = str(camera_id)
    if _CAMERA_ID.match(text):
        return text
    return "invalid-" + hashlib.sha256(text.encode()).hexdigest()[:12]


class CameraMetric:
    """A per-camera metric whose ``labels(camera)`` passes the id through :func:`camera_label`.

    Children are cached per camera, so the per-frame call is one dict lookup plus the increment.
    """

    MAX_CACHED = 100_000

    def __init__(self, metric: Counter | Gauge | None, name: str) -> None:
        self._metric = metric
        self._name = name
        self._children: dict[str, Any] = {}

    def labels(self, camera: str) -> Any:
        child = self._children.get(camera)
        if child is not None:
            return child
        if self._metric is None:
            raise RuntimeError(
                f"{PREFIX}_{self._name} comes from camera_stats in this Metrics; update ingest's counters"
            )
        child = self._metric.labels(camera_label(camera))
        if len(self._children) < self.MAX_CACHED:
            self._children[camera] = child
        return child

    def remove(self, camera: str) -> None:
        """Forget a camera that left this worker (keeps the page small)."""
        self._children.pop(camera, None)
        if self._metric is not None:
            try:
                self._metric.remove(camera_label(camera))
            except KeyError:
                pass


def _stat(row: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


class CameraStatsCollector(Collector):
    """Per-camera families read from ``stats()`` at scrape time."""

    def __init__(self, stats: CameraStats) -> None:
        self._stats = stats
        self._failed = False

    def describe(self) -> list[Any]:
        return self._families()

    def _families(self) -> list[Any]:
        counters = [
            CounterMetricFamily(f"{PREFIX}_{name}", help_, labels=["camera"])
            for name, (help_, _) in CAMERA_COUNTERS.items()
        ]
        return counters + [
            GaugeMetricFamily(f"{PREFIX}_camera_up", CAMERA_UP_HELP, labels=["camera"]),
            GaugeMetricFamily(
                f"{PREFIX}_camera_last_frame_timestamp_seconds", LAST_FRAME_HELP, labels=["camera"]
            ),
        ]

    def collect(self) -> Iterable[Any]:
        families = self._families()
        try:
            rows = list(self._stats())
            self._failed = False
        except Exception as exc:  # noqa: BLE001 - a scrape must not crash the worker
            if not self._failed:
                log.warning("camera stats unavailable for metrics: %s", type(exc).__name__)
            self._failed = True
            rows = []
        counters, up, last = families[: len(CAMERA_COUNTERS)], families[-2], families[-1]
        for item in rows:
            row = item if isinstance(item, Mapping) else vars(item)
            if "camera_id" not in row:
                continue
            label = [camera_label(row["camera_id"])]
            for family, (_, keys) in zip(counters, CAMERA_COUNTERS.values()):
                value = _stat(row, keys)
                if value is not None:
                    family.add_metric(label, value)
            if isinstance(row.get("state"), str):
                up.add_metric(label, 1.0 if row["state"].lower() in UP_STATES else 0.0)
            last_frame = _stat(row, ("last_frame_time",))
            if last_frame is not None:
                last.add_metric(label, last_frame)
        return families


class Metrics:
    """The worker's metrics, registered in ``self.registry`` (its own ``CollectorRegistry``)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        camera_stats: CameraStats | None = None,
        process: bool = True,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        push = camera_stats is None

        def camera_counter(name: str) -> CameraMetric:
            help_ = CAMERA_COUNTERS[name][0]
            return CameraMetric(
                Counter(f"{PREFIX}_{name}", help_, ["camera"], registry=reg) if push else None, name
            )

        self.frames_received = camera_counter("frames_received")
        self.frames_decoded = camera_counter("frames_decoded")
        self.frames_analysed = camera_counter("frames_analysed")
        self.frames_dropped = camera_counter("frames_dropped")
        self.reconnects = camera_counter("reconnects")
        self.decode_errors = camera_counter("decode_errors")
        self.camera_up = CameraMetric(
            Gauge(f"{PREFIX}_camera_up", CAMERA_UP_HELP, ["camera"], registry=reg)
            if push
            else None,
            "camera_up",
        )
        self.camera_last_frame = CameraMetric(
            Gauge(
                f"{PREFIX}_camera_last_frame_timestamp_seconds",
                LAST_FRAME_HELP,
                ["camera"],
                registry=reg,
            )
            if push
            else None,
            "camera_last_frame_timestamp_seconds",
        )
        if not push:
            reg.register(CameraStatsCollector(camera_stats))
        self.inference_latency = Histogram(
            f"{PREFIX}_inference_latency_seconds",
            "Wall time of one ONNX Runtime batch, per model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_inference_batch_size",
            "Images per ONNX Runtime batch, per model.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.detections_produced = Counter(
            f"{PREFIX}_detections_produced",
            "Detection records produced (published or queued).",
            registry=reg,
        )
        self.events_opened = Counter(
            f"{PREFIX}_events_opened",
            "Governance events opened, by type (rule).",
            ["type"],
            registry=reg,
        )
        self.events_closed = Counter(
            f"{PREFIX}_events_closed",
            "Governance events closed, by type (rule).",
            ["type"],
            registry=reg,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Messages not yet consumed (high watermark − committed/position), per topic-partition.",
            ["topic", "partition"],
            registry=reg,
        )
        if process:
            from prometheus_client import PlatformCollector, ProcessCollector

            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)

    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Count a governance-event revision (a ``GovernanceEvent`` dict): ``opened`` / ``closed`` actions."""
        kind = str(event.get("rule") or event.get("type") or "unknown")[:40]
        action = event.get("action")
        if action == "opened":
            self.events_opened.labels(kind).inc()
        elif action == "closed":
            self.events_closed.labels(kind).inc()

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Set lag for each ``(topic, partition)``."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def render(self) -> bytes:
        """The exposition text (what ``/metrics`` serves)."""
        return generate_latest(self.registry)


class _DeadlineReader(io.RawIOBase):
    """Socket reads that give up once ``deadline`` (monotonic) has passed, however the bytes trickle in.

    A per-read timeout alone lets a client send one byte every few seconds and hold its thread forever.
    """

    def __init__(self, sock: socket.socket, deadline: float, timeout: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("metrics request not received in time")
        self._sock.settimeout(min(self._timeout, left))
        return self._sock.recv_into(buffer)


class _QuietServerHandler(ServerHandler):
    def log_exception(self, exc_info: Any) -> None:
        # A client that stopped reading (write timeout, reset) is no error: no traceback on stderr.
        if isinstance(exc_info[1], OSError):
            log.debug("metrics: client dropped: %s", type(exc_info[1]).__name__)
        else:
            log.error("metrics: request failed", exc_info=exc_info)


class _QuietHandler(WSGIRequestHandler):
    """One request per connection, which must arrive within the server's ``request_timeout`` seconds."""

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # type: ignore[attr-defined]
        super().setup()  # sets the socket timeout, which also bounds each write of the answer
        deadline = time.monotonic() + self.timeout
        self.rfile.close()  # nothing read yet: read through the deadline instead
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline, self.timeout))

    def handle(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
        except OSError as exc:  # idle, too slow or gone: drop it
            log.debug("metrics: connection dropped before its request: %s", type(exc).__name__)
            return
        self.connection.settimeout(self.timeout)
        handler = _QuietServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False
        )
        handler.request_handler = self
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` of them; more are closed at once."""

    daemon_threads = True
    request_timeout = REQUEST_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._refused = 0
        self._warned_at = -REFUSED_WARN_EVERY_S

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            self._refused += 1
            now = time.monotonic()
            # One line a minute at most: a peer must not flood the log either.
            if now - self._warned_at >= REFUSED_WARN_EVERY_S:
                log.warning(
                    "metrics: %d connections already open, closed %d new one(s)",
                    self.max_connections,
                    self._refused,
                )
                self._warned_at, self._refused = now, 0
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: request failed: %s", type(sys.exc_info()[1]).__name__)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def loopback_host_header(value: str | None) -> bool:
    """True when an HTTP ``Host`` names this machine's loopback (:func:`is_loopback_authority`), or is
    missing (a scraper speaking HTTP/1.0; browsers always send one)."""
    return value is None or is_loopback_authority(value)


def _guarded(app: Callable[..., Any], token: str | None) -> Callable[..., Any]:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not token and not loopback_host_header(environ.get("HTTP_HOST")):
            # DNS rebinding: a web page the operator visits can point its own name at 127.0.0.1, but
            # its requests still say `Host: <that name>`. Only loopback names may read a token-less page.
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [
                b"403: without a token only a loopback Host (localhost, 127.0.0.1, [::1]) is served\n"
            ]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response(
                "405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")]
            )
            return [b"405: read-only\n"]
        if token and not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Bearer realm="guanjia-metrics"'),
                    ("Content-Type", "text/plain"),
                ],
            )
            return [b"401: send 'Authorization: Bearer <token>'\n"]

        def with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, headers + [("X-Content-Type-Options", "nosniff")], *exc)

        return app(environ, with_headers)

    return guarded


@dataclass
class MetricsServer:
    """A running metrics endpoint (a daemon thread); ``close()`` stops it."""

    server: WSGIServer
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    registry: CollectorRegistry,
    host: str = "127.0.0.1",
    port: int = 9108,
    token: str | None = None,
    *,
    request_timeout: float = REQUEST_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> MetricsServer:
    """Serve ``/metrics`` from a background thread (port 0 picks a free one).

    A non-loopback ``host`` needs a ``token`` (scrapers send ``Authorization: Bearer``); without one this
    raises :class:`~pipeline.web.access.UnsafeBindError` before anything is bound. Without a token only
    requests whose ``Host`` is a loopback name or address are answered (403 otherwise: DNS rebinding).

    A client has ``request_timeout`` seconds to send its request; at most ``max_connections`` are
    served at once and further ones are closed on accept, so idle or slow peers cannot pile up
    threads and descriptors in the worker.
    """
    check_bind(host, token, what="the metrics endpoint", env="GUANJIA_METRICS_TOKEN")
    if request_timeout <= 0 or max_connections < 1:
        raise ValueError("request_timeout must be > 0 and max_connections >= 1")
    base = _ThreadingServer6 if ":" in host else _ThreadingServer
    server_class = type(
        base.__name__,
        (base,),
        {"request_timeout": float(request_timeout), "max_connections": int(max_connections)},
    )
    try:
        server = make_server(
            host,
            port,
            _guarded(make_wsgi_app(registry), token),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, name="guanjia-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread, host, server.server_port)


def aiohttp_metrics_handler(registry: CollectorRegistry) -> Callable[..., Any]:
    """An aiohttp GET handler serving ``registry`` (to mount ``/metrics`` on an existing app)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return metrics
