"""The Faust app: the rule engine over Kafka, with its state in changelog-backed tables.

Flow (every arrow a Kafka topic, keys chosen so each state lives in one partition):

    detections (camera) ──▶ [cameras table] ──▶ fire signals ─▶ grid-signals (grid) ──▶ [grids table] ─┐
    sensor-readings (sensor) ─────────── re-keyed by grid ──▶ grid-signals ─────────────────────────────┤
    camera-health (camera) ──▶ [health table] ──────────────────────────────────────────────────────────┤
                                                                                        event-changes (event id)
    event-acks (event id) + deadline ticks ─────────────────────────────────────▶ [desk table] ──▶ governance-events

Each agent takes messages in batches (``take_events``), applies the engine, sends its outputs, waits
until Kafka has them, and only then writes the touched states to the table changelog — once per key
per batch. A crash therefore can only replay inputs (ids are deterministic and the desk drops drafts
it has seen), never lose an output. Malformed messages go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.exceptions import NotReady

from detectors.records import Detection
from pipeline.codec import DecodeError, dead_letter, decode
from pipeline.records import Ack, CameraHealth, DeskTick, FireSignal, GovernanceEvent, SensorReading
from pipeline.rules.engine import CLOSED_RETENTION_S, RuleEngine
from pipeline.settings import Settings
from pipeline.topics import topic_names

log = logging.getLogger(__name__)


def create_app(settings: Settings, engine: RuleEngine, *, app_id: str | None = None, batch: int = 1000,
               within_s: float = 0.05, tick_s: float = 1.0, clock: Callable[[], float] = time.time,
               datadir: str | None = None) -> faust.App:
    """Build the app; ``app_id`` (consumer group and changelog names) defaults to ``<prefix>-events``."""
    names = topic_names(settings)
    app = faust.App(
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
        producer_linger=0.01,
        producer_max_batch_size=256 * 1024,
        producer_acks=1,
        table_standby_replicas=0,
        broker_session_timeout=10.0,  # a killed worker's partitions move on within seconds
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        datadir=datadir or str(settings.cache_dir / "faust"),
    )

    def topic(short: str, *more: str) -> faust.TopicT:
        return app.topic(names[short], *(names[m] for m in more), key_serializer="raw", value_serializer="raw")

    detections_t, sensors_t, health_t = topic("detections"), topic("sensor-readings"), topic("camera-health")
    grid_t, changes_t, events_t, dlq_t = topic("grid-signals"), topic("event-changes"), topic("governance-events"), topic("dead-letter")
    desk_in = topic("event-changes", "event-acks")

    def table(name: str) -> Any:
        return app.Table(name, default=None)  # keys and values as JSON

    cameras, grids, health, desk = table("cameras"), table("grids"), table("health"), table("desk")

    async def run_batch(events, accept: tuple[type, ...], tbl, key_of: Callable[[Any], str],
                        apply: Callable[[dict, Any], tuple[dict | None, list[tuple[faust.TopicT, str, bytes]]]]) -> None:
        """Decode, apply, send outputs and wait for them, then write each touched state once."""
        touched: dict[str, tuple[int, dict | None]] = {}
        outputs: list[tuple[faust.TopicT, str, bytes]] = []
        for event in events:
            msg = event.message
            try:
                record = decode(event.value, accept)
                key = key_of(record)
                state = touched[key][1] if key in touched else (tbl.data.get(key) if tbl is not None else None)
                state, out = apply(state if state is not None else {}, record)
            except Exception as exc:
                if not isinstance(exc, DecodeError):
                    log.exception("processing %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                dl = dead_letter(exc, topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key, value=event.value)
                outputs.append((dlq_t, msg.topic, dl.to_json()))
                continue
            touched[key] = (msg.partition, state)
            outputs.extend(out)
        # Straight to the transport producer with bytes we encoded: Faust's Topic.send adds
        # serialisation and callback layers that cost more per message than the rule engine.
        send = app.producer.send
        futures = [await send(t.get_topic_name(), k.encode(), v, None, None, None) for t, k, v in outputs]
        if futures:
            await asyncio.gather(*futures)
        # Then the states, once per key, to the changelog (encoded as the table's JSON codec does);
        # the consumer flushes the producer before it commits offsets, so a committed input has its state.
        if tbl is not None:
            changelog = tbl.changelog_topic.get_topic_name()
            for key, (partition, state) in touched.items():
                if state is None:
                    tbl.data.pop(key, None)
                else:
                    tbl.data[key] = state
                await send(changelog, orjson.dumps(key), None if state is None else orjson.dumps(state), partition, None, None)
                if tbl is desk:
                    _index_deadline(key, state)

    def drafts_out(drafts: list[GovernanceEvent]) -> list:
        return [(changes_t, d.event_id, d.to_json()) for d in drafts]

    def on_detection(state: dict, det: Detection):
        state, drafts, signals = engine.on_detection(state, det)
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
        return state, [(events_t, e.event_id, e.to_json()) for e in out]

    @app.agent(detections_t)
    async def detections_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, (Detection,), cameras, lambda d: d.camera_id, on_detection)

    @app.agent(sensors_t)
    async def sensors_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, (SensorReading,), None, lambda r: r.sensor_id,
                            lambda state, r: (None, [(grid_t, r.grid_id, r.to_json())]))

    @app.agent(grid_t)
    async def grid_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, (FireSignal, SensorReading), grids, lambda r: r.grid_id, on_grid)

    @app.agent(health_t)
    async def health_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, (CameraHealth,), health, lambda h: h.camera_id, on_health)

    @app.agent(desk_in)
    async def desk_agent(stream):
        async for events in stream.take_events(batch, within_s):
            await run_batch(events, (GovernanceEvent, Ack, DeskTick), desk, lambda r: r.event_id, on_desk)

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
                ev = (state or {}).get("event")
                if ev and ev["status"] == "closed" and now - (ev["ended_at"] or now) > CLOSED_RETENTION_S:
                    open_deadlines[key] = now  # the desk's tick forgets it
        try:
            for key in [k for k, deadline in open_deadlines.items() if deadline <= now]:
                await changes_t.send(key=key.encode(), value=DeskTick(event_id=key, now=now).to_json())
        except NotReady:  # starting or shutting down: the next tick asks again
            return

    return app

