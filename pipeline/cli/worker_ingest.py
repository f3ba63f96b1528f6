"""``guanjia worker ingest``: pull cameras, detect, produce detections and camera health to Kafka."""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from ingest.urls import redact_url
from pipeline.cli.kafka_errors import kafka_hosts, kafka_unreachable
from pipeline.cli.metrics_options import metrics_options, start_metrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 20_000
SLOT_WAIT_S = 0.25  # how often a blocked send() looks whether shutdown began


class KafkaSink:
    """An aiokafka producer (acks=all, idempotent, batched) on its own event loop thread.

    :meth:`send` may be called from any thread; at most ``max_in_flight`` records wait for delivery,
    so a slow or absent broker slows the caller down instead of growing memory or dropping records.
    One task hands the records to the producer in the order they were sent; when the producer's buffer
    for a partition is full (the broker is away and aiokafka retries its batches until it returns), that
    task waits and retries instead of giving the record up.

    Every accepted record ends as ``sent``, ``failed`` (the broker or client refused it: too large,
    not authorised...) or ``lost`` (shutdown began before it could be delivered); ``stopping`` is the
    shutdown signal (the worker's SIGINT/SIGTERM event).
    """

    def __init__(self, settings: Settings, linger_ms: int = 20, max_in_flight: int = MAX_IN_FLIGHT,
                 request_timeout_ms: int = 30_000, stopping: threading.Event | None = None):
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.linger_ms = linger_ms
        self.request_timeout_ms = request_timeout_ms
        self.max_in_flight = max_in_flight
        self.stopping = stopping if stopping is not None else threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="guanjia-kafka", daemon=True)
        self.producer = None
        self.sent = 0
        self.failed = 0
        self.lost = 0
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()  # in_flight and lost change on callers' threads and the loop's
        self._in_flight = 0
        self._closed = False
        self._gave_up = False  # close() stopped waiting: records still in flight are lost
        self._queue: asyncio.Queue = asyncio.Queue()
        self._sender: asyncio.Task | None = None
        self._failure_logged = False
        self._buffer_full = False

    def start(self) -> KafkaSink:
        """Connect (GUANJIA_KAFKA_* security applies); one-line click error when unreachable, TLS or credentials fail."""
        self.thread.start()

        async def connect():
            producer = await self._connect()
            self._sender = asyncio.create_task(self._deliver(), name="guanjia-kafka-sender")
            return producer

        try:
            self.producer = asyncio.run_coroutine_threadsafe(connect(), self.loop).result(60)
        except TimeoutError as exc:
            self._stop_loop()
            raise kafka_unreachable(self.bootstrap, exc) from None
        except BaseException:
            self._stop_loop()
            raise
        return self

    async def _connect(self):
        from aiokafka import AIOKafkaProducer

        from pipeline.security import kafka_client_options, start_kafka_client

        producer = AIOKafkaProducer(**kafka_client_options(self.settings), acks="all", enable_idempotence=True,
                                    linger_ms=self.linger_ms, max_batch_size=256 * 1024,
                                    request_timeout_ms=self.request_timeout_ms)
        await start_kafka_client(producer, self.settings)
        return producer

    def send(self, topic: str, key: str, value: bytes) -> bool:
        """Queue one record; blocks while ``max_in_flight`` records are still undelivered.

        False when the record was not queued, counted as lost: shutdown began (``stopping``) while every
        slot was taken, or the sink is closed.
        """
        while not self._closed:
            stopping = self.stopping.is_set()  # then take a free slot, never wait for one
            if self._slots.acquire(blocking=False) if stopping else self._slots.acquire(timeout=SLOT_WAIT_S):
                with self._lock:
                    self._in_flight += 1
                self.loop.call_soon_threadsafe(self._queue.put_nowait, (topic, key.encode(), value))
                return True
            if stopping:
                break
        with self._lock:
            self.lost += 1
        return False

    async def _deliver(self) -> None:
        """Hand the queued records to the producer one by one, in order."""
        from aiokafka.errors import KafkaTimeoutError

        while True:
            topic, key, value = await self._queue.get()
            while True:
                try:
                    delivery = await self.producer.send(topic, value, key=key)
                except KafkaTimeoutError:  # the partition's buffer stayed full for request_timeout_ms
                    if not self._buffer_full:
                        self._buffer_full = True
                        log.warning("Kafka at %s: the send buffer is full (broker unreachable?); records wait, "
                                    "at most %d, then the detector waits", kafka_hosts(self.bootstrap),
                                    self.max_in_flight)
                    continue
                except Exception as exc:  # noqa: BLE001 - counted and logged; the worker keeps analysing
                    self._done(exc)
                    break
                if self._buffer_full:
                    self._buffer_full = False
                    log.info("Kafka at %s: accepting records again", kafka_hosts(self.bootstrap))
                delivery.add_done_callback(lambda f: self._done(None if f.cancelled() else f.exception()))
                break

    def _done(self, exc: BaseException | None) -> None:
        if self._gave_up:
            return
        with self._lock:
            self._in_flight -= 1
        self._slots.release()
        if exc is None:
            self.sent += 1
            return
        self.failed += 1
        if not self._failure_logged:
            self._failure_logged = True
            log.error("Kafka at %s: a record was not delivered (%s); later failures are counted, not logged",
                      kafka_hosts(self.bootstrap), type(exc).__name__)

    @property
    def in_flight(self) -> int:
        """Records accepted by :meth:`send` and not yet delivered or failed."""
        with self._lock:
            return self._in_flight

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout`` seconds), then disconnect; what is still
        undelivered then is counted as lost."""
        self._closed = True
        if self.producer is not None:
            async def drain() -> None:
                deadline = time.monotonic() + timeout
                while self.in_flight and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                if self.in_flight:  # give up: what is still in flight is lost, whatever the producer says now
                    self._gave_up = True
                    await _cancel_other_tasks()  # the producer's sender would retry until the broker returns
                self._sender.cancel()
                await asyncio.wait_for(self.producer.stop(), max(5.0, deadline - time.monotonic()))
                if self._gave_up:
                    await _cancel_other_tasks()  # stop()'s flush of the batches nobody will send

            future = asyncio.run_coroutine_threadsafe(drain(), self.loop)
            try:
                future.result(timeout + 5)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                future.cancel()
                log.warning("Kafka producer did not close cleanly: %s", type(exc).__name__)
        self._stop_loop()
        with self._lock:
            left, self._in_flight = self._in_flight, 0
            self.lost += left
        if left:
            log.error("Kafka at %s: %d records not delivered within %g s of shutdown; they are lost",
                      kafka_hosts(self.bootstrap), left, timeout)

    def _stop_loop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def _cancel_other_tasks() -> None:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)


def redis_health_client(settings: Settings):
    """A client on GUANJIA_REDIS_URL (ACL user, TLS from settings); Redis down is said once here and
    analysis goes on (every write retries)."""
    import redis

    from pipeline.security import redis_client, redis_error

    client = redis_client(settings, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        click.echo(f"worker ingest: {redis_error(settings.redis_url, exc, settings).message}; meanwhile camera health "
                   "goes to Kafka only and evidence is not stored (retried with every report)", err=True)
    return client


class RedisWriter:
    """Runs Redis writes on one daemon thread, from a bounded queue, so that a hung Redis (every call
    blocking up to its socket timeout) never stalls the detection loop or the assignment's heartbeats.

    :meth:`submit` never blocks: with ``maxsize`` writes already waiting it drops the new one. Counts:
    ``done``, ``failed`` (the function returned False or raised) and ``dropped`` (never run: the queue was
    full, or still waiting at :meth:`close`).
    """

    def __init__(self, name: str, maxsize: int):
        self.name = name
        self.maxsize = maxsize
        self.done = self.failed = self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished
        self._abandoned = False  # close() gave up on a write still running: it no longer counts
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., bool | None], *args) -> bool:
        """Queue ``fn(*args)``; False (counted as dropped) when the queue is full or the writer closed."""
        with self._lock:
            if not self._closing.is_set():
                try:
                    self._queue.put_nowait((fn, args))
                except queue.Full:
                    pass
                else:
                    self._pending += 1
                    return True
            self.dropped += 1
        return False

    def _run(self) -> None:
        while True:
            try:
                fn, args = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                ok = fn(*args) is not False
            except Exception:  # the functions log their own Redis errors; nothing may end this thread
                log.exception("%s: a write failed", self.name)
                ok = False
            with self._lock:
                if self._abandoned:
                    return
                self._pending -= 1
                if ok:
                    self.done += 1
                else:
                    self.failed += 1

    def close(self, timeout: float = 5.0) -> int:
        """Let the queued writes finish for up to ``timeout`` seconds; those left then are dropped.
        Returns how many were."""
        self._closing.set()
        self._thread.join(timeout)
        with self._lock:
            left, self._pending = self._pending, 0
            self.dropped += left
            self._abandoned = self._thread.is_alive()
        return left


class RedisEvidence:
    """Evidence snapshots in Redis with a TTL, written by a :class:`RedisWriter`; an outage is logged
    once, never raised (the event goes out anyway). At most ``backlog`` snapshots wait for a slow or hung
    Redis; later ones are dropped and counted (``not_stored``), the first drop logged."""

    def __init__(self, client, ttl_s: int, backlog: int = 32):
        from pipeline.evidence import RedisStore

        self.store = RedisStore(client, ttl_s=ttl_s)
        self._failing = False
        self._drop_logged = False
        self.writer = RedisWriter("guanjia-evidence", backlog)

    @property
    def stored(self) -> int:
        return self.writer.done

    @property
    def not_stored(self) -> int:
        """Snapshots refused by Redis, dropped while it did not keep up, or still waiting at shutdown."""
        return self.writer.failed + self.writer.dropped

    def put(self, key: str, jpeg: bytes) -> None:
        if not self.writer.submit(self._write, key, jpeg) and not self._drop_logged:
            self._drop_logged = True
            log.warning("evidence: Redis does not keep up (%d snapshots wait); newer ones are dropped, "
                        "counted in the summary, not logged", self.writer.maxsize)

    def _write(self, key: str, jpeg: bytes) -> bool:
        import redis

        try:
            self.store.put(key, jpeg)
        except redis.RedisError as exc:
            if not self._failing:
                log.warning("evidence: cannot store snapshots in Redis (%s); retrying with each one", type(exc).__name__)
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Store what waits, for up to ``timeout`` seconds (a hung Redis must not hold up shutdown)."""
        self.writer.close(timeout)


def delivery_summary(sink: KafkaSink, evidence: RedisEvidence | None) -> str:
    """The end of the worker's last line: what reached Kafka, and Redis."""
    text = f"{sink.sent} records delivered, {sink.failed} failed, {sink.lost} lost at shutdown"
    if evidence is not None:
        text += f", {evidence.stored} evidence snapshots in Redis"
        if evidence.not_stored:
            text += f" ({evidence.not_stored} not stored: Redis down or too slow)"
    return text


def exit_code(sink: KafkaSink) -> int:
    """1 when a record was not delivered (failed, or lost at shutdown), else 0."""
    return 1 if sink.failed or sink.lost else 0


def health_forgetter(publisher, writer: RedisWriter) -> Callable[[str], None]:
    """``on_deleted`` for the camera assignment: forget a tombstoned camera's health in Redis on the
    writer's thread, so that a hung Redis never blocks the assignment's event loop (and its heartbeats)."""

    def forget(camera_id: str) -> bool:  # a removed camera must not stay "down" in Redis
        try:
            publisher.forget([camera_id])
        except Exception as exc:  # noqa: BLE001 - Redis down: its hash expires by itself
            log.warning("health: cannot forget removed camera %s in Redis (%s)", camera_id, type(exc).__name__)
            return False
        return True

    def on_deleted(camera_id: str) -> None:
        if not writer.submit(forget, camera_id):
            log.warning("health: cannot forget removed camera %s in Redis (%d writes wait)", camera_id, writer.maxsize)

    return on_deleted


@click.command("ingest")
@click.option("--config", "configs", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Camera-group file(s) (repeatable); not with --assign kafka.")
@click.option("--assign", type=click.Choice(["config", "kafka"]), default="config", show_default=True,
              help="config: pull every camera of --config. kafka: join the ingest consumer group on "
                   "guanjia.cameras.v1 (`guanjia cameras publish`) and pull the cameras of the partitions Kafka assigns.")
@click.option("--group", default="guanjia-ingest", show_default=True, help="Consumer group of the ingest workers (--assign kafka).")
@click.option("--session-timeout", default=10.0, show_default=True, type=click.FloatRange(min=6),
              help="Seconds without a heartbeat before Kafka moves this worker's cameras (--assign kafka).")
@metrics_options(default_port=9108)
@click.option("--health-interval", default=5.0, show_default=True, type=click.FloatRange(min=0.5),
              help="Seconds between camera-health reports (Kafka and Redis).")
@click.option("--evidence-ttl", default=7 * 24 * 3600, show_default=True, type=click.IntRange(min=0),
              help="Seconds annotated snapshots of frames over a threshold stay in Redis (0: store none).")
@click.option("--backpressure", is_flag=True,
              help="Files: analyse every sampled frame (the reader waits for the detector) instead of the latest one.")
@click.option("--until-done", is_flag=True, help="Exit once every camera has ended (file sources: batch runs, tests).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Exit after this many seconds.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder searched first for model files (GUANJIA_MODELS_DIR).")
@click.option("--loglevel", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def ingest(configs: tuple[Path, ...], assign: str, group: str, session_timeout: float, metrics_port: int, metrics_host: str, no_metrics: bool, health_interval: float,
           evidence_ttl: int, backpressure: bool, until_done: bool, max_seconds: float | None, models_dir: Path | None,
           loglevel: str) -> None:
    """Pull the configured cameras, run the detectors and produce guanjia.detections.v1 (key: camera id)
    and guanjia.camera-health.v1 to Kafka; camera health and annotated snapshots of frames over a
    crowding or fire threshold (the events' evidence_key) go to Redis, metrics to /metrics.

    \b
    Example:
      guanjia worker ingest --config configs/demo.yaml --metrics-port 9108
      GUANJIA_TOPIC_PREFIX=drill guanjia worker ingest --config configs/demo.yaml --backpressure --until-done
    """
    from detectors.plugins import PluginError
    from detectors.registry import ModelError
    from ingest.health import HealthPublisher
    from pipeline.config import ConfigError, load_config
    from pipeline.evidence import write_snapshot
    from pipeline.metrics import Metrics
    from pipeline.perception import Perception, crosses_threshold
    from pipeline.settings import get_settings
    from pipeline.topics import ensure_topics

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if assign == "kafka" and configs:
        raise click.UsageError("--assign kafka takes its cameras from guanjia.cameras.v1: leave out --config")
    if assign == "config" and not configs:
        raise click.UsageError("Missing option '--config' (repeatable), or give --assign kafka")
    try:
        cameras = load_config(list(configs)).cameras if configs else []
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    def on_health(snapshots) -> None:  # from the pool's health thread, which starts after sink and publisher exist
        publisher.publish(snapshots)
        for record in perception.health_records(snapshots):
            sink.send(health_topic, record.camera_id, record.to_json())

    try:
        perception = Perception(cameras, models_dir=models_dir, backpressure=backpressure,
                                on_health=on_health, health_interval_s=health_interval, allow_empty=assign == "kafka")
    except (ModelError, PluginError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    stop = threading.Event()  # set by SIGINT/SIGTERM, and when the run ends: shutdown has begun
    sink = KafkaSink(settings, stopping=stop).start()
    try:
        asyncio.run_coroutine_threadsafe(ensure_topics(settings), sink.loop).result(60)
    except Exception as exc:  # noqa: BLE001 - one line, the worker cannot run without its topics
        sink.close()
        raise click.ClickException(f"cannot create topics on Kafka at {kafka_hosts(settings.kafka_bootstrap)}: "
                                   f"{type(exc).__name__}: {exc}") from None
    client = redis_health_client(settings)
    publisher = HealthPublisher(client)
    evidence = RedisEvidence(client, evidence_ttl) if evidence_ttl else None
    detections_topic, health_topic = settings.topic("detections"), settings.topic("camera-health")
    server = None
    if not no_metrics:
        metrics = Metrics(camera_stats=lambda: perception.pool.health())
        perception.metrics = metrics
        try:
            server = start_metrics(metrics.registry, metrics_host, metrics_port)
        except click.ClickException:
            sink.close()
            raise

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def on_detection(det, frame) -> None:
        cam = perception.cameras[det.camera_id]
        if evidence is not None and crosses_threshold(cam, det):
            write_snapshot(evidence, frame.image, det, cam.zones)
        sink.send(detections_topic, det.camera_id, det.to_json())

    assignment = forgets = None
    if assign == "kafka":
        from pipeline.assignment import CAMERAS_TOPIC, AssignmentThread, CameraAssignment
        from pipeline.security import kafka_security_options

        forgets = RedisWriter("guanjia-health-forget", 10_000)
        member = CameraAssignment(settings.kafka_bootstrap, settings.topic(CAMERAS_TOPIC), group_id=group,
                                  on_add=perception.add_camera, on_change=perception.add_camera,
                                  on_remove=perception.remove_camera, on_release=perception.release_camera,
                                  on_deleted=health_forgetter(publisher, forgets),
                                  session_timeout_ms=int(session_timeout * 1000),
                                  heartbeat_interval_ms=max(1000, int(session_timeout * 1000) // 5),
                                  security=kafka_security_options(settings))
        assignment = AssignmentThread(member)
    where = (f"cameras of group {group} on {settings.topic('cameras')}" if assignment else f"{len(perception.cameras)} cameras")
    click.echo(f"worker ingest: {where}, broker {kafka_hosts(settings.kafka_bootstrap)}, "
               f"topics {settings.topic_prefix}.*.v1, redis {redact_url(settings.redis_url)}"
               + (f", metrics {server.url}" if server else ""), err=True)
    started = time.monotonic()
    try:
        with perception:
            if assignment is not None:
                try:
                    assignment.start()
                except Exception as exc:  # noqa: BLE001 - one line: the worker has no cameras without its group
                    raise click.ClickException(f"cannot join the ingest group on Kafka at "
                                               f"{kafka_hosts(settings.kafka_bootstrap)}: {type(exc).__name__}") from None
            try:
                perception.run(on_detection, stop, until_done=until_done, max_seconds=max_seconds)
            finally:
                stop.set()  # from now on a send that finds every slot taken gives up (counted as lost)
                if assignment is not None:
                    assignment.stop()  # closes the owned cameras and leaves the group: others take over at once
            final = perception.health()  # each camera's last counters, for Redis
        # after Perception.stop: Redis gets the final counters, Kafka the last word on every camera
        # ("stopped", "worker stopped"), so the events worker does not take a clean stop for an outage
        on_health(final)
    finally:
        sink.close()
        for writer in (evidence, forgets):
            if writer is not None:
                writer.close()
        if server is not None:
            server.close()
    click.echo(f"worker ingest: {perception.analysed} frames analysed in {time.monotonic() - started:.1f} s, "
               f"{delivery_summary(sink, evidence)}", err=True)
    sys.exit(exit_code(sink))
