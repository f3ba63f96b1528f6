"""``guanjia bench events``: detections/s through one Faust worker process vs raw aiokafka loops.

Three measurements on the same broker, each on its own fresh topics:

* ``faust``: a backlog of detections, then one ``guanjia worker events`` process; throughput is
  the detections after the worker's first batch / (last event's produce time − first event's); the
  backlog's last detection of every camera makes an event, so the last event marks its end.
  Latency p50/p99 is measured in a second phase at a fixed rate below capacity (event produce
  time − detection produce time).
* ``raw_passthrough``: aiokafka getmany → send every message to another topic (the Kafka ceiling).
* ``raw_engine``: the same consume → produce loop doing the worker's work (decode, rule engine,
  events out) without Faust.

``--isolate`` runs the timed process (the worker, then the raw loops) on a core of its own, with a
local broker and the bench's producer and collector on the other cores (:class:`CorePlan`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click
import psutil
import yaml

from detectors.records import Box, Detection, FireResult, ZoneCount
from pipeline.faust_app import DEFAULT_BATCH
from pipeline.security import kafka_client_options
from pipeline.settings import Settings, get_settings

BACKLOG_LEAD_S = 60  # the backlog's last detection lies this far before the bench starts
PATTERN = [8] + [1] * 9  # per camera: opened at 8, closed at the next 1 → 2 events per 10 detections
THRESHOLD = 5  # the crowding threshold write_config sets: a count at or above it opens an event


def backlog_count(step: int, steps: int) -> int:
    """People in a camera's frame ``step`` of ``steps``: PATTERN, but the last frame always makes an event.

    The Faust rate is timed from the first event to the last, so the last event must come from the
    last detections; with PATTERN alone it came from step 11 of 20 and the rate was overstated ~1.7x.
    """
    if step == steps - 1:
        return 1 if step and PATTERN[(step - 1) % len(PATTERN)] >= THRESHOLD else 8  # close if open, else open
    return PATTERN[step % len(PATTERN)]


def make_detection(cam: int, step: int, t: float, count: int | None = None) -> Detection:
    boxes = [Box(x1=10 + 20 * b, y1=40, x2=25 + 20 * b, y2=90, score=0.8) for b in range(4)]
    count = PATTERN[step % len(PATTERN)] if count is None else count
    return Detection(camera_id=f"b{cam:05d}", seq=step, capture_time=t, frame_width=1920, frame_height=1080,
                     crowd_estimator="boxes", zones=[ZoneCount(zone="*", count=count)],
                     boxes=boxes, fire=FireResult(score=0.02), models={"crowd": "yolox_nano@0123456789ab"}, latency_ms=12.5)


def backlog(cameras: int, steps: int, t0: float) -> list[Detection]:
    """``steps`` frames per camera, one second apart from ``t0``, in frame order (all cameras' step 0 first)."""
    return [make_detection(c, s, t0 + s, backlog_count(s, steps)) for s in range(steps) for c in range(cameras)]


def write_config(path: Path, cameras: int) -> Path:
    cams = [{"id": f"b{i:05d}", "url": "rtsp://127.0.0.1:1/b", "grid": f"BG{i % 2927:04d}"} for i in range(cameras)]
    doc = {"defaults": {"rules": {"crowding": {"threshold": THRESHOLD, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0}}},
           "groups": [{"id": "bench", "town": "BT", "village": "BV", "cameras": cams}]}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def _produce(settings: Settings, topic: str, dets: list[Detection], rate: float | None = None) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    start = time.perf_counter()
    try:
        for i, det in enumerate(dets):
            if rate:
                wait = start + i / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                det = det.model_copy(update={"capture_time": time.time()})
            await producer.send(topic, det.to_json(), key=det.camera_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - start


async def _collect(settings: Settings, topic: str, expected: int, timeout_s: float, on_first=None,
                   escalations: list[dict] | None = None) -> list[tuple[float, dict]]:
    """(Kafka timestamp in s, event) for the first ``expected`` events of ``topic`` that detections made.

    Escalations come from the worker's deadline timer, not from detections: they are left out of
    the count (and appended to ``escalations`` when given).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[float, dict]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                if on_first is not None and not out and msgs:
                    on_first()
                for m in msgs:
                    event = json.loads(m.value)
                    if event.get("action") == "escalated":
                        if escalations is not None:
                            escalations.append(event)
                    else:
                        out.append((m.timestamp / 1000.0, event))
        return out
    finally:
        await consumer.stop()


def _runner(config: Path):
    from pipeline.catalog import load_catalog
    from pipeline.config import load_config
    from pipeline.embedded import EmbeddedRunner

    city = load_config([config])
    return EmbeddedRunner(city.cameras, load_catalog(), defaults=city.rules)


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _raw_loop(settings: Settings, src: str, dst: str, total: int, engine=None) -> tuple[float, float]:
    """Consume ``total`` messages, produce to ``dst`` (every message, or the engine's events): (detections/s, per CPU-s)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from pipeline.codec import DecodeError, decode_detection

    consumer = AIOKafkaConsumer(src, **kafka_client_options(settings), group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000)
    producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=2, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    states: dict[str, dict] = {}
    desk: dict[str, dict] = {}
    seen, start, cpu0 = 0, None, 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500)
            if start is None and batches:
                start, cpu0 = time.perf_counter(), time.process_time()
            futures = []
            for msgs in batches.values():
                seen += len(msgs)
                for msg in msgs:
                    if engine is None:
                        futures.append(await producer.send(dst, msg.value, key=msg.key))
                        continue
                    try:
                        det = decode_detection(msg.value)
                    except DecodeError:
                        continue
                    state, drafts, _ = engine.on_detection(states.get(det.camera_id, {}), det)
                    states[det.camera_id] = state
                    for draft in drafts:
                        dstate, events = engine.on_draft(desk.get(draft.event_id, {}), draft)
                        desk[draft.event_id] = dstate
                        for ev in events:
                            futures.append(await producer.send(dst, ev.to_json(), key=ev.event_id.encode()))
            if futures:
                await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
        return total / (time.perf_counter() - start), total / max(time.process_time() - cpu0, 1e-6)
    finally:
        await consumer.stop()
        await producer.stop()


class CorePlan:
    """``--isolate``: the measured process on a core of its own, the broker and the bench on the others.

    On a small machine the worker, the broker and the bench's producer and collector share the
    cores, so the wall rate measures the box as much as the worker. With ``isolate`` the last core
    of this process's affinity runs only the process being timed (the Faust worker, then the bench
    itself for the raw loops), and every thread of a broker listening on the bootstrap port of this
    machine is moved to the other cores until ``restore``. A broker elsewhere is left alone.
    """

    def __init__(self, bootstrap: str, isolate: bool):
        self.isolate = isolate
        self.own = os.sched_getaffinity(0)
        if isolate and len(self.own) < 2:
            raise click.ClickException(f"--isolate needs at least 2 usable cores; this process may use {sorted(self.own)}")
        self.timed = {max(self.own)} if isolate else self.own
        self.rest = self.own - self.timed if isolate else self.own
        self.broker_threads: dict[int, set[int]] = {}
        if isolate:
            self._pin_broker(bootstrap)
            os.sched_setaffinity(0, self.rest)

    def _pin_broker(self, bootstrap: str) -> None:
        port = int(bootstrap.rsplit(":", 1)[-1])
        pids = {c.pid for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
        for pid in pids:
            for thread in psutil.Process(pid).threads():
                try:
                    self.broker_threads[thread.id] = os.sched_getaffinity(thread.id)
                    os.sched_setaffinity(thread.id, self.rest)
                except (ProcessLookupError, PermissionError):
                    self.broker_threads.pop(thread.id, None)

    def place(self, pid: int, timed: bool) -> None:
        """Put ``pid`` (0: this process) on the timed core or on the rest."""
        if self.isolate:
            os.sched_setaffinity(pid, self.timed if timed else self.rest)

    def describe(self) -> dict:
        return {"isolated": self.isolate, "timed_cpus": sorted(self.timed),
                "broker_threads_moved": len(self.broker_threads)}

    def restore(self) -> None:
        for tid, cpus in self.broker_threads.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                pass
        os.sched_setaffinity(0, self.own)


def _topics(prefix: str, partitions: int, bootstrap: str) -> Settings:
    from pipeline.topics import ensure_topics

    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions)
    asyncio.run(ensure_topics(settings))
    return settings


@click.command("events")
@click.option("--detections", "total", default=100_000, show_default=True, help="Backlog size for the throughput runs.")
@click.option("--cameras", default=1000, show_default=True)
@click.option("--partitions", default=4, show_default=True)
@click.option("--rate", default=1000.0, show_default=True, help="Detections/s in the latency phase.")
@click.option("--latency-seconds", default=8.0, show_default=True)
@click.option("--isolate", is_flag=True,
              help="Time the worker (and the raw loops) on a core of its own; a local broker and the bench move to the other cores.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_events(total: int, cameras: int, partitions: int, rate: float, latency_seconds: float, isolate: bool,
                 as_json: bool) -> None:
    """Detections/s and p50/p99 detection→event latency through one Faust worker, vs raw aiokafka loops.

    \b
    Example:
      guanjia bench events --detections 20000 --json
      guanjia bench events --detections 20000 --isolate --json   # worker on a core of its own
    """
    base = get_settings()
    cores = CorePlan(base.kafka_bootstrap, isolate)
    try:
        result = _bench(base, cores, total, cameras, partitions, rate, latency_seconds, as_json)
    finally:
        cores.restore()
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k:34} {v}")


def _bench(base: Settings, cores: CorePlan, total: int, cameras: int, partitions: int, rate: float,
           latency_seconds: float, as_json: bool) -> dict:
    run_id = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="guanjia-bench-events-"))
    config = write_config(tmp / "cams.yaml", cameras)
    steps = max(1, total // cameras)
    # The backlog ends a minute before now and the latency phase uses the present. Its events' deadlines
    # (5 min or more in the catalog) must not pass during the run: an hour back, every open event
    # escalated at the worker's first deadline tick, 1,000 escalations in the timed window.
    t0 = time.time() - BACKLOG_LEAD_S - steps
    dets = backlog(cameras, steps, t0)
    total = len(dets)
    runner = _runner(config)
    expected = sum(len(runner.feed(d)) for d in dets)
    # latency phase: a full pattern cycle (1 event-making detection in 5) on as many cameras as the rate allows
    lat_cams = max(1, min(cameras, int(rate * latency_seconds) // len(PATTERN)))
    lat_dets = [make_detection(c, s, 0) for s in range(steps, steps + len(PATTERN)) for c in range(lat_cams)]
    lat_expected = sum(len(runner.feed(d.model_copy(update={"capture_time": time.time() + i * 1e-3})))
                       for i, d in enumerate(lat_dets))
    say = (lambda *a: None) if as_json else (lambda *a: click.echo(" ".join(str(x) for x in a), err=True))

    # Faust: backlog, then the worker.
    fs = _topics(f"bench{run_id}f", partitions, base.kafka_bootstrap)
    say(f"producing {total} detections for {cameras} cameras ({expected} events expected) …")
    asyncio.run(_produce(fs, fs.topic("detections"), dets))
    env = {**os.environ, "GUANJIA_TOPIC_PREFIX": fs.topic_prefix, "GUANJIA_TOPIC_PARTITIONS": str(partitions),
           "GUANJIA_KAFKA_BOOTSTRAP": base.kafka_bootstrap}
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen([str(Path(sys.executable).with_name("guanjia")), "worker", "events", "--config", str(config)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    cores.place(worker.pid, timed=True)
    proc = psutil.Process(worker.pid)
    cpu_marks: list[float] = []

    def mark_cpu() -> None:
        times = proc.cpu_times()
        cpu_marks.append(times.user + times.system)

    try:
        escalations: list[dict] = []
        got = asyncio.run(_collect(fs, fs.topic("governance-events"), expected, timeout_s=120 + total / 500,
                                   on_first=mark_cpu, escalations=escalations))
        mark_cpu()
        if len(got) < expected:
            raise click.ClickException(f"faust worker produced {len(got)}/{expected} events; log: {tmp / 'worker.log'}")
        stamps = sorted(ts for ts, _ in got)
        timed = max(total - DEFAULT_BATCH, 1)  # the worker runs with its default --batch: the first event leaves after one such batch
        faust_rate = timed / max(stamps[-1] - stamps[0], 1e-6)
        faust_cpu_rate = timed / max(cpu_marks[-1] - cpu_marks[0], 1e-6)
        say(f"faust: {faust_rate:,.0f} detections/s")
        lat_start = time.time()
        asyncio.run(_produce(fs, fs.topic("detections"), lat_dets, rate=rate))
        got = asyncio.run(_collect(fs, fs.topic("governance-events"), expected + lat_expected, timeout_s=60))
        latencies = [ts - ev["updated_at"] for ts, ev in got if ev["updated_at"] >= lat_start]
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    say(f"faust latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} events at {rate:.0f} det/s")

    # Raw aiokafka ceilings on their own topics with the same backlog.
    rs = _topics(f"bench{run_id}r", partitions, base.kafka_bootstrap)
    asyncio.run(_produce(rs, rs.topic("detections"), dets))
    cores.place(0, timed=True)
    passthrough, passthrough_cpu = asyncio.run(_raw_loop(rs, rs.topic("detections"), rs.topic("dead-letter"), total))
    say(f"raw passthrough: {passthrough:,.0f} detections/s")
    from pipeline.catalog import load_catalog
    from pipeline.config import load_config
    from pipeline.rules.engine import RuleEngine

    city = load_config([config])
    engine = RuleEngine(city.cameras, load_catalog(), city.rules)  # fresh state for the raw run
    raw_engine, raw_engine_cpu = asyncio.run(_raw_loop(rs, rs.topic("detections"), rs.topic("governance-events"), total, engine))
    say(f"raw engine loop: {raw_engine:,.0f} detections/s")

    result = {
        "detections": total,
        "cameras": cameras,
        "partitions": partitions,
        "events": expected,
        "faust_detections_per_s": round(faust_rate),
        "raw_passthrough_detections_per_s": round(passthrough),
        "raw_engine_detections_per_s": round(raw_engine),
        "faust_vs_passthrough": round(faust_rate / passthrough, 3),
        "faust_vs_raw_engine": round(faust_rate / raw_engine, 3),
        "faust_detections_per_cpu_s": round(faust_cpu_rate),
        "raw_passthrough_detections_per_cpu_s": round(passthrough_cpu),
        "raw_engine_detections_per_cpu_s": round(raw_engine_cpu),
        "faust_vs_raw_engine_per_cpu_s": round(faust_cpu_rate / raw_engine_cpu, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "latency_rate_detections_per_s": rate,
        "latency_events": len(latencies),
        "latency_events_expected": lat_expected,
        "latency_p50_ms": round(p50, 1),
        "latency_p99_ms": round(p99, 1),
        "escalations_in_timed_window": len(escalations),
        "target_detections_per_s": 10_000,
        "target_ratio": 0.5,
        **cores.describe(),
    }
    return result
