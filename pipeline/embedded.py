"""The embedded runner: the rule engine over in-process state, for the demo and tests (no Kafka).

Inputs go through the same partitioned states as in the Faust app: camera → grid → desk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from detectors.records import Detection
from pipeline.catalog import CatalogIndex, load_catalog
from pipeline.config.models import ResolvedCamera
from pipeline.evidence import EvidenceStore, write_snapshot
from pipeline.records import Ack, CameraHealth, FireSignal, GovernanceEvent, SensorReading
from pipeline.rules.engine import RuleEngine
from pipeline.rules.settings import RuleSettings

log = logging.getLogger(__name__)


class EmbeddedRunner:
    """``feed(record) -> events`` and ``tick(now) -> events``; state lives in dicts on this object."""

    def __init__(self, cameras: Iterable[ResolvedCamera], catalog: CatalogIndex | None = None,
                 defaults: RuleSettings | None = None, evidence: EvidenceStore | None = None):
        self.engine = RuleEngine(cameras, catalog or load_catalog(), defaults)
        self.evidence = evidence
        self.cameras: dict[str, dict] = {}
        self.grids: dict[str, dict] = {}
        self.health: dict[str, dict] = {}
        self.desk: dict[str, dict] = {}

    def feed(self, record: Detection | SensorReading | CameraHealth | Ack, image: np.ndarray | None = None) -> list[GovernanceEvent]:
        """Apply one input; with ``image`` (the analysed frame) events from it get an evidence snapshot."""
        if isinstance(record, Detection):
            state, drafts, signals = self.engine.on_detection(self.cameras.get(record.camera_id, {}), record)
            self.cameras[record.camera_id] = state
            if image is not None and self.evidence is not None and (drafts or any(s.on for s in signals)):
                self._snapshot(image, record)
            for signal in signals:
                drafts += self._grid(signal)
            return self._publish(drafts)
        if isinstance(record, SensorReading):
            return self._publish(self._grid(record))
        if isinstance(record, CameraHealth):
            state, drafts = self.engine.on_health(self.health.get(record.camera_id, {}), record)
            self.health[record.camera_id] = state
            camera, closed, signals = self.engine.on_camera_health(self.cameras.get(record.camera_id, {}), record)
            if camera:
                self.cameras[record.camera_id] = camera
            for signal in signals:
                closed += self._grid(signal)
            return self._publish(drafts + closed)
        if isinstance(record, Ack):
            state, events = self.engine.on_ack(self.desk.get(record.event_id, {}), record)
            self.desk[record.event_id] = state
            return events
        raise TypeError(f"cannot feed {type(record).__name__}")

    def tick(self, now: float) -> list[GovernanceEvent]:
        """Timers: silent/offline cameras and deadlines passed unacknowledged (escalation)."""
        drafts: list[GovernanceEvent] = []
        for state in self.health.values():
            state, out = self.engine.check_offline(state, now)
            drafts += out
        events = self._publish(drafts)
        for eid in list(self.desk):
            state, out = self.engine.on_tick(self.desk[eid], now)
            if state is None:
                del self.desk[eid]
            else:
                self.desk[eid] = state
            events += out
        return events

    def _grid(self, item: FireSignal | SensorReading) -> list[GovernanceEvent]:
        state, drafts = self.engine.on_grid_input(self.grids.get(item.grid_id, {}), item)
        self.grids[item.grid_id] = state
        return drafts

    def _publish(self, drafts: Sequence[GovernanceEvent]) -> list[GovernanceEvent]:
        events: list[GovernanceEvent] = []
        for draft in drafts:
            state, out = self.engine.on_draft(self.desk.get(draft.event_id, {}), draft)
            self.desk[draft.event_id] = state
            events += out
        return events

    def _snapshot(self, image: np.ndarray, det: Detection) -> None:
        cam = self.engine.cameras.get(det.camera_id)
        write_snapshot(self.evidence, image, det, cam.zones if cam else ())
