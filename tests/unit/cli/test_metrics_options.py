"""The /metrics options both workers share, their start-up, and the events worker's wiring of them."""

from __future__ import annotations

import gc
import re
import socket
import urllib.error
import urllib.request
from typing import ClassVar

import click
import pytest
from click.testing import CliRunner

from pipeline.cli.metrics_options import metrics_options, start_metrics
from pipeline.cli.worker_cmd import events_metrics, events_worker
from pipeline.cli.worker_ingest import ingest
from pipeline.metrics import Metrics

TOKEN = "metrics-token-77ab"


def metrics_params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name in ("metrics_port", "metrics_host", "no_metrics")}


def get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@click.command()
@metrics_options(default_port=9999)
def probe(metrics_port: int, metrics_host: str, no_metrics: bool) -> None:
    click.echo(f"{metrics_host}:{metrics_port} off={no_metrics}")


def test_options_parse_with_their_defaults_and_reject_a_bad_port():
    runner = CliRunner()
    assert runner.invoke(probe, []).output == "127.0.0.1:9999 off=False\n"
    assert runner.invoke(probe, ["--metrics-port", "0", "--metrics-host", "::1", "--no-metrics"]).output == "::1:0 off=True\n"
    result = runner.invoke(probe, ["--metrics-port", "70000"])
    assert result.exit_code == 2 and "--metrics-port" in result.output
    assert [line.split()[0] for line in runner.invoke(probe, ["--help"]).output.splitlines()
            if line.strip().startswith("--")] == ["--metrics-port", "--metrics-host", "--no-metrics", "--help"]


def test_both_workers_share_the_options_and_differ_only_in_the_default_port():
    ingest_opts, events_opts = metrics_params(ingest), metrics_params(events_worker)
    assert set(ingest_opts) == set(events_opts) == {"metrics_port", "metrics_host", "no_metrics"}
    assert (ingest_opts["metrics_port"].default, events_opts["metrics_port"].default) == (9108, 9109)
    for name in ingest_opts:
        assert ingest_opts[name].help == events_opts[name].help
        if name != "metrics_port":
            assert ingest_opts[name].default == events_opts[name].default


def test_start_metrics_serves_loopback_without_a_token(monkeypatch):
    monkeypatch.delenv("GUANJIA_METRICS_TOKEN", raising=False)
    server = start_metrics(Metrics(process=False).registry, "127.0.0.1", 0)
    try:
        assert server.port and get(server.url) == 200
    finally:
        server.close()


def test_start_metrics_reads_the_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("GUANJIA_METRICS_TOKEN", TOKEN)
    server = start_metrics(Metrics(process=False).registry, "127.0.0.1", 0)
    try:
        assert get(server.url) == 401 and get(server.url, TOKEN) == 200
    finally:
        server.close()


def test_start_metrics_refuses_a_network_bind_without_a_token_in_one_line(monkeypatch):
    monkeypatch.delenv("GUANJIA_METRICS_TOKEN", raising=False)
    with pytest.raises(click.ClickException, match="GUANJIA_METRICS_TOKEN"):
        start_metrics(Metrics(process=False).registry, "0.0.0.0", 0)


def test_start_metrics_says_which_port_is_taken(monkeypatch):
    monkeypatch.delenv("GUANJIA_METRICS_TOKEN", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(click.ClickException, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics(Metrics(process=False).registry, "127.0.0.1", port)


def test_events_metrics_leave_out_what_the_events_worker_never_produces():
    page = events_metrics().render().decode()
    assert "guanjia_detections_produced" not in page
    assert "# TYPE guanjia_events_opened_total counter" in page and "process_cpu_seconds_total" in page


@pytest.fixture
def fake_events_host(monkeypatch):
    """`guanjia worker events` with the Faust app, Kafka and the process-wide gc settings stubbed out.

    Returns what it saw: the ``metrics`` handed to ``create_app`` and the status of a GET on
    /metrics while the Faust worker would run.
    """
    import faust

    import pipeline.faust_app
    import pipeline.topics

    seen: dict = {}

    class App:
        tables: ClassVar[dict] = {}

    def fake_create_app(settings, engine, **kw):
        seen["metrics"], seen["engine"] = kw["metrics"], engine
        return App()

    async def no_topics(settings, **kw):
        return None

    class FakeWorker:
        def __init__(self, app, **kw):
            pass

        def execute_from_commandline(self):
            url = seen.get("url")
            seen["status"] = get(url) if url else None

    monkeypatch.setattr(pipeline.faust_app, "create_app", fake_create_app)
    monkeypatch.setattr(pipeline.topics, "ensure_topics", no_topics)
    monkeypatch.setattr(faust, "Worker", FakeWorker)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    monkeypatch.setattr(gc, "set_threshold", lambda *a: None)
    monkeypatch.delenv("GUANJIA_METRICS_TOKEN", raising=False)
    return seen


def test_events_worker_serves_metrics_while_faust_runs_and_closes_them_after(fake_events_host):
    port = free_port()
    fake_events_host["url"] = f"http://127.0.0.1:{port}/metrics"
    result = CliRunner().invoke(events_worker, ["--loop", "aio", "--metrics-port", str(port)])
    assert result.exit_code == 0, result.output
    assert isinstance(fake_events_host["metrics"], Metrics)
    assert re.search(rf"metrics http://127\.0\.0\.1:{port}/metrics", result.output), result.output
    assert fake_events_host["status"] == 200
    with pytest.raises(urllib.error.URLError):  # closed with the worker
        urllib.request.urlopen(fake_events_host["url"], timeout=2)


def test_events_worker_no_metrics_hands_the_app_none_and_serves_nothing(fake_events_host):
    result = CliRunner().invoke(events_worker, ["--loop", "aio", "--no-metrics"])
    assert result.exit_code == 0, result.output
    assert fake_events_host["metrics"] is None and "metrics http" not in result.output


def test_events_worker_refuses_a_network_bind_without_a_token(fake_events_host):
    result = CliRunner().invoke(events_worker, ["--loop", "aio", "--metrics-host", "0.0.0.0"])
    assert result.exit_code == 1 and "GUANJIA_METRICS_TOKEN" in result.output and "Traceback" not in result.output


def test_events_worker_loads_camera_configs_without_their_passwords(fake_events_host, tmp_path, monkeypatch):
    monkeypatch.delenv("CAM_PW_NOT_HERE", raising=False)
    config = tmp_path / "city.yaml"
    config.write_text('groups:\n  - id: g\n    cameras:\n      - {id: c1, url: "rtsp://u:${CAM_PW_NOT_HERE}@h/s", grid: G1}\n')
    result = CliRunner().invoke(events_worker, ["--loop", "aio", "--no-metrics", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert list(fake_events_host["engine"].cameras) == ["c1"]  # the rules know the camera; its password was never needed
