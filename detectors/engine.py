"""The detector engine: a cross-camera batch of frames in, one :class:`Detection` per frame out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.base import CrowdEstimate, CrowdEstimator, FireScorer
from detectors.batching import MicroBatcher
from detectors.fire import FireConfirmer
from detectors.plugins import (
    CROWD_ESTIMATORS,
    PluginError,
    available,
    build_crowd_estimator,
    build_fire_scorer,
)
from detectors.records import Box, Detection, FireResult
from detectors.registry import ModelError, ModelRegistry
from detectors.runtime import Runtime
from detectors.settings import CrowdSettings, DetectorName, FireSettings, Point, Zone
from detectors.zones import ZoneCounter
from ingest.frame import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraDetectors:
    """What the engine needs to know about one camera (built by the pipeline from its config)."""

    camera_id: str
    detectors: frozenset[DetectorName] = frozenset({DetectorName.crowd, DetectorName.fire})
    crowd: CrowdSettings = field(default_factory=CrowdSettings)
    fire: FireSettings = field(default_factory=FireSettings)
    zones: tuple[Zone, ...] = ()
    ignore: tuple[tuple[Point, ...], ...] = ()  # relative polygons whose people are not counted
    grid_id: str | None = None


@dataclass
class _CameraState:
    setup: CameraDetectors
    counter: ZoneCounter
    confirmer: FireConfirmer


class DetectorEngine:
    """Runs the enabled detectors of many cameras over one batch; plugins and sessions are shared."""

    def __init__(self, registry: ModelRegistry, runtime: Runtime, cameras: Iterable[CameraDetectors] = ()):
        self.registry = registry
        self.runtime = runtime
        self._cameras: dict[str, _CameraState] = {}
        self._crowd: dict[tuple[str, str], CrowdEstimator] = {}
        self._fire: dict[tuple[str, str], FireScorer] = {}
        self._has_density = "density" in available(CROWD_ESTIMATORS)
        for camera in cameras:
            self.configure(camera)

    def configure(self, camera: CameraDetectors) -> None:
        """Add or replace a camera; its estimators are built (and models verified) now, not on the first frame.

        Raises :class:`ModelError` or :class:`PluginError` naming the camera; the engine is then unchanged.
        """
        if camera.crowd.estimator == "auto" and not self._has_density:
            log.warning("camera %s: crowd estimator auto needs the density plugin, which is not installed; "
                        "counting by boxes only", camera.camera_id)
        try:
            for name in self._crowd_names(camera.crowd) if DetectorName.crowd in camera.detectors else []:
                self._crowd_estimator(name, camera.crowd)
            if DetectorName.fire in camera.detectors:
                self._fire_scorer(camera.fire)
        except (ModelError, PluginError) as exc:
            raise type(exc)(f"camera {camera.camera_id}: {exc}") from exc
        self._cameras[camera.camera_id] = _CameraState(camera, ZoneCounter(camera.zones, camera.ignore), FireConfirmer(camera.fire))

    def remove(self, camera_id: str) -> None:
        self._cameras.pop(camera_id, None)

    @property
    def camera_ids(self) -> list[str]:
        return list(self._cameras)

    def process(self, frames: Sequence[Frame]) -> list[Detection]:
        """One detection per frame of a configured camera, in order; each model runs once per settings group."""
        start = time.perf_counter()
        frames = [f for f in frames if f.camera_id in self._cameras]
        states = [self._cameras[f.camera_id] for f in frames]
        crowd = self._run_crowd(frames, states)
        fire = self._run_fire(frames, states)
        latency_ms = (time.perf_counter() - start) * 1000.0
        return [self._record(f, st, crowd.get(i), fire.get(i), latency_ms) for i, (f, st) in enumerate(zip(frames, states))]

    def serve(self, batcher: MicroBatcher[Frame], publish: Callable[[Detection], None], stop: threading.Event,
              poll_s: float = 0.5) -> None:
        """Loop: take a micro-batch, detect, publish each record; returns when ``stop`` is set."""
        while not stop.is_set():
            batch = batcher.get_batch(timeout=poll_s)
            if batch:
                for detection in self.process(batch):
                    publish(detection)

    def _run_crowd(self, frames: Sequence[Frame], states: Sequence[_CameraState]) -> dict[int, tuple[str, str, CrowdEstimate]]:
        groups: dict[str, list[int]] = {}
        for i, st in enumerate(states):
            if DetectorName.crowd in st.setup.detectors:
                groups.setdefault(st.setup.crowd.model_dump_json(), []).append(i)
        out: dict[int, tuple[str, str, CrowdEstimate]] = {}
        for members in groups.values():
            settings = states[members[0]].setup.crowd
            names = self._crowd_names(settings)
            estimator = self._crowd_estimator(names[0], settings)
            for i, est in zip(members, estimator.estimate([frames[i].image for i in members])):
                out[i] = (names[0], estimator.model_id, est)
            if len(names) > 1:  # auto: dense scenes go to the density map
                dense = [i for i in members if len(out[i][2].boxes) > settings.auto_density_above]
                if dense:
                    name = names[1]
                    density = self._crowd_estimator(name, settings)
                    for i, est in zip(dense, density.estimate([frames[i].image for i in dense])):
                        out[i] = (name, density.model_id, est)
        return out

    def _run_fire(self, frames: Sequence[Frame], states: Sequence[_CameraState]) -> dict[int, tuple[str, float, tuple | None, bool]]:
        groups: dict[tuple[str, str], list[int]] = {}
        for i, st in enumerate(states):
            if DetectorName.fire in st.setup.detectors:
                groups.setdefault((st.setup.fire.scorer, st.setup.fire.model), []).append(i)
        out: dict[int, tuple[str, float, tuple | None, bool]] = {}
        for members in groups.values():
            scorer = self._fire_scorer(states[members[0]].setup.fire)
            for i, (score, region) in zip(members, scorer.score([frames[i].image for i in members])):
                out[i] = (scorer.model_id, score, region, states[i].confirmer.update(score))
        return out

    def _record(self, frame: Frame, state: _CameraState, crowd, fire, latency_ms: float) -> Detection:
        setup = state.setup
        models: dict[str, str] = {}
        zones, boxes, estimator = [], [], None
        if crowd is not None:
            estimator, models["crowd"], estimate = crowd
            zones, kept = state.counter.count(estimate, frame.height, frame.width)
            top = kept[np.argsort(-kept[:, 4], kind="stable")[: setup.crowd.top_k_boxes]] if len(kept) else kept
            boxes = [Box(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), score=float(min(1.0, b[4]))) for b in top]
        fire_result = None
        if fire is not None:
            models["fire"], score, region, confirmed = fire
            fire_result = FireResult(score=min(1.0, max(0.0, score)), confirmed=confirmed, region=region)
        return Detection(
            camera_id=frame.camera_id, seq=frame.seq, capture_time=frame.capture_time,
            frame_width=frame.width, frame_height=frame.height, grid_id=setup.grid_id,
            crowd_estimator=estimator, zones=zones, boxes=boxes, fire=fire_result, models=models,
            latency_ms=latency_ms,
        )

    def _crowd_names(self, settings: CrowdSettings) -> list[str]:
        """Estimators to run, in order; ``auto`` is boxes then density for the dense frames."""
        if settings.estimator != "auto":
            return [settings.estimator]
        return ["boxes", "density"] if self._has_density else ["boxes"]

    def _crowd_estimator(self, name: str, settings: CrowdSettings) -> CrowdEstimator:
        key = (name, settings.model_dump_json())
        if key not in self._crowd:
            self._crowd[key] = build_crowd_estimator(name, self.registry, settings, self.runtime)
        return self._crowd[key]

    def _fire_scorer(self, settings: FireSettings) -> FireScorer:
        key = (settings.scorer, settings.model)
        if key not in self._fire:
            self._fire[key] = build_fire_scorer(settings.scorer, self.registry, settings, self.runtime)
        return self._fire[key]
