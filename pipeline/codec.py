"""Decode Kafka message values into records; anything unusable becomes a DeadLetter with a reason.

Detections, the hot input, first go through :func:`decode_detection`'s msgspec fast path, which
accepts a subset of what the pydantic model accepts (strict types, same constraints) and yields a
:class:`DetectionView` with the same attributes and values. Everything it refuses goes through the
pydantic model, so the record or the dead-letter reason and detail are the model's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta
from pydantic import BaseModel, ValidationError

from detectors.records import Detection
from pipeline.records import (
    Ack,
    CameraHealth,
    DeadLetter,
    DeskTick,
    FireSignal,
    GovernanceEvent,
    SensorReading,
)

MAX_MESSAGE_BYTES = 256 * 1024

SCHEMAS: dict[str, type[BaseModel]] = {
    "guanjia.detection.v1": Detection,
    "guanjia.sensor-reading.v1": SensorReading,
    "guanjia.camera-health.v1": CameraHealth,
    "guanjia.governance-event.v1": GovernanceEvent,
    "guanjia.event-ack.v1": Ack,
    "guanjia.fire-signal.v1": FireSignal,
    "guanjia.desk-tick.v1": DeskTick,
}


Unit = Annotated[float, Meta(ge=0, le=1)]
NonNegative = Annotated[float, Meta(ge=0)]


class _View(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Read-only record decoded by msgspec; unknown keys refused, as the pydantic records do."""


class BoxView(_View):
    """:class:`detectors.records.Box`."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: Unit


class ZoneCountView(_View):
    """:class:`detectors.records.ZoneCount`."""

    zone: str
    count: NonNegative
    density_per_m2: NonNegative | None = None


class FireResultView(_View):
    """:class:`detectors.records.FireResult`."""

    score: Unit
    confirmed: bool = False
    region: tuple[float, float, float, float] | None = None


class DetectionView(_View):
    """:class:`detectors.records.Detection` as the rule engine reads it (same field names, types and limits)."""

    camera_id: str
    seq: Annotated[int, Meta(ge=0)]
    capture_time: float
    frame_width: Annotated[int, Meta(gt=0)]
    frame_height: Annotated[int, Meta(gt=0)]
    schema_: Literal["guanjia.detection.v1"] = msgspec.field(default="guanjia.detection.v1", name="schema")
    grid_id: str | None = None
    crowd_estimator: Literal["boxes", "density"] | None = None
    zones: list[ZoneCountView] = []
    boxes: list[BoxView] = []
    fire: FireResultView | None = None
    models: dict[str, str] = {}
    latency_ms: NonNegative = 0.0


_detection_view = msgspec.json.Decoder(DetectionView)


class DecodeError(ValueError):
    """Why a message cannot be used: ``reason`` is one of DeadLetter's reasons."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode(value: bytes | None, accept: tuple[type[BaseModel], ...], max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """The record in ``value`` (one of ``accept``) or DecodeError (too_large, not_json, unknown_schema, invalid)."""
    if value is None:
        raise DecodeError("invalid", "empty message (tombstone)")
    if len(value) > max_bytes:
        raise DecodeError("too_large", f"{len(value)} bytes > limit {max_bytes}")
    if len(accept) == 1:
        model = accept[0]
        try:
            return model.model_validate_json(value)
        except ValidationError as exc:
            if exc.errors()[0]["type"] != "json_invalid":
                raise DecodeError("invalid", _one_line(_first_error(exc))) from None
            raise DecodeError("not_json", _one_line(exc.errors()[0]["msg"])) from None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", _one_line(str(exc))) from None
    schema = obj.get("schema") if isinstance(obj, dict) else None
    model = SCHEMAS.get(schema) if isinstance(schema, str) else None
    if model is None or model not in accept:
        raise DecodeError("unknown_schema", f"schema {schema!r} is not one of {[m.__name__ for m in accept]}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError("invalid", _one_line(_first_error(exc))) from None


def decode_detection(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> DetectionView | Detection:
    """The detection in ``value``: a DetectionView from the fast path, else ``decode(value, (Detection,))``.

    msgspec refuses NaN/Infinity, out-of-range numbers, lax coercions ("5" for 5) and unknown keys, so
    what it accepts the model accepts with the same values; anything else gets the model's verdict.
    """
    if value is not None and len(value) <= max_bytes:
        try:
            return _detection_view.decode(value)
        except (msgspec.MsgspecError, ValueError):  # ValueError: invalid UTF-8
            pass
    return decode(value, (Detection,), max_bytes)


def not_ahead(decoder: Callable[[bytes | None], Any], time_of: Callable[[Any], float], limit_s: float,
              clock: Callable[[], float] = time.time,
              exempt: Callable[[Any], bool] | None = None) -> Callable[[bytes | None], Any]:
    """``decoder`` that also refuses (``invalid``) a record whose event time is more than ``limit_s`` ahead of ``clock``,
    unless ``exempt(record)``.

    The rules order a camera's or sensor's inputs by event time, so one input stamped in the future (a wrong
    clock) would make everything after it late and switch that source's rules off until the clock caught up.
    """

    def checked(value: bytes | None) -> Any:
        record = decoder(value)
        ahead = time_of(record) - clock()
        if ahead > limit_s and not (exempt is not None and exempt(record)):
            raise DecodeError("invalid", f"event time {ahead:.0f} s ahead of this worker's clock (limit {limit_s:g} s)")
        return record

    return checked


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


HEAD_BYTES = 200  # of a failed message's key and payload, kept in its dead letter for triage


def dead_letter(err: DecodeError | Exception, *, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None) -> DeadLetter:
    """A dead-letter record for a message that failed: the head of its key and payload kept for triage, never more,
    so a dead letter stays small whatever the message (a huge key must not make the dead letter too large to send)."""
    reason = err.reason if isinstance(err, DecodeError) else "processing_error"
    detail = err.detail if isinstance(err, DecodeError) else _one_line(f"{type(err).__name__}: {err}")
    return DeadLetter(
        topic=topic, partition=partition, offset=offset,
        key=_head(key) + ("…" if len(key) > HEAD_BYTES else "") if key is not None else None,
        reason=reason, detail=detail,
        payload_head=_head(value or b""),
        size=len(value or b""), time=time.time(),
    )


def _head(data: bytes) -> str:
    """The first HEAD_BYTES of ``data`` as text, undecodable bytes replaced."""
    return data[:HEAD_BYTES].decode("utf-8", "replace")
