"""Prometheus metrics: the names a worker serves, over real HTTP, and who may read them."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.metrics import Metrics, camera_label, serve_metrics
from pipeline.web import UnsafeBindError

SECRET = "S3cretMarker-91c4"
TOKEN = "metrics-token-5e2d"

PUSH_NAMES = [
    'guanjia_frames_decoded_total{camera="cam-1"} 25.0',
    'guanjia_frames_analysed_total{camera="cam-1"} 5.0',
    'guanjia_frames_dropped_total{camera="cam-1"} 2.0',
    'guanjia_reconnects_total{camera="cam-1"} 1.0',
    'guanjia_camera_up{camera="cam-1"} 1.0',
    'guanjia_inference_latency_seconds_bucket{le="0.025",model="yolox_nano_coco_416"} 1.0',
    'guanjia_inference_latency_seconds_count{model="yolox_nano_coco_416"} 2.0',
    'guanjia_inference_batch_size_bucket{le="8.0",model="yolox_nano_coco_416"} 1.0',
    'guanjia_inference_batch_size_sum{model="yolox_nano_coco_416"} 40.0',
    'guanjia_events_opened_total{type="crowding"} 1.0',
    'guanjia_events_closed_total{type="fire"} 1.0',
    'guanjia_consumer_lag_messages{partition="3",topic="guanjia.detections.v1"} 42.0',
    "guanjia_detections_produced_total 5.0",
    "process_cpu_seconds_total",
]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def fill(metrics: Metrics) -> None:
    metrics.frames_decoded.labels("cam-1").inc(25)
    metrics.frames_analysed.labels("cam-1").inc(5)
    metrics.frames_dropped.labels("cam-1").inc(2)
    metrics.reconnects.labels("cam-1").inc()
    metrics.camera_up.labels("cam-1").set(1)
    metrics.inference_latency.labels("yolox_nano_coco_416").observe(0.02)
    metrics.inference_latency.labels("yolox_nano_coco_416").observe(0.3)
    metrics.batch_size.labels("yolox_nano_coco_416").observe(8)
    metrics.batch_size.labels("yolox_nano_coco_416").observe(32)
    metrics.observe_event({"rule": "crowding", "action": "opened"})
    metrics.observe_event({"rule": "crowding", "action": "updated"})
    metrics.observe_event({"rule": "fire", "action": "closed"})
    metrics.set_consumer_lag({("guanjia.detections.v1", 3): 42})
    metrics.detections_produced.inc(5)


def test_endpoint_serves_the_documented_names_over_http() -> None:
    metrics = Metrics()
    fill(metrics)
    server = serve_metrics(metrics.registry, port=0)
    try:
        status, body = get(server.url)
        assert status == 200
        for line in PUSH_NAMES:
            assert line in body, line
        assert (
            get(server.url.replace("/metrics", "/"))[0] == 200
        )  # prometheus_client serves any path
        request = urllib.request.Request(server.url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 405
    finally:
        server.close()


def test_scrape_time_camera_stats_cost_nothing_between_scrapes() -> None:
    calls = []

    def stats() -> list[dict]:
        calls.append(1)
        return [
            {
                "camera_id": "c1",
                "frames_decoded": 100,
                "frames_analysed": 50,
                "frames_dropped": 3,
                "reconnects": 2,
                "state": "streaming",
                "last_frame_time": 1_800_000_000.5,
            },
            {
                "camera_id": "c2",
                "decoded": 7,
                "analysed": 1,
                "dropped": 0,
                "reconnects": 9,
                "state": "backoff",
            },
            {"camera_id": f"rtsp://admin:{SECRET}@10.0.0.9/live", "frames_decoded": 1},
            {"no_camera": True},
        ]

    metrics = Metrics(camera_stats=stats, process=False)
    metrics.detections_produced.inc()
    assert calls == []  # nothing is read until a scrape
    server = serve_metrics(metrics.registry, port=0)
    try:
        status, body = get(server.url)
    finally:
        server.close()
    assert status == 200 and len(calls) == 1
    for line in (
        'guanjia_frames_decoded_total{camera="c1"} 100.0',
        'guanjia_frames_analysed_total{camera="c1"} 50.0',
        'guanjia_frames_dropped_total{camera="c1"} 3.0',
        'guanjia_reconnects_total{camera="c2"} 9.0',
        'guanjia_frames_decoded_total{camera="c2"} 7.0',
        'guanjia_camera_up{camera="c1"} 1.0',
        'guanjia_camera_up{camera="c2"} 0.0',
        'guanjia_camera_last_frame_timestamp_seconds{camera="c1"} 1.8000000005e+09',
    ):
        assert line in body, line
    assert SECRET not in body and "rtsp" not in body and "admin" not in body
    assert 'camera="invalid-' in body
    with pytest.raises(RuntimeError, match="camera_stats"):
        metrics.frames_decoded.labels("c1")


def ingest_health(camera_id: str, state, **more):
    """An ingest CameraHealth snapshot with every counter set."""
    from ingest.health import CameraHealth

    return CameraHealth(camera_id=camera_id, state=state, url="rtsp://***@10.0.0.1/x", decode_mode="keyframes",
                        frames_in=300, frames_decoded=40, frames_analysed=12, dropped=1, reconnects=4, decode_errors=2,
                        last_frame_time=1_800_000_000.0, **more)


def test_ingest_health_dataclasses_are_read_directly() -> None:
    from ingest.health import CameraState

    health = ingest_health("cam-7", CameraState.backoff)
    body = Metrics(camera_stats=lambda: [health], process=False).render().decode()
    for line in (
        'guanjia_frames_received_total{camera="cam-7"} 300.0',
        'guanjia_frames_decoded_total{camera="cam-7"} 40.0',
        'guanjia_frames_analysed_total{camera="cam-7"} 12.0',
        'guanjia_frames_dropped_total{camera="cam-7"} 1.0',
        'guanjia_reconnects_total{camera="cam-7"} 4.0',
        'guanjia_decode_errors_total{camera="cam-7"} 2.0',
        'guanjia_camera_up{camera="cam-7"} 0.0',
    ):
        assert line in body, line
    assert "10.0.0.1" not in body


def test_a_failing_stats_source_does_not_break_the_scrape() -> None:
    def broken() -> list[dict]:
        raise ConnectionError("redis down")

    metrics = Metrics(camera_stats=broken, process=False)
    metrics.detections_produced.inc()
    assert b"guanjia_detections_produced_total 1.0" in metrics.render()


def test_push_labels_never_carry_urls_or_credentials() -> None:
    metrics = Metrics(process=False)
    metrics.frames_analysed.labels(f"rtsp://admin:{SECRET}@10.0.0.9/live").inc()
    metrics.frames_analysed.labels("cam-2").inc()
    body = metrics.render().decode()
    assert SECRET not in body and "10.0.0.9" not in body
    assert 'guanjia_frames_analysed_total{camera="cam-2"} 1.0' in body


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("cam-1", True),
        ("dg.humen:0042_a", True),
        ("rtsp://u:p@h/x", False),
        ("/dev/video0", False),
        ("a b", False),
        ("x" * 200, False),
    ],
)
def test_camera_label(raw: str, safe: bool) -> None:
    assert (camera_label(raw) == raw) is safe
    assert camera_label(raw) == camera_label(raw)


def test_token_protects_the_endpoint() -> None:
    metrics = Metrics(process=False)
    fill(metrics)
    server = serve_metrics(metrics.registry, host="127.0.0.1", port=0, token=TOKEN)
    try:
        status, body = get(server.url)
        assert status == 401 and "guanjia_" not in body
        assert get(server.url, token="wrong")[0] == 401
        status, body = get(server.url, token=TOKEN)
        assert status == 200 and "guanjia_frames_analysed_total" in body
    finally:
        server.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.20.30.40"])
def test_refuses_non_loopback_bind_without_a_token(host: str) -> None:
    with pytest.raises(UnsafeBindError, match="GUANJIA_METRICS_TOKEN"):
        serve_metrics(Metrics(process=False).registry, host=host, port=0)


def test_all_interfaces_with_a_token() -> None:
    metrics = Metrics(process=False)
    server = serve_metrics(metrics.registry, host="0.0.0.0", port=0, token=TOKEN)
    try:
        assert get(f"http://127.0.0.1:{server.port}/metrics", token=TOKEN)[0] == 200
    finally:
        server.close()


def test_each_worker_has_its_own_registry() -> None:
    first, second = Metrics(process=False), Metrics(process=False)
    first.detections_produced.inc(3)
    assert b"guanjia_detections_produced_total 3.0" in first.render()
    assert b"guanjia_detections_produced_total 0.0" in second.render()


def test_bench_page_reports_its_figures() -> None:
    from click.testing import CliRunner

    from pipeline.web.bench import bench_page

    result = CliRunner().invoke(
        bench_page, ["--cameras", "20", "--events", "10", "--repeat", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["cameras"] == 20 and figures["snapshot_kb"] > 0
    assert figures["scrape_ratio_scrape_time_vs_push"] > 0
    bad = CliRunner().invoke(bench_page, ["--cameras", "0"])
    assert bad.exit_code != 0 and "--cameras" in bad.output


def test_removed_cameras_leave_the_page() -> None:
    metrics = Metrics(process=False)
    metrics.frames_analysed.labels("cam-gone").inc()
    metrics.frames_analysed.remove("cam-gone")
    assert b'camera="cam-gone"' not in metrics.render()
    metrics.frames_analysed.labels("cam-gone").inc(2)
    assert b'guanjia_frames_analysed_total{camera="cam-gone"} 2.0' in metrics.render()


def raw_get(port: int, host_header: str, token: str | None = None) -> int:
    """GET /metrics with this exact Host header (what a DNS-rebinding page's request says)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Host": host_header}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", "/metrics", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


LOOPBACK_HOSTS = [
    "localhost",
    "LocalHost:9108",
    "127.0.0.1",
    "127.0.0.1:9108",
    "127.3.4.5:80",
    "[::1]",
    "[::1]:9108",
]
FOREIGN_HOSTS = [
    "attacker.example",
    "attacker.example:9108",
    "localhost.attacker.example",
    "127.0.0.1.nip.io",
    "10.0.0.1:9108",
    "0.0.0.0",
    "[::1].attacker.example",
    "[2001:db8::1]:9108",
    "localhost:x",
    "localhost,attacker.example",
    "",
]


def test_without_a_token_only_a_loopback_host_header_is_answered() -> None:
    metrics = Metrics(process=False)
    fill(metrics)
    server = serve_metrics(metrics.registry, port=0)
    try:
        for host in LOOPBACK_HOSTS:
            assert raw_get(server.port, host) == 200, host
        for host in FOREIGN_HOSTS:
            assert raw_get(server.port, host) == 403, host
    finally:
        server.close()


def test_with_a_token_the_host_header_is_not_checked() -> None:
    metrics = Metrics(process=False)
    server = serve_metrics(metrics.registry, port=0, token=TOKEN)
    try:
        assert raw_get(server.port, "attacker.example", token=TOKEN) == 200
        assert raw_get(server.port, "attacker.example") == 401
    finally:
        server.close()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True once the server has closed its end (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_idle_connections_cannot_pile_up_threads_and_are_dropped_after_the_timeout() -> None:
    metrics = Metrics(process=False)
    server = serve_metrics(metrics.registry, port=0, request_timeout=2.0, max_connections=4)
    before = threading.active_count()
    socks = []
    try:
        for _ in range(40):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            time.sleep(0.005)  # let the server thread accept (its listen backlog is short)
        time.sleep(0.1)
        assert threading.active_count() - before <= 4
        # beyond the cap: closed at once; within it: closed once the timeout has passed
        early = [sock for sock in socks if closed_by_peer(sock, 0.05)]
        assert len(early) >= 40 - 4
        assert all(closed_by_peer(sock, 5) for sock in socks if sock not in early)
        assert wait_for(lambda: threading.active_count() <= before, 3)
        assert get(server.url)[0] == 200  # the slots are free again
    finally:
        for sock in socks:
            sock.close()
        server.close()


def test_a_request_that_trickles_in_is_dropped_at_the_deadline() -> None:
    metrics = Metrics(process=False)
    server = serve_metrics(metrics.registry, port=0, request_timeout=0.6)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        started = time.monotonic()
        dropped = False
        for byte in b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            if closed_by_peer(sock, 0.1):  # one byte every 0.1 s: each read is well within 0.6 s
                dropped = True
                break
        assert dropped and time.monotonic() - started < 2
    finally:
        sock.close()
        server.close()


def test_the_default_server_has_a_timeout_and_a_cap() -> None:
    server = serve_metrics(Metrics(process=False).registry, port=0)
    try:
        assert 0 < server.server.request_timeout <= 30
        assert 1 <= server.server.max_connections <= 64
    finally:
        server.close()


DOCS = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def documented_names() -> dict[str, set[str]]:
    """docs/metrics.md's Names table: metric → the workers it says serve it."""
    lines = DOCS.read_text().split("## Names", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in lines
        if line.startswith("|")
    ]
    header, body = rows[0], rows[2:]
    assert "Served by" in header, "the Names table must say which process serves each metric"
    served_by = header.index("Served by")
    return {
        name.strip("`"): {who.strip() for who in row[served_by].split(",")}
        for row in body
        for name in row[0].split(", ")
    }


def assert_documented_as_served_by(worker: str, metrics: Metrics) -> None:
    """Exactly the names whose Served by cell lists ``worker`` have samples on ``metrics``' page."""
    sampled = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.render().decode().splitlines()
        if line and not line.startswith("#")
    }

    def exported(name: str) -> bool:
        stem = name.removesuffix("*").removesuffix("_total")
        return any(sample.startswith(stem) for sample in sampled)

    documented = documented_names()
    assert set().union(*documented.values()) == {"ingest", "events"}
    for name, served_by in documented.items():
        assert exported(name) == (worker in served_by), (worker, name, served_by)
    for sample in sampled:
        if sample.startswith("guanjia_"):
            assert any(sample.startswith(name.removesuffix("_total")) for name in documented), (
                sample
            )


def test_docs_say_which_metrics_the_ingest_worker_really_exports() -> None:
    from ingest.health import CameraState

    # What `guanjia worker ingest` builds: camera families from the pool's CameraHealth (every field
    # set), plus what Perception pushes per batch.
    health = ingest_health("cam-1", CameraState.streaming, input_fps=25.0, analysed_fps=1.0, keyframe_interval_s=2.0)
    metrics = Metrics(camera_stats=lambda: [health])
    metrics.inference_latency.labels("yolox_nano_coco_416").observe(0.02)
    metrics.batch_size.labels("yolox_nano_coco_416").observe(8)
    metrics.detections_produced.inc()
    assert_documented_as_served_by("ingest", metrics)


def test_docs_say_which_metrics_the_events_worker_really_exports() -> None:
    from pipeline.cli.worker_cmd import events_metrics

    # What `guanjia worker events` builds, after the Faust app published revisions and read its lag.
    metrics = events_metrics()
    for action in ("opened", "updated", "acknowledged", "escalated", "closed"):
        metrics.observe_event({"rule": "crowding", "action": action})
    metrics.set_consumer_lag({("guanjia.detections.v1", 0): 0, ("guanjia.event-changes.v1", 1): 3})
    assert_documented_as_served_by("events", metrics)

