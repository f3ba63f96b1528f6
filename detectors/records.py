"""The detection record: what the detectors publish on ``guanjia.detections.v1``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DETECTION_SCHEMA = "guanjia.detection.v1"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN/inf: invalid, never a time or count


class Box(_Record):
    """A person box in original-image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = Field(..., ge=0, le=1)


class ZoneCount(_Record):
    """People in one zone (the whole frame is the zone ``"*"``)."""

    zone: str
    count: float = Field(..., ge=0, description="People counted (a float: density maps give fractional counts).")
    density_per_m2: float | None = Field(None, ge=0)


class FireResult(_Record):
    score: float = Field(..., ge=0, le=1, description="P(fire) for this frame.")
    confirmed: bool = Field(False, description="k of the last n frames at or above threshold.")
    region: tuple[float, float, float, float] | None = Field(None, description="x1, y1, x2, y2 in pixels, when the estimator localises.")


class Detection(_Record):
    """One analysed frame of one camera."""

    schema_: Literal["guanjia.detection.v1"] = Field(DETECTION_SCHEMA, alias="schema")
    camera_id: str
    seq: int = Field(..., ge=0)
    capture_time: float = Field(..., description="Seconds since the epoch (event time).")
    frame_width: int = Field(..., gt=0)
    frame_height: int = Field(..., gt=0)
    grid_id: str | None = None
    crowd_estimator: Literal["boxes", "density"] | None = None
    zones: list[ZoneCount] = Field(default_factory=list)
    boxes: list[Box] = Field(default_factory=list)
    fire: FireResult | None = None
    models: dict[str, str] = Field(default_factory=dict, description="Detector → model name@sha256-prefix.")
    latency_ms: float = Field(0.0, ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Detection:
        return cls.model_validate_json(data)
