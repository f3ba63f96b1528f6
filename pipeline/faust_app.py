"""The Faust app: the rule engine over Kafka, with its state in changelog-backed tables.

Flow (every arrow a Kafka topic, keys chosen so each state lives in one partition):

    detections (camera) ──▶ [cameras table] ──▶ fire signals ─▶ grid-signals (grid) ──▶ [grids table] ─┐
    sensor-readings (sensor) ─────────── re-keyed by grid ──▶ grid-signals ─────────────────────────────┤
    camera-health (camera) + silence sweeps ──▶ [health table] ─────────────────────────────────────────┤
                                                                                        event-changes (event id)
    event-acks (event id) + deadline ticks ─────────────────────────────────────▶ [desk table] ──▶ governance-events

Each agent takes messages in batches (``take_events``), applies the engine, sends its outputs, waits
until Kafka has them, and only then updates the touched states in its table. Changed states go to
the table changelog once per key before each offset commit. A crash therefore can only replay
inputs (ids are deterministic and the desk drops drafts it has seen), never lose an output or a
committed input's state. Malformed messages go to the dead-letter topic.

Two timers run on every worker, each over the table partitions it holds: ``deadlines`` asks the desk
to escalate overdue events, and ``silent_cameras`` opens a camera-offline event for a camera whose
reports stopped (``RuleEngine.check_offline``, as the embedded runner's ``tick``).

Given a :class:`~pipeline.metrics.Metrics`, the app counts each governance-event revision the desk
publishes (opened/closed by rule) and a third timer, ``consumer_lag``, sets the lag of every input
partition this worker holds. The rule engine knows nothing of metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from faust.exceptions import NotReady
from faust.sensors import Monitor
from faust.transport.conductor import Conductor
from faust.transport.drivers import aiokafka as faust_aiokafka

from detectors.records import Detection
from ingest.urls import url_scheme
from pipeline.codec import (
    DecodeError,
    DetectionView,
    dead_letter,
    decode,
    decode_detection,
    not_ahead,
)
from pipeline.records import Ack, CameraHealth, DeskTick, FireSignal, GovernanceEvent, SensorReading
from pipeline.rules.engine import RuleEngine
from pipeline.security import faust_security_settings
from pipeline.settings import Settings
from pipeline.topics import topic_names

if TYPE_CHECKING:
    from pipeline.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000  # messages each agent takes per batch (``guanjia worker events --batch``)
COMMIT_BY_INTERVAL_ONLY = 1 << 62  # broker_commit_every: never reached
SETTLE_EVERY = 4096  # outputs in flight before delivered ones are dropped from the list (and failures raised)
OFFLINE_EVERY_S = 5.0  # seconds between sweeps of the health states for silent cameras
OFFLINE_CHUNK = 5000  # health states checked per hold of the batch lock (≈ 1.5 µs each)
LAG_EVERY_S = 15.0  # seconds between consumer-lag readings (with metrics)
INPUT_TOPICS = ("detections", "sensor-readings", "camera-health", "grid-signals", "event-changes", "event-acks")


class KeyPartitioner:
    """Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka), remembering recent keys.

    aiokafka's murmur2 is pure Python, and each event id is partitioned four times (two drafts on
    event-changes, two revisions on governance-events). The partitions are the default's, so keys
    land where every other client puts them.
    """

    def __init__(self, remember: int = 1 << 16):
        self._index = functools.lru_cache(maxsize=remember)(lambda key: murmur2(key) & 0x7FFFFFFF)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[self._index(bytes(key)) % len(all_partitions)]


def check_conductor(cls: type = Conductor) -> None:
    """ImportError unless ``cls`` declares the private handler map and lock FastConsumer reads.

    They are set in ``Conductor.__init__``, so only the class annotations name them; a Faust
    upgrade that renames them must fail at import, not misroute messages.
    """
    missing = [name for name in ("_tp_to_callback", "_tp_to_callback_lock") if name not in getattr(cls, "__annotations__", {})]
    if missing:
        raise ImportError(f"pipeline.faust_app reads {cls.__module__}.{cls.__qualname__}'s private {', '.join(missing)}, "
                          "which this Faust version lacks (written for faust-streaming 0.15): update FastConsumer._drain_messages")


check_conductor()


class FastConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a cheaper hand-off of each message, and a pre-commit hook.

    Faust's drain loop awaits ``wait_first(callback(message), suspend_flow.wait())`` for every
    message: four tasks, an ``asyncio.wait`` and three cancellations, which cost more than the
    rule engine. While the flow is active (no rebalance under way) nothing can cut the callback
    short, so it is awaited directly; otherwise Faust's race is kept. The conductor's handler for
    the message's partition is read without taking its lock when nobody holds it (the map is only
    rebuilt under the lock or synchronously), instead of an ``async with`` per message. Before
    offsets are committed, the app's ``before_commit`` coroutines run (the table states go out).
    """

    async def _drain_messages(self, fetcher: Any) -> None:
        on_message, getmany = self.callback, self.getmany
        conductor = self.app.topics
        handler_for, handlers_locked = conductor._tp_to_callback.get, conductor._tp_to_callback_lock.locked
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        flow_control = self.app.flow_control
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        commit_every = self._commit_every
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch = getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                n = 0
                async for tp, message in batch:
                    n += 1
                    if n % 100 == 0:
                        await asyncio.sleep(0)  # let the streams run during a long fetch
                    offset = message.offset
                    r_offset = read_offset[tp]
                    if r_offset is not None and offset < r_offset:
                        continue  # re-fetched after a seek: already handed on
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if not suspended() and flow_control.is_active():
                        handler = None if handlers_locked() else handler_for(tp)
                        await (on_message if handler is None else handler)(message)  # on_message: Faust's locked look-up
                    else:
                        await self.wait_first(on_message(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        for hook in self.app.before_commit:  # table states first: a committed input always has its state
            await hook()
        return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)

    async def lag(self, topics: set[str]) -> dict[tuple[str, int], int]:
        """Messages not yet processed in each partition of ``topics`` this consumer holds: the high
        watermark minus the committed offset (the position where the group has committed none)."""
        held = [tp for tp in self.assignment() if tp.topic in topics]
        if not held:
            return {}
        highwaters = await self.highwaters(*held)
        committed = getattr(self, "_committed_offset", {})  # Faust's: seeded on assignment, updated on commit
        lags = {}
        for tp in held:
            end = highwaters.get(tp)
            if end is None:
                continue
            done = committed.get(tp)
            if done is None:
                done = await self.position(tp)
            lags[(tp.topic, tp.partition)] = max(0, end - (done or 0))
        return lags


class RawSchema(faust.Schema):
    """Keys and values as the bytes Kafka holds; the agents decode values themselves, in batches.

    Faust's own decode goes through the serializer registry for the key and the value of every
    message (two codec look-ups and calls) before it makes the event; for raw bytes that is all
    overhead.
    """

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Callable[..., Awaitable[Any]]:
        make_event = app.conf.Event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return make_event(app, message.key, message.value, message.headers, message)

        return decode


class FastTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`FastConsumer`."""

    Consumer = FastConsumer


class LeanMonitor(Monitor):
    """Faust's Monitor without its per-message statistics.

    They feed Faust's web view, which this worker does not run (``web_enabled=False``), and their
    five calls per message (in, stream in and out, out, send) showed as ~4% of the worker in a
    py-spy profile. Commit, rebalance and assignment hooks are Faust's own.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


class EventsApp(faust.App):
    """``faust.App`` whose consumer transport is :class:`FastTransport`.

    ``before_commit`` coroutines run before every offset commit, ahead of the producer flush.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_commit: list[Callable[[], Awaitable[None]]] = []

    def _new_transport(self) -> Any:
        return FastTransport(self.conf.broker_consumer, self)


def _is_file(url: str) -> bool:
    try:
        return url_scheme(url) == "file"
    except ValueError:
        return False


def create_app(settings: Settings, engine: RuleEngine, *, app_id: str | None = None, batch: int = DEFAULT_BATCH,
               within_s: float = 0.05, tick_s: float = 1.0, offline_every_s: float = OFFLINE_EVERY_S,
               clock: Callable[[], float] = time.time, datadir: str | None = None,
               metrics: Metrics | None = None, lag_every_s: float = LAG_EVERY_S) -> faust.App:
    """Build the app; ``app_id`` (consumer group and changelog names) defaults to ``<prefix>-events``.

    ``tick_s``: seconds between deadline checks; ``offline_every_s``: between silent-camera sweeps.
    ``metrics``: where published events and, every ``lag_every_s``, the consumer lag are counted (None: nowhere).
    """
    names = topic_names(settings)
    app = EventsApp(
        app_id or f"{settings.topic_prefix}-events",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        stream_buffer_maxsize=8192,
        broker_max_poll_records=2000,
        broker_commit_interval=1.0,
        # Commit on the interval only: a count-triggered commit runs inside the fetch loop, which then
        # stalls until the checkpoint has every output and changelog write acknowledged.
        broker_commit_every=COMMIT_BY_INTERVAL_ONLY,
        producer_linger=0.01,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,  # all in-sync replicas: an event must survive a leader failover
        producer_partitioner=KeyPartitioner(),
        table_standby_replicas=0,
        broker_session_timeout=10.0,  # a killed worker's partitions move on within seconds
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        Monitor=LeanMonitor,
        **faust_security_settings(settings),
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        datadir=datadir or str(settings.cache_dir / "faust"),
    )

    def topic(short: str, *more: str) -> faust.TopicT:
        return app.topic(names[short], *(names[m] for m in more),
                         schema=RawSchema(key_serializer="raw", value_serializer="raw"))

    sensors_t, health_t = topic("sensor-readings"), topic("camera-health")
    grid_t, changes_t, events_t, dlq_t = topic("grid-signals"), topic("event-changes"), topic("governance-events"), topic("dead-letter")
    desk_in = topic("event-changes", "event-acks")
    camera_in = topic("detections", "camera-health")  # a camera's frames and its stop, co-partitioned by camera id

    def table(name: str) -> Any:
        return app.Table(name, default=None)  # keys and values as JSON

    cameras, grids, health, desk = table("cameras"), table("grids"), table("health"), table("desk")

    # Outputs are sent without waiting for the broker, so the next batch runs while it acknowledges
    # this one; checkpoint() waits for every acknowledgement before offsets are committed. The
    # engine changes table states in place, so a batch holds `batch_lock` from its first change to
    # its last send, and checkpoint() reads states only between batches: every state it writes to a
    # changelog has its outputs in the acknowledgements it waits for.
    batch_lock = asyncio.Lock()
    in_flight: list[asyncio.Future] = []  # outputs sent, delivery not yet checked
    dirty: dict[str, dict[str, int]] = {t.name: {} for t in (cameras, grids, health, desk)}  # table → key → partition

    async def run_batch(events, decoder: Callable[[bytes | None], Any] | dict[str, Callable[[bytes | None], Any]], tbl,
                        key_of: Callable[[Any], str],
                        apply: Callable[[dict, Any], tuple[dict | None, list[tuple[faust.TopicT, str, bytes]]]]) -> None:
        """Decode (with the decoder of the message's topic where ``decoder`` maps topics to decoders), apply, send
        the outputs, and note each touched state for the next checkpoint."""
        async with batch_lock:
            touched: dict[str, tuple[int, dict | None]] = {}
            outputs: list[tuple[faust.TopicT, str, bytes]] = []
            for event in events:
                msg = event.message
                try:
                    record = (decoder[msg.topic] if isinstance(decoder, dict) else decoder)(event.value)
                    if record is None:  # not for this agent (another agent reads the same topic)
                        continue
                    key = key_of(record)
                    state = touched[key][1] if key in touched else (tbl.data.get(key) if tbl is not None else None)
                    state, out = apply(state if state is not None else {}, record)
                except Exception as exc:
                    if not isinstance(exc, DecodeError):
                        log.exception("processing %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                    dl = dead_letter(exc, topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                                     value=event.value)
                    outputs.append((dlq_t, msg.topic, dl.to_json()))
                    continue
                touched[key] = (msg.partition, state)
                outputs.extend(out)
            # Straight to the transport producer with bytes we encoded: Faust's Topic.send adds
            # serialisation and callback layers that cost more per message than the rule engine.
            send = app.producer.send
            for t, k, v in outputs:
                in_flight.append(await send(t.get_topic_name(), k.encode(), v, None, None, None))
            if len(in_flight) >= SETTLE_EVERY:
                _drop_delivered()
            if tbl is not None:
                data, marks = tbl.data, dirty[tbl.name]
                for key, (partition, state) in touched.items():
                    if state is None:
                        data.pop(key, None)
                    else:
                        data[key] = state
                    marks[key] = partition
                    if tbl is desk:
                        _index_deadline(key, state)
                    elif tbl is health:
                        health_partitions[key] = partition

    def _drop_delivered() -> None:
        """Forget delivered outputs; a failed one raises, so the agent stops before any later commit."""
        pending = []
        for fut in in_flight:
            if not fut.done():
                pending.append(fut)
            elif fut.exception() is not None:
                raise fut.exception()
        in_flight[:] = pending

    async def checkpoint() -> None:
        """Before every offset commit: wait for all outputs sent so far, then write each changed state once.

        The offsets being committed were chosen before this runs, and an input is acknowledged only
        after its batch has sent its outputs, so every output of a committed input is waited for. The
        changelog always holds a state at least as new as the committed inputs, as when every batch
        wrote its states, but a camera seen in many batches per commit interval costs one write.
        Runs before a rebalance hands partitions on, too.
        """
        async with batch_lock:
            pending, in_flight[:] = in_flight.copy(), []
            states = []
            for tbl in (cameras, grids, health, desk):
                marks, dirty[tbl.name] = dirty[tbl.name], {}
                changelog = tbl.changelog_topic.get_topic_name()
                for key, partition in marks.items():
                    state = tbl.data.get(key)  # encoded as the table's JSON codec does
                    states.append((changelog, orjson.dumps(key), None if state is None else orjson.dumps(state), partition))
        if pending:
            await asyncio.gather(*pending)  # a lost output must not be followed by a commit (nor its state)
        send = app.producer.send
        written = [await send(topic, key, value, partition, None, None) for topic, key, value, partition in states]
        if written:
            await asyncio.gather(*written)

    app.before_commit.append(checkpoint)

    def drafts_out(drafts: list[GovernanceEvent]) -> list:
        return [(changes_t, d.event_id, d.to_json()) for d in drafts]

    def on_camera_input(state: dict, item: Detection | DetectionView | CameraHealth):
        if isinstance(item, CameraHealth):
            state, drafts, signals = engine.on_camera_health(state, item)
        else:
            state, drafts, signals = engine.on_detection(state, item)
        return state, drafts_out(drafts) + [(grid_t, s.grid_id, s.to_json()) for s in signals]

    def on_grid(state: dict, item: FireSignal | SensorReading):
        state, drafts = engine.on_grid_input(state, item)
        return state, drafts_out(drafts)

    def on_health(state: dict, report: CameraHealth):
        state, drafts = engine.on_health(state, report)
        return state, drafts_out(drafts)

    def on_desk(state: dict, item: GovernanceEvent | Ack | DeskTick):
        if isinstance(item, GovernanceEvent):
            state, out = engine.on_draft(state, item)
        elif isinstance(item, Ack):
            state, out = engine.on_ack(state, item)
        else:
            state, out = engine.on_tick(state, item.now)
        if metrics is not None:
            for e in out:
                metrics.observe_event({"rule": e.rule, "action": e.action})  # bounded labels: the rule only
        return state, [(events_t, e.event_id, e.to_json()) for e in out]

    skew = settings.max_clock_skew_s  # inputs from other machines' clocks: far-future times are dead-lettered
    # except a configured file camera's: read faster than it plays, its capture times run ahead by design
    files = frozenset(cid for cid, cam in engine.cameras.items() if _is_file(cam.url))
    detection_decoder = not_ahead(decode_detection, lambda d: d.capture_time, skew, exempt=lambda d: d.camera_id in files)
    reading_decoder = not_ahead(functools.partial(decode, accept=(SensorReading,)), lambda r: r.time, skew)
    health_decoder = not_ahead(functools.partial(decode, accept=(CameraHealth,)), lambda h: h.time, skew)

    def camera_stop(value: bytes | None) -> CameraHealth | None:
        """A ``stopped`` health report for the camera partition, else None: the health agent reads every report
        and dead-letters the bad ones, so they are not dead-lettered twice."""
        if value is None or b"stopped" not in value:
            return None
        try:
            report = health_decoder(value)
        except DecodeError:
            return None
        return report if report.state == "stopped" else None

    camera_decoders = {names["detections"]: detection_decoder, names["camera-health"]: camera_stop}

    @app.agent(camera_in)
    async def detections_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, camera_decoders, cameras, lambda d: d.camera_id, on_camera_input)

    @app.agent(sensors_t)
    async def sensors_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, reading_decoder, None, lambda r: r.sensor_id,
                            lambda state, r: (None, [(grid_t, r.grid_id, r.to_json())]))

    @app.agent(grid_t)
    async def grid_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, functools.partial(decode, accept=(FireSignal, SensorReading)), grids,
                            lambda r: r.grid_id, on_grid)

    @app.agent(health_t)
    async def health_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, health_decoder, health,
                            lambda h: h.camera_id, on_health)

    # event-acks is written by the event hub, so it carries acks only (decoded as an Ack, its "schema" optional, as
    # the published schema says); drafts and deadline ticks come from this app on event-changes alone.
    desk_decoders = {names["event-changes"]: functools.partial(decode, accept=(GovernanceEvent, DeskTick)),
                     names["event-acks"]: functools.partial(decode, accept=(Ack,))}

    @app.agent(desk_in)
    async def desk_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, desk_decoders, desk,
                            lambda r: r.event_id, on_desk)

    # event id → deadline of open, unacknowledged events in this worker's desk partitions; rebuilt
    # from the table after recovery and on a slow full sweep (which also forgets old closed events).
    open_deadlines: dict[str, float] = {}
    sweep = {"next": 0.0}

    def _index_deadline(key: str, state: dict | None) -> None:
        ev = (state or {}).get("event")
        if ev and ev["status"] == "open" and ev["acknowledged_by"] is None and not state.get("exhausted"):
            open_deadlines[key] = ev["routing"]["deadline_at"]
        else:
            open_deadlines.pop(key, None)

    @app.timer(interval=tick_s)
    async def deadlines() -> None:
        """Ask the desk to escalate events whose deadline passed (the desk re-checks: ticks are idempotent)."""
        now = clock()
        if now >= sweep["next"]:
            sweep["next"] = now + 60.0
            open_deadlines.clear()
            for key, state in list(desk.data.items()):
                _index_deadline(key, state)
                if state and engine.expired(state, now):
                    open_deadlines[key] = now  # the desk's tick forgets it (a closed event, or an ack that never met its event)
        try:
            for key in [k for k, deadline in open_deadlines.items() if deadline <= now]:
                await changes_t.send(key=key.encode(), value=DeskTick(event_id=key, now=now).to_json())
        except NotReady:  # starting or shutting down: the next tick asks again
            return

    # camera id → its camera-health partition, for states this worker wrote; states read back from the
    # changelog have theirs in the memory store (test_faust_parts checks Faust still keeps it)
    health_partitions: dict[str, int] = {}
    health_topic = health_t.get_topic_name()

    @app.timer(interval=offline_every_s)
    async def silent_cameras() -> None:
        """Open camera-offline events for cameras silent (no report at all) for their offline_minutes.

        The check is the engine's, as in the embedded runner's ``tick``. Only states of the
        camera-health partitions this worker holds are checked: a timer runs on every worker, and a
        state left behind by a partition that moved away is stale. Like a batch, each chunk changes
        states and sends their drafts under ``batch_lock`` and marks them for the next checkpoint.
        """
        now = clock()
        recovered = getattr(health.data, "_key_partition", {})
        keys = list(health.data.keys())
        for start in range(0, len(keys), OFFLINE_CHUNK):
            async with batch_lock:
                if app.rebalancing:  # partitions moving, tables recovering: the next sweep checks
                    return
                owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == health_topic}
                if not owned:
                    return
                send, marks = app.producer.send, dirty[health.name]
                for key in keys[start:start + OFFLINE_CHUNK]:
                    partition = health_partitions.get(key, recovered.get(key))
                    state = health.data.get(key)
                    if partition not in owned or state is None:
                        continue
                    try:
                        state, drafts = engine.check_offline(dict(state), now)  # a copy: stored once sent
                    except Exception:
                        log.exception("offline check of camera %s failed", key)
                        continue
                    if not drafts:
                        continue
                    try:
                        for t, k, v in drafts_out(drafts):
                            in_flight.append(await send(t.get_topic_name(), k.encode(), v, None, None, None))
                    except NotReady:  # shutting down: the state is unchanged, so a restart checks again
                        return
                    health.data[key] = state
                    marks[key] = partition
                if len(in_flight) >= SETTLE_EVERY:
                    _drop_delivered()
            await asyncio.sleep(0)  # let the agents run between chunks

    if metrics is not None:
        inputs = {names[short] for short in INPUT_TOPICS}
        shown: set[tuple[str, int]] = set()
        lag_failed = {"logged": False}

        @app.timer(interval=lag_every_s)
        async def consumer_lag() -> None:
            """Set the lag gauge of each input partition this worker holds; drop those it gave up."""
            if app.rebalancing:  # the assignment is moving: the next reading sees where it settled
                return
            try:
                lags = await asyncio.wait_for(app.consumer.lag(inputs), timeout=lag_every_s)
            except Exception as exc:  # noqa: BLE001 - a lost reading must not stop the worker
                if not lag_failed["logged"]:
                    log.warning("consumer lag not read (%s); retrying every %g s", type(exc).__name__, lag_every_s)
                lag_failed["logged"] = True
                return
            lag_failed["logged"] = False
            for topic_name, partition in shown - lags.keys():
                metrics.consumer_lag.remove(topic_name, str(partition))
            metrics.set_consumer_lag(lags)
            shown.clear()
            shown.update(lags)

    return app

