"""``guanjia sensors``: IoT sensor readings onto guanjia.sensor-readings.v1."""

from __future__ import annotations

import asyncio
import csv
import math
import sys
import time
from pathlib import Path

import click
from pydantic import ValidationError

from pipeline.records import SensorReading

COLUMNS = ("sensor_id", "kind", "time", "value", "unit", "alarm", "grid_id", "village", "town", "lat", "lon")


def read_csv(path: Path) -> list[SensorReading]:
    """Readings from a CSV (header: sensor_id,kind,time,value[,unit,alarm,grid_id,village,town,lat,lon]).

    Raises click.ClickException listing every bad row as ``file.csv:ROW: column: message``.
    """
    readings, errors = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
        if unknown:
            raise click.ClickException(f"{path}:1: unknown column(s) {unknown}; use {list(COLUMNS)}")
        for row_no, row in enumerate(reader, start=2):
            data = {k: v for k, v in row.items() if v not in (None, "")}
            if "alarm" in data:
                data["alarm"] = data["alarm"].strip().lower() in {"1", "true", "yes"}
            try:
                readings.append(SensorReading.model_validate(data))
            except ValidationError as exc:
                for err in exc.errors():
                    col = ".".join(str(p) for p in err["loc"]) or "(row)"
                    errors.append(f"{path}:{row_no}: {col}: {err['msg']}")
    if errors:
        raise click.ClickException("\n".join(errors))
    return sorted(readings, key=lambda r: r.time)


def _finite_speed(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"{value} is not a speed: give 0 (all at once) or a positive factor")
    return value


@click.group()
def sensors() -> None:
    """Sensor readings (smoke, temperature, gas, people counter, water level).

    \b
    Example:
      guanjia sensors replay configs/sensors-demo.csv --speed 10
    """


@sensors.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--speed", default=1.0, show_default=True, callback=_finite_speed,
              help="Replay speed (×real time); 0 sends at once.")
@click.option("--keep-times", is_flag=True,
              help="Send the CSV's times as they are (default: each reading is stamped with the time it is sent; "
                   "with --speed 0, the CSV's spacing is kept and the last reading is stamped now).")
def replay(file: Path, speed: float, keep_times: bool) -> None:
    """Send a CSV of readings to Kafka (key: sensor_id), paced by their times.

    A reading's time is when it is sent, never in the future, so sensor and camera times agree in the
    events worker's fusion window at any speed.

    \b
    Example:
      guanjia sensors replay configs/sensors-demo.csv --speed 10
    """
    from aiokafka import AIOKafkaProducer

    from pipeline.security import kafka_client_options, start_kafka_client
    from pipeline.settings import get_settings

    readings = read_csv(file)
    if not readings:
        raise click.ClickException(f"{file}: no readings")
    settings = get_settings()
    topic = settings.topic("sensor-readings")

    async def send() -> tuple[int, BaseException | None]:
        """Send every reading and wait for the broker's answers; (how many failed, the first error)."""
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=5)
        await start_kafka_client(producer, settings)
        deliveries: list[asyncio.Future] = []
        errors: list[BaseException] = []
        try:
            first, start = readings[0].time, time.time()
            span = readings[-1].time - first
            for reading in readings:
                offset = reading.time - first
                if speed > 0:
                    await asyncio.sleep(max(0.0, start + offset / speed - time.time()))
                if not keep_times:
                    stamped = start + offset / speed if speed > 0 else start - span + offset
                    reading = reading.model_copy(update={"time": stamped})
                try:
                    deliveries.append(await producer.send(topic, reading.to_json(), key=reading.sensor_id.encode()))
                except KafkaError as exc:  # not even queued: too large, or the buffer stayed full (broker away)
                    errors.append(exc)
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
            errors += [o for o in outcomes if isinstance(o, BaseException)]
        finally:
            await producer.stop()
        return len(errors), (errors[0] if errors else None)

    failed, error = asyncio.run(send())
    if failed:
        raise click.ClickException(f"{failed} of {len(readings)} readings not delivered to {topic} "
                                   f"(first: {type(error).__name__}: {error}); {len(readings) - failed} sent")
    click.echo(f"sent {len(readings)} readings to {topic}", err=True)
    sys.exit(0)
