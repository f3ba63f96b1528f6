"""JSON Schema files for every topic's records, generated from the pydantic models.

Regenerate with ``python -m pipeline.schemas`` (writes docs/schemas/*.json); a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

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
from pipeline.settings import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "docs" / "schemas"

# file stem → (model, topic short name)
RECORDS: dict[str, tuple[type[BaseModel], str]] = {
    "detection": (Detection, "detections"),
    "sensor-reading": (SensorReading, "sensor-readings"),
    "governance-event": (GovernanceEvent, "governance-events"),
    "camera-health": (CameraHealth, "camera-health"),
    "dead-letter": (DeadLetter, "dead-letter"),
    "event-ack": (Ack, "event-acks"),
    "fire-signal": (FireSignal, "grid-signals"),
    "desk-tick": (DeskTick, "event-changes"),
}


def schema_for(stem: str) -> dict:
    model, topic = RECORDS[stem]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://guanjia.example/schemas/{stem}.json",
        "x-topic": f"guanjia.{topic}.v1",
        **schema,
    }


def render(stem: str) -> str:
    return json.dumps(schema_for(stem), ensure_ascii=False, indent=2) + "\n"


def main(out_dir: Path = SCHEMA_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem in RECORDS:
        (out_dir / f"{stem}.json").write_text(render(stem), encoding="utf-8")
        print(out_dir / f"{stem}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
