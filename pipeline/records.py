"""Records the pipeline publishes: sensor readings, governance events, camera health, dead letters, acks.

Every record is small, versioned (``schema``), JSON-serialisable and rejects unknown keys. The
detection record lives in :mod:`detectors.records`.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)  # NaN/inf: invalid

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str):
        return cls.model_validate_json(data)


class SensorKind(str, Enum):
    """What an IoT sensor measures."""

    smoke = "smoke"
    temperature = "temperature"
    gas = "gas"
    people_counter = "people_counter"
    water_level = "water_level"


FIRE_SENSOR_KINDS = frozenset({SensorKind.smoke, SensorKind.temperature})


class SensorReading(_Record):
    """One reading of one IoT sensor (key on ``guanjia.sensor-readings.v1``: sensor_id)."""

    schema_: Literal["guanjia.sensor-reading.v1"] = Field("guanjia.sensor-reading.v1", alias="schema")
    sensor_id: str = Field(..., min_length=1, description="Unique sensor id.")
    kind: SensorKind = Field(..., description="smoke, temperature, gas, people_counter or water_level.")
    time: float = Field(..., description="Measurement time, seconds since the epoch (event time).")
    value: float = Field(..., description="Measured value in `unit` (smoke: obscuration %/m or 0/1).")
    unit: str = Field("", description="Unit of `value`, e.g. °C, %LEL, m, people.")
    alarm: bool = Field(False, description="The device's own alarm flag.")
    grid_id: str = Field(..., min_length=1, description="Grid cell (网格) the sensor is in.")
    village: str | None = Field(None, description="Village/community (村居).")
    town: str | None = Field(None, description="Town/street (镇街).")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class Severity(str, Enum):
    """Event severity, lowest first."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    def raised(self, steps: int = 1) -> Severity:
        order = list(Severity)
        return order[min(order.index(self) + steps, len(order) - 1)]


class EventAction(str, Enum):
    """What this revision of an event says happened."""

    opened = "opened"
    updated = "updated"
    closed = "closed"
    escalated = "escalated"
    acknowledged = "acknowledged"


class Level(str, Enum):
    """Administrative levels an event is routed through, lowest first."""

    grid = "grid"
    village = "village"
    town = "town"
    city = "city"


class Routing(_Record):
    """Who handles the event now, by when."""

    level: Level = Field(..., description="Level currently responsible.")
    unit: str = Field(..., description="Handling unit at that level, e.g. 'town:Humen 综治中心'.")
    department: str = Field(..., description="Responsible department for the matter.")
    deadline_at: float = Field(..., description="Acknowledge before this time (seconds since the epoch) or it escalates.")
    escalations: int = Field(0, ge=0, description="Times escalated so far.")


class GovernanceEvent(_Record):
    """One revision of a governance event (key on ``guanjia.governance-events.v1``: event_id).

    ``event_id`` is derived from rule, subject and opening event time, so re-processing the same
    input never makes a second event; ``(event_id, revision)`` identifies one message.
    """

    schema_: Literal["guanjia.governance-event.v1"] = Field("guanjia.governance-event.v1", alias="schema")
    event_id: str = Field(..., description="Deterministic id (uuid5 of rule, subject, opening time).")
    revision: int = Field(..., ge=0, description="0 when opened, +1 per later message.")
    action: EventAction
    status: Literal["open", "closed"]
    rule: Literal["crowding", "fire", "sensor_alarm", "camera_offline"]
    catalog_code: str = Field(..., description="Catalog item code, e.g. 01.01.01.01.")
    title_zh: str
    title_en: str
    severity: Severity
    confidence: float = Field(..., ge=0, le=1)
    camera_id: str | None = None
    zone: str | None = None
    sensor_ids: list[str] = Field(default_factory=list)
    grid_id: str | None = None
    village: str | None = None
    town: str | None = None
    lat: float | None = None
    lon: float | None = None
    started_at: float = Field(..., description="Event time the condition began.")
    updated_at: float = Field(..., description="Event time of the input that produced this revision.")
    ended_at: float | None = None
    duration_s: float = Field(0.0, ge=0)
    value: float = Field(0.0, description="Current level, by rule: people or people/m² (crowding), the video's P(fire), 0 when only sensors raised it (fire), the reading (sensor alarm), seconds since the last frame (camera offline).")
    peak: float = Field(0.0, description="Highest level since opened.")
    fused: bool = Field(False, description="Video and sensor evidence agree (one fused event).")
    sources: list[str] = Field(default_factory=list, description="Inputs that contributed, e.g. camera:c1, sensor:s9.")
    handling_requirement: str = ""
    legal_basis: str = ""
    routing: Routing
    acknowledged_by: str | None = None
    evidence_key: str | None = Field(None, description="Key of the annotated snapshot (folder path or Redis key).")


class CameraHealth(_Record):
    """A camera's health report (key on ``guanjia.camera-health.v1``: camera_id)."""

    schema_: Literal["guanjia.camera-health.v1"] = Field("guanjia.camera-health.v1", alias="schema")
    camera_id: str = Field(..., min_length=1)
    time: float = Field(..., description="Report time, seconds since the epoch.")
    state: Literal["connecting", "streaming", "backoff", "error", "stopped"] = Field(..., description="Ingest state.")
    last_frame_time: float | None = None
    reason: str | None = Field(None, description="Last error class or reason (never a URL with credentials).")
    grid_id: str | None = None
    final: bool = Field(False, description="With `stopped`: the camera is not coming back (its file ended, it is outside "
                                           "its schedule, or it was removed from the fleet), so what it had open closes. "
                                           "A restart, a worker shutdown or a move to another worker is not final.")


class DeadLetter(_Record):
    """A message that could not be processed (``guanjia.dead-letter.v1``, key: source topic)."""

    schema_: Literal["guanjia.dead-letter.v1"] = Field("guanjia.dead-letter.v1", alias="schema")
    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="The message key: its first 200 bytes, \"…\" marking a longer one.")
    reason: Literal["too_large", "not_json", "invalid", "unknown_schema", "processing_error"]
    detail: str = Field(..., description="One line: what was wrong.")
    payload_head: str = Field("", description="The first bytes of the payload (for triage).")
    size: int = Field(..., ge=0)
    time: float


class Ack(_Record):
    """An acknowledgement of an event (``guanjia.event-acks.v1``, key: event_id)."""

    schema_: Literal["guanjia.event-ack.v1"] = Field("guanjia.event-ack.v1", alias="schema")
    event_id: str
    by: str = Field(..., min_length=1, description="Who acknowledged (unit or person).")
    time: float
    note: str = ""


class FireSignal(_Record):
    """Internal: a camera's fire state changed (``guanjia.grid-signals.v1``, key: grid_id) — fused per grid."""

    schema_: Literal["guanjia.fire-signal.v1"] = Field("guanjia.fire-signal.v1", alias="schema")
    camera_id: str
    grid_id: str
    village: str | None = None
    town: str | None = None
    lat: float | None = None
    lon: float | None = None
    time: float = Field(..., description="Event time of the frame that changed the state.")
    on: bool
    score: float = Field(..., ge=0, le=1, description="Peak P(fire) while on.")
    started_at: float
    evidence_key: str | None = None


class DeskTick(_Record):
    """Internal: ask the event desk to check deadlines of one event (``guanjia.event-changes.v1``, key: event_id)."""

    schema_: Literal["guanjia.desk-tick.v1"] = Field("guanjia.desk-tick.v1", alias="schema")
    event_id: str
    now: float
