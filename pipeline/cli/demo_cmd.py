"""``guanjia demo``: the whole pipeline in one process on the sample footage (no Kafka, no Redis)."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import click

from pipeline.settings import REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
HEALTH_EVERY_S = 1.0
SEVERITY_ORDER = ("low", "medium", "high", "critical")


def missing_footage(cameras) -> list[str]:
    """One line per enabled file camera whose file is absent."""
    from ingest.urls import file_path, url_scheme

    lines = []
    for cam in cameras:
        if cam.enabled and url_scheme(cam.url) == "file" and not file_path(cam.url).is_file():
            lines.append(f"  camera {cam.id}: {file_path(cam.url)}")
    return lines


def _footage_error(lines: list[str]) -> click.ClickException:
    from pipeline.settings import get_settings

    shared = get_settings().shared_dir
    return click.ClickException(
        "sample footage is missing:\n" + "\n".join(lines) + "\n"
        f"Put the shared data folder at {shared}/data (see docs/demo.md for where each clip comes from: "
        "vtest.avi from Debian's opencv-doc examples, fire/furg/house6.mp4 from the FURG fire dataset, "
        "crowd/mall_train/mall_train_2fps.mp4 from the Mall dataset) or set GUANJIA_SHARED_DIR to a folder holding data/."
    )


class DemoView:
    """What the live display and the summary show: per-camera progress and every event's last revision."""

    def __init__(self, cameras):
        self.cameras = {c.id: c for c in cameras}
        self.rows: dict[str, dict] = {c.id: {"frames": 0, "people": None, "fire": None, "state": "connecting"}
                                      for c in cameras}
        self.events: dict[str, dict] = {}
        self.revisions = 0

    def detection(self, det) -> None:
        row = self.rows[det.camera_id]
        row["frames"] += 1
        if det.zones:
            row["people"] = det.zones[0].count
        if det.fire is not None:
            row["fire"] = det.fire.score

    def event(self, ev: dict) -> None:
        self.revisions += 1
        self.events[ev["event_id"]] = ev

    def open_rules(self, camera_id: str) -> list[str]:
        return sorted({e["rule"] for e in self.events.values() if e.get("camera_id") == camera_id and e["status"] == "open"})

    def progress(self):
        from rich.table import Table

        table = Table(title="guanjia demo: analysing the sample footage", title_justify="left")
        for col in ("camera", "town", "frames analysed", "people", "P(fire)", "state", "open events"):
            table.add_column(col, justify="right" if col in ("frames analysed", "people", "P(fire)") else "left")
        for cid, row in self.rows.items():
            cam = self.cameras[cid]
            opened = self.open_rules(cid)
            table.add_row(
                cid, cam.town or "-", str(row["frames"]),
                "-" if row["people"] is None else f"{row['people']:.0f}",
                "-" if row["fire"] is None else f"{row['fire']:.2f}",
                row["state"], ", ".join(opened) or "-",
                style="bold red" if "fire" in opened else ("yellow" if opened else None),
            )
        return table

    def summary(self):
        from rich.table import Table

        groups: dict[tuple, list[dict]] = {}
        for ev in self.events.values():
            groups.setdefault((ev["rule"], ev.get("town") or "-", ev.get("grid_id") or "-"), []).append(ev)
        table = Table(title="events by type, town and grid cell", title_justify="left")
        for col in ("type", "town", "grid cell", "events", "open", "closed", "top severity", "peak"):
            table.add_column(col, justify="right" if col in ("events", "open", "closed", "peak") else "left")
        for (rule, town, grid), evs in sorted(groups.items()):
            status = Counter(e["status"] for e in evs)
            top = max((e["severity"] for e in evs), key=SEVERITY_ORDER.index)
            peak = max(e["peak"] for e in evs)
            table.add_row(rule, town, grid, str(len(evs)), str(status["open"]), str(status["closed"]), top,
                          f"{peak:.2f}" if rule == "fire" else f"{peak:.1f}")
        return table


def _console(stderr: bool = False):
    """A rich console; 120 columns when the output is not a terminal (logs, CI) so tables are not cut."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = 120
    return console


def _start_page(cameras, port: int):
    """The risk map on 127.0.0.1 in a background asyncio loop; returns (state, url, stop)."""
    import asyncio

    from pipeline.web import LiveState, start_page

    state = LiveState()
    state.set_cameras(c.model_dump(mode="json") for c in cameras)
    loop = asyncio.new_event_loop()
    started: dict = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["page"] = loop.run_until_complete(start_page(state, host="127.0.0.1", port=port))
        except Exception as exc:  # noqa: BLE001 - reported as one line by the caller
            started["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(started["page"].close())

    thread = threading.Thread(target=serve, name="guanjia-demo-page", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in started:
        raise click.ClickException(f"cannot serve the risk map on 127.0.0.1:{port}: {started['error']}")

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return state, started["page"].url, stop


@click.command("demo")
@click.option("--config", "configs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help=f"Camera-group file(s) (default {DEMO_CONFIG.relative_to(REPO_ROOT)}).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for events.jsonl and evidence/ (default GUANJIA_OUT_DIR or out/).")
@click.option("--catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Event catalog and routing (default configs/catalog.yaml).")
@click.option("--page/--no-page", default=False, show_default=True, help="Serve the live risk map while it runs (and after, until Ctrl-C).")
@click.option("--page-port", default=8088, show_default=True, help="Port of the risk map on 127.0.0.1.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop analysing after this many seconds (default: when every file has ended).")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder searched first for model files (GUANJIA_MODELS_DIR).")
def demo(configs: tuple[Path, ...], out_dir: Path | None, catalog: Path | None, page: bool, page_port: int,
         max_seconds: float | None, models_dir: Path | None) -> None:
    """Run the embedded pipeline (no Kafka, no Redis) on the sample footage: crowding on a street,
    a house fire, a dense mall view. Writes OUT/events.jsonl (every event revision) and annotated
    evidence JPEGs in OUT/evidence/, then prints events by type, town and grid cell.

    \b
    Example:
      guanjia demo                          # configs/demo.yaml → out/
      guanjia demo --page --out /tmp/demo   # and watch the risk map at http://127.0.0.1:8088/
    """
    from rich.live import Live

    from detectors.plugins import PluginError
    from detectors.registry import ModelError
    from pipeline.catalog import DEFAULT_CATALOG, load_catalog
    from pipeline.config import ConfigError, load_config
    from pipeline.embedded import EmbeddedRunner
    from pipeline.evidence import FolderStore
    from pipeline.perception import Perception
    from pipeline.settings import get_settings

    paths = list(configs) or [DEMO_CONFIG]
    for path in paths:
        if not path.is_file():
            raise click.ClickException(f"{path}: no such config file")
    try:
        city = load_config(paths)
        index = load_catalog(catalog or DEFAULT_CATALOG)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    cameras = [c for c in city.cameras if c.enabled]
    missing = missing_footage(cameras)
    if missing:
        raise _footage_error(missing)
    try:
        perception = Perception(cameras, models_dir=models_dir, backpressure=True)
    except (ModelError, PluginError, ValueError) as exc:
        raise click.ClickException(f"{exc} (see `guanjia models list`)") from None

    out = out_dir or get_settings().out_dir
    (out / "evidence").mkdir(parents=True, exist_ok=True)
    runner = EmbeddedRunner(cameras, index, defaults=city.rules, evidence=FolderStore(out))  # defaults.rules: sensor and fusion rules
    view = DemoView(cameras)
    console = _console(stderr=True)
    live_state = page_url = stop_page = None
    if page:
        live_state, page_url, stop_page = _start_page(cameras, page_port)
        console.print(f"risk map: {page_url}")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    events_file = (out / "events.jsonl").open("w", encoding="utf-8")

    def publish(events) -> None:
        for ev in events:
            events_file.write(ev.model_dump_json(by_alias=True) + "\n")
            data = ev.model_dump(mode="json", by_alias=True)
            view.event(data)
            if live_state is not None:
                live_state.apply_event(data)

    def on_detection(det, frame) -> None:
        view.detection(det)
        if live_state is not None:
            live_state.apply_detection(det.model_dump(mode="json", by_alias=True))
        publish(runner.feed(det, frame.image))

    def report_health() -> None:
        for record in perception.health_records():
            view.rows[record.camera_id]["state"] = record.state if record.reason != "end of file" else "ended"
            publish(runner.feed(record))
            if live_state is not None:
                live_state.apply_health(record.model_dump(mode="json", by_alias=True))
        publish(runner.tick(time.time()))

    started, run_started = time.monotonic(), time.time() - 1.0
    interrupted = cut = False
    try:
        with perception, Live(view.progress(), console=console, refresh_per_second=4, transient=False) as live:
            next_health = 0.0
            while not stop.is_set():
                perception.step(on_detection, timeout=0.2)
                finished = perception.done()
                if time.monotonic() >= next_health or finished:
                    report_health()
                    next_health = time.monotonic() + HEALTH_EVERY_S
                live.update(view.progress())
                if finished:
                    break
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    cut = True
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        events_file.close()
    elapsed = time.monotonic() - started
    terminated = stop.is_set()  # SIGTERM while analysing (not while only serving the page afterwards)

    snapshots = sum(1 for f in (out / "evidence").rglob("*.jpg") if f.stat().st_mtime >= run_started)  # this run's
    result = _console()
    result.print(view.summary())
    result.print(f"{len(view.events)} events ({view.revisions} revisions) in {out / 'events.jsonl'}; "
                 f"{snapshots} evidence JPEGs in {out / 'evidence'}; "
                 f"{perception.analysed} frames analysed in {elapsed:.1f} s"
                 + (f" (stopped at --max-seconds {max_seconds:g})" if cut else
                    " (interrupted)" if interrupted or stop.is_set() else " (every sampled frame of every file)"))
    if stop_page is not None:
        if not interrupted and not stop.is_set():
            console.print(f"risk map still served at {page_url} — Ctrl-C to stop")
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
        stop_page()
    if interrupted:
        raise SystemExit(130)  # 128 + SIGINT, as the shell reports a process ended by Ctrl-C
    if terminated:
        raise SystemExit(143)  # 128 + SIGTERM: the run was cut short, a supervisor must not read it as done
