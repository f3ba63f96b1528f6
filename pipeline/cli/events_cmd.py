"""``guanjia events``: follow governance events and acknowledge them."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import click


@click.group()
def events() -> None:
    """Governance events on guanjia.governance-events.v1.

    \b
    Examples:
      guanjia events tail --follow --town Humen
      guanjia events ack 3f0c…-uuid --by "Humen 值班员"
    """


def _line(ev: dict) -> str:
    left = ev["routing"]["deadline_at"] - time.time()
    due = "acknowledged" if ev.get("acknowledged_by") else (f"due in {left / 60:.0f} min" if left > 0 else f"overdue {-left / 60:.0f} min")
    where = "/".join(p for p in (ev.get("town"), ev.get("village"), ev.get("grid_id")) if p)
    stamp = time.strftime("%H:%M:%S", time.localtime(ev["updated_at"]))
    subject = ev.get("camera_id") or ",".join(ev.get("sensor_ids") or []) or "-"
    return (f"{stamp} {ev['action']:<12} {ev['severity']:<8} {ev['catalog_code']} {ev['title_zh']} "
            f"[{where}] {subject} → {ev['routing']['unit']} / {ev['routing']['department']} ({due}) {ev['event_id']}")


async def _tail(last: int, follow: bool, as_json: bool, rule: str | None, town: str | None) -> None:
    from aiokafka import AIOKafkaConsumer

    from pipeline.security import kafka_client_options, start_kafka_client
    from pipeline.settings import get_settings

    settings = get_settings()
    topic = settings.topic("governance-events")
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
    await start_kafka_client(consumer, settings)
    try:
        if topic not in await consumer.topics():  # checked first: subscribing would auto-create it
            raise click.ClickException(f"topic {topic} does not exist yet (is a worker running?)")
        consumer.subscribe([topic])  # no group: every partition is assigned to this reader
        deadline = time.monotonic() + 10.0
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        backlog: collections.deque[dict] = collections.deque(maxlen=last)

        def keep(ev: dict) -> bool:
            return (rule is None or ev["rule"] == rule) and (town is None or ev.get("town") == town)

        def show(ev: dict) -> None:
            click.echo(json.dumps(ev, ensure_ascii=False) if as_json else _line(ev))

        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                for msg in msgs:
                    try:
                        ev = json.loads(msg.value)
                    except (TypeError, ValueError):
                        continue
                    if not keep(ev):
                        continue
                    (show(ev) if caught_up else backlog.append(ev))
            if not caught_up and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                caught_up = True
                for ev in backlog:
                    show(ev)
                if not follow:
                    return
    finally:
        await consumer.stop()


@events.command("tail")
@click.option("-n", "--last", default=20, show_default=True, help="Events shown from the backlog.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--type", "rule", type=click.Choice(["crowding", "fire", "sensor_alarm", "camera_offline"]), help="Only this rule.")
@click.option("--town", help="Only events in this town.")
def tail(last: int, follow: bool, as_json: bool, rule: str | None, town: str | None) -> None:
    """Print the latest events (and follow new ones).

    \b
    Example:
      guanjia events tail -n 50 --type fire --json
    """
    try:
        asyncio.run(_tail(last, follow, as_json, rule, town))
    except KeyboardInterrupt:
        pass


@events.command("ack")
@click.argument("event_id")
@click.option("--by", required=True, help="Who acknowledges (unit or person).")
@click.option("--note", default="", help="Free text.")
def ack(event_id: str, by: str, note: str) -> None:
    """Acknowledge an event so that it does not escalate.

    \b
    Example:
      guanjia events ack 3f0c…-uuid --by "Humen 值班员" --note "unit on site"
    """
    from aiokafka import AIOKafkaProducer

    from pipeline.records import Ack
    from pipeline.security import kafka_client_options, start_kafka_client
    from pipeline.settings import get_settings

    settings = get_settings()

    async def send() -> None:
        producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
        await start_kafka_client(producer, settings)
        try:
            record = Ack(event_id=event_id, by=by, time=time.time(), note=note)
            await producer.send_and_wait(settings.topic("event-acks"), record.to_json(), key=event_id.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    click.echo(f"acknowledged {event_id} by {by}", err=True)
    sys.exit(0)
