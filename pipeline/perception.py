"""The perception loop shared by ``guanjia worker ingest`` and ``guanjia demo``.

Resolved cameras → ingest sources and detector set-ups; then ``pool.take()`` → ``engine.process()``
→ ``on_detection(detection, frame)``. Cameras outside their ``schedule`` are not pulled;
``enabled: false`` cameras are never opened. Models are loaded (and sha256-checked) before any
stream is opened, so a missing model stops start-up with the registry's one-line ``ModelError``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

from detectors.engine import CameraDetectors, DetectorEngine
from detectors.plugins import PluginError
from detectors.records import Detection
from detectors.registry import ModelError, ModelRegistry
from detectors.runtime import Runtime
from detectors.settings import RuntimeSettings
from ingest.frame import Frame
from ingest.health import CameraHealth as IngestHealth
from ingest.health import CameraState
from ingest.pool import IngestPool
from ingest.source import CameraSource
from pipeline.config.models import ResolvedCamera, Schedule
from pipeline.metrics import Metrics
from pipeline.records import CameraHealth

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FINISHED = (CameraState.ended, CameraState.error)
OnDetection = Callable[[Detection, Frame], None]


def in_schedule(schedule: Schedule | None, when: float) -> bool:
    """Whether epoch time ``when`` is inside the camera's analysis window (always, without one).

    A window whose end is before its start runs overnight; its ``days`` are the days it starts on.
    """
    if schedule is None:
        return True
    local = dt.datetime.fromtimestamp(when, ZoneInfo(schedule.timezone))
    minute = local.hour * 60 + local.minute
    start = int(schedule.start[:2]) * 60 + int(schedule.start[3:])
    end = int(schedule.end[:2]) * 60 + int(schedule.end[3:])
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    if start <= end:
        return today in schedule.days and start <= minute < end
    return (today in schedule.days and minute >= start) or (yesterday in schedule.days and minute < end)


def camera_source(cam: ResolvedCamera, backpressure: bool = False) -> CameraSource:
    """The ingest source of a camera; ``backpressure`` makes file sources hand out every sampled frame."""
    s = cam.settings
    source = s.source.model_copy(update={"backpressure": True}) if backpressure else s.source
    return CameraSource(cam.id, cam.url, source, s.reconnect, s.analysis_interval_s, s.decode_mode)


def camera_detectors(cam: ResolvedCamera) -> CameraDetectors:
    """The detectors' per-camera set-up: enabled detectors, settings, zones, ignore masks, grid cell."""
    s = cam.settings
    return CameraDetectors(
        camera_id=cam.id,
        detectors=frozenset(s.detectors),
        crowd=s.crowd,
        fire=s.fire,
        zones=tuple(cam.zones),
        ignore=tuple(tuple(tuple(p) for p in mask) for mask in cam.ignore_masks),
        grid_id=cam.grid,
    )


def crosses_threshold(cam: ResolvedCamera, det: Detection) -> bool:
    """Whether a frame may open or update an event: a zone at or above its crowding threshold (people,
    or people/m² when the zone has an area) or P(fire) at or above the fire threshold.

    The ingest worker stores evidence snapshots for these frames only; the rule engine (in another
    process) names them by the same key, so they never need to coordinate.
    """
    rules = cam.settings.rules
    if det.fire is not None and det.fire.score >= rules.fire.threshold:
        return True
    zones = {z.name: z for z in cam.zones}
    for zc in det.zones:
        cfg = zones.get(zc.zone)
        threshold = cfg.crowd_threshold if cfg and cfg.crowd_threshold is not None else rules.crowding.threshold
        level = zc.density_per_m2 if cfg and cfg.area_m2 and zc.density_per_m2 is not None else zc.count
        if level >= threshold:
            return True
    return False


def health_record(health: IngestHealth, grid_id: str | None = None) -> CameraHealth:
    """Ingest's health snapshot as the ``guanjia.camera-health.v1`` record the events worker reads."""
    state = health.state.value if health.state is not CameraState.ended else "stopped"
    if health.state is CameraState.ended:
        reason = "end of file"
    elif health.last_error_class and health.state is not CameraState.streaming:
        reason = f"{health.last_error_class}: {health.last_error}" if health.last_error else health.last_error_class
    else:
        reason = None
    return CameraHealth(camera_id=health.camera_id, time=health.updated_at or time.time(), state=state,
                        last_frame_time=health.last_frame_time, reason=reason[:300] if reason else None,
                        grid_id=grid_id, final=health.state is CameraState.ended)


class Perception:
    """Ingest pool + detector engine over the enabled cameras of a configuration.

    >>> perception = Perception(city.cameras)          # ModelError here if a model is missing
    >>> with perception:
    ...     while not stop.is_set():
    ...         perception.step(lambda det, frame: producer.send(det.to_json()))
    """

    def __init__(self, cameras: Iterable[ResolvedCamera], *, models_dir: Path | str | None = None,
                 runtime: RuntimeSettings | None = None, metrics: Metrics | None = None,
                 backpressure: bool = False, threads: int | None = None,
                 on_health: Callable[[list[IngestHealth]], object] | None = None,
                 health_interval_s: float = 5.0, schedule_check_s: float = 30.0, allow_empty: bool = False):
        self.cameras: dict[str, ResolvedCamera] = {c.id: c for c in cameras if c.enabled}
        if not self.cameras and not allow_empty:
            raise ValueError("no enabled cameras in the configuration")
        first = next(iter(self.cameras.values()), None)
        self.runtime = Runtime(runtime or (first.settings.runtime if first else RuntimeSettings()))
        self.engine = DetectorEngine(ModelRegistry.load(models_dir=models_dir), self.runtime)
        for cam in self.cameras.values():
            self.engine.configure(camera_detectors(cam))
        self.metrics = metrics
        self.backpressure = backpressure
        self.pool = IngestPool([], threads=threads, on_health=on_health, health_interval_s=health_interval_s)
        self._schedule_check_s = schedule_check_s
        self._next_schedule_check = 0.0
        self._pulled: set[str] = set()
        self._lock = threading.Lock()
        self._changes: list[tuple[str, ResolvedCamera | str]] = []
        self._last_words: list[CameraHealth] = []  # "stopped" reports of cameras no longer pulled, sent once
        self.analysed = 0

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> Perception:
        self.pool.start()
        self.sync_schedule(time.time())
        waiting = len(self.cameras) - len(self._pulled)
        if waiting:
            log.warning("%d of %d cameras are outside their schedule now and are not pulled until their window opens",
                        waiting, len(self.cameras))
        return self

    def stop(self) -> None:
        """Stop pulling every camera, leaving each a "stopped" report (reason "worker stopped") for the
        events worker, then stop the pool."""
        with self._lock:
            for camera_id in sorted(self._pulled):
                self._unpull(camera_id, "worker stopped")
        self.pool.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def sync_schedule(self, now: float) -> None:
        """Pull exactly the cameras whose schedule includes ``now``."""
        with self._lock:
            self._sync_schedule(now)

    def _sync_schedule(self, now: float) -> None:
        self._next_schedule_check = time.monotonic() + self._schedule_check_s
        leaving = {item for kind, item in self._changes if kind == "remove"}  # dropped already, forgotten next step
        for cam in self.cameras.values():
            active = in_schedule(cam.schedule, now)
            if active and cam.id not in self._pulled and cam.id not in leaving:
                self.pool.add_camera(camera_source(cam, self.backpressure))
                self._pulled.add(cam.id)
            elif not active and cam.id in self._pulled:
                log.info("camera %s: outside its schedule %s–%s, not pulled", cam.id, cam.schedule.start, cam.schedule.end)
                self._unpull(cam.id, "outside its schedule", final=True)

    # ---- cameras assigned while running (guanjia worker ingest --assign kafka) ---------------
    def add_camera(self, cam: ResolvedCamera) -> None:
        """Pull a camera, or restart a known one with its new settings; any thread, applied by the next step."""
        with self._lock:
            self._changes.append(("add", cam))

    def remove_camera(self, camera_id: str) -> None:
        """Stop pulling a camera removed from the fleet now (any thread); the detectors forget it at the next step."""
        self._drop(camera_id, "removed", final=True)

    def release_camera(self, camera_id: str) -> None:
        """Stop pulling a camera another worker takes over (a rebalance); its open events stay open."""
        self._drop(camera_id, "released to another worker", final=False)

    def _drop(self, camera_id: str, reason: str, *, final: bool) -> None:
        with self._lock:
            if camera_id in self._pulled:
                self._unpull(camera_id, reason, final=final)
            self._changes.append(("remove", camera_id))

    def _unpull(self, camera_id: str, reason: str, *, final: bool = False) -> None:
        """Stop pulling (under the lock) and leave a "stopped" report, so the events worker expects no more
        frames; ``final``: the camera is not coming back, so the events worker closes what it had open."""
        self.pool.remove_camera(camera_id)
        self._pulled.discard(camera_id)
        cam = self.cameras.get(camera_id)
        self._last_words.append(CameraHealth(camera_id=camera_id, time=time.time(), state="stopped", reason=reason,
                                             grid_id=cam.grid if cam else None, final=final))

    def _apply_changes(self) -> bool:
        """Apply queued add/remove calls on the loop's thread (the engine is not shared); True if any."""
        with self._lock:
            changes, self._changes = self._changes, []
            for kind, item in changes:
                camera_id = item if isinstance(item, str) else item.id
                if camera_id in self._pulled:
                    self._unpull(camera_id, "removed" if kind == "remove" else "restarted with new settings")
                self.cameras.pop(camera_id, None)
                self.engine.remove(camera_id)
                if kind == "add" and item.enabled:
                    try:
                        self.engine.configure(camera_detectors(item))
                    except (ModelError, PluginError) as exc:  # their message names the camera
                        log.error("%s; not pulled", exc)
                        continue
                    except ValueError as exc:
                        log.error("camera %s: %s; not pulled", camera_id, exc)
                        continue
                    self.cameras[camera_id] = item
            if changes:
                self._sync_schedule(time.time())
        return bool(changes)

    # ---- the loop ------------------------------------------------------------------------
    def step(self, on_detection: OnDetection, timeout: float = 0.5) -> int:
        """Take the ready frames (one per camera, up to the runtime's max batch), detect, call back; the count."""
        self._apply_changes()
        if time.monotonic() >= self._next_schedule_check:
            self.sync_schedule(time.time())
        frames = self.pool.take(timeout=timeout, max_frames=self.runtime.settings.max_batch)
        if not frames:
            return 0
        detections = self.engine.process(frames)
        by_key = {(f.camera_id, f.seq): f for f in frames}
        if self.metrics is not None:
            self._observe(detections)
        for det in detections:
            on_detection(det, by_key[(det.camera_id, det.seq)])
        self.analysed += len(detections)
        return len(detections)

    def run(self, on_detection: OnDetection, stop: threading.Event, *, until_done: bool = False,
            max_seconds: float | None = None) -> None:
        """Call :meth:`step` until ``stop`` is set, ``max_seconds`` pass, or (``until_done``) every file has ended."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self.step(on_detection)
            if until_done and self.done():
                return

    def done(self) -> bool:
        """True when every pulled camera has finished (files ended or failed) and every frame was taken."""
        states = [h.state for h in self.pool.health()]
        return bool(states) and all(s in FINISHED for s in states) and not len(self.pool.board)

    def health(self) -> list[IngestHealth]:
        return self.pool.health()

    def health_records(self, snapshots: Sequence[IngestHealth] | None = None) -> list[CameraHealth]:
        """Health of the pulled cameras as ``guanjia.camera-health.v1`` records, after a "stopped" record
        (sent once) for each camera no longer pulled since the last call."""
        snaps = self.pool.health() if snapshots is None else snapshots
        with self._lock:
            last_words, self._last_words = self._last_words, []
            pulled = set(self._pulled)
        # a removed camera's reader may still be closing: its snapshot must not follow its "stopped"
        cameras = self.cameras  # read without the lock: look each camera up once (it may be removed meanwhile)
        return ([r for r in last_words if r.camera_id not in pulled]
                + [health_record(h, cam.grid if (cam := cameras.get(h.camera_id)) else None)
                   for h in snaps if h.camera_id in pulled])

    def _observe(self, detections: Sequence[Detection]) -> None:
        if not detections:
            return
        seconds = detections[0].latency_ms / 1000.0
        per_model: dict[str, int] = {}
        for det in detections:
            for model_id in det.models.values():
                name = model_id.split("@", 1)[0]
                per_model[name] = per_model.get(name, 0) + 1
        for name, n in per_model.items():
            self.metrics.inference_latency.labels(name).observe(seconds)
            self.metrics.batch_size.labels(name).observe(n)
        self.metrics.detections_produced.inc(len(detections))
