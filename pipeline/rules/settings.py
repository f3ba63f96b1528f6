"""Rule thresholds, consumed by the rule engine and composed into the camera-group config."""

from __future__ import annotations

from pydantic import Field, model_validator

from ingest.settings import StrictModel
from pipeline.records import SensorKind


class CrowdingRule(StrictModel):
    """Crowding: a zone's level ≥ threshold for dwell_s opens; < clear_threshold for clear_s closes."""

    threshold: float = Field(20, gt=0, description="People in a zone (people/m² when the zone has area_m2) that open an event.")
    clear_threshold: float = Field(15, gt=0, description="Level under which the event may close (hysteresis); the close needs a level below it, so it must be above 0.")
    dwell_s: float = Field(30, ge=0, description="Seconds the level must stay at or above threshold.")
    clear_s: float = Field(60, ge=0, description="Seconds the level must stay under clear_threshold.")

    @model_validator(mode="after")
    def _clear_below_open(self) -> CrowdingRule:
        if self.clear_threshold > self.threshold:
            raise ValueError("clear_threshold must be <= threshold")
        return self


class FireRule(StrictModel):
    """Fire: P(fire) ≥ threshold in ≥ k of the last n analysed frames opens; n clean frames close."""

    threshold: float = Field(0.5, ge=0, le=1, description="P(fire) that counts a frame as fire.")
    k: int = Field(3, ge=1, description="Fire frames needed ...")
    n: int = Field(5, ge=1, description="... among the last n analysed frames.")
    clear_s: float = Field(120, ge=0, description="Seconds without a fire frame before the event closes.")

    @model_validator(mode="after")
    def _k_within_n(self) -> FireRule:
        if self.k > self.n:
            raise ValueError("k must be <= n")
        return self


class SensorRule(StrictModel):
    """IoT sensors: the device's alarm flag, or a value at or above a per-kind threshold, raises an alarm."""

    thresholds: dict[SensorKind, float] = Field(
        default_factory=lambda: {SensorKind.temperature: 70.0, SensorKind.gas: 25.0, SensorKind.water_level: 0.3},
        description="Kind → value that raises an alarm (°C, %LEL, m, people); kinds not listed rely on the alarm flag.",
    )
    confidence: float = Field(0.7, ge=0, le=1, description="Confidence of a sensor alarm on its own.")


class RuleSettings(StrictModel):
    """Event rules; every threshold can be overridden per group, camera and (crowding) zone."""

    crowding: CrowdingRule = Field(default_factory=CrowdingRule, description="Crowding rule.")
    fire: FireRule = Field(default_factory=FireRule, description="Fire rule.")
    fusion_window_s: float = Field(120, ge=0, description="A sensor alarm and a video fire signal in one grid cell within this many seconds fuse into one event. City-wide: set under defaults only.")
    offline_minutes: float = Field(10, gt=0, description="A camera offline this long raises an equipment-fault event.")
    sensors: SensorRule = Field(default_factory=SensorRule, description="Sensor alarm rule. City-wide: set under defaults only.")
    update_ratio: float = Field(1.2, gt=1, description="An open event is re-published when its peak grows by this factor (crowding: per camera; fire and sensor events: the defaults' value).")
    allowed_lateness_s: float = Field(30, ge=0, description="Out-of-order input up to this late is still applied.")
