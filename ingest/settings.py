"""Source and sampling settings, consumed by ingest and composed into the camera-group config."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base for every settings model: unknown keys are rejected, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DecodeMode(str, Enum):
    """How much of a stream is decoded."""

    keyframes = "keyframes"
    interval = "interval"
    all = "all"


class ReconnectPolicy(StrictModel):
    """Backoff and watchdog for one camera."""

    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay; doubles per failure (full jitter).")
    backoff_cap_s: float = Field(30.0, gt=0, description="Upper bound of the retry delay.")
    stall_timeout_s: float = Field(15.0, gt=0, description="No frame for this long while streaming triggers a reconnect.")

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> ReconnectPolicy:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        return self


class SourceSettings(StrictModel):
    """How a camera's stream is opened and read."""

    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport; TCP survives lossy links and NAT.")
    open_timeout_s: float = Field(10.0, gt=0, description="Give up opening a stream after this long.")
    read_timeout_s: float = Field(5.0, gt=0, description="Socket read timeout; a hung server raises after about twice this.")
    loop: bool = Field(False, description="Files only: restart at end of file (demos and tests).")
    realtime: bool = Field(False, description="Files only: pace reading at the stream's frame rate.")
    backpressure: bool = Field(False, description="Files only: wait until the previous sampled frame is taken before handing out the next, so every sampled frame is analysed (demos, tests, batch analysis) instead of latest-frame-wins.")
    probe_size: int = Field(500_000, ge=32, description="Bytes probed on open (smaller opens RTSP faster).")
    analyze_duration_s: float = Field(0.5, gt=0, description="Seconds of stream analysed on open.")
