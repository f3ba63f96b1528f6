"""The rule engine: pure functions of (state, input) -> (state, outputs), driven by event time.

State is partitioned the way Kafka partitions the inputs, and every state is a plain JSON dict:

* camera state (key camera id): crowding per zone and fire k-of-n → event drafts and fire signals; a
  final ``stopped`` health report (the camera is not coming back) closes what the camera had open;
* grid state (key grid id): fire signals + sensor readings → fused fire events and sensor alarms;
* health state (key camera id): camera health → equipment-fault events;
* desk state (key event id): drafts from the owners above + acks + deadline ticks → the public
  governance events, with revisions, routing and escalation.

The Faust app keeps these dicts in tables, the embedded runner in plain dicts; both call the same
methods. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from detectors.records import Detection
from pipeline.catalog import CatalogIndex
from pipeline.catalog.models import Item
from pipeline.codec import DetectionView
from pipeline.config.models import ResolvedCamera
from pipeline.evidence import snapshot_key
from pipeline.records import (
    FIRE_SENSOR_KINDS,
    Ack,
    CameraHealth,
    EventAction,
    FireSignal,
    GovernanceEvent,
    Level,
    Routing,
    SensorReading,
    Severity,
)
from pipeline.routing import LEVELS, Place, escalate, route
from pipeline.rules import crowding, fire
from pipeline.rules.settings import RuleSettings

EVENT_NAMESPACE = uuid.UUID("6f0b7c2e-54a1-4d3e-9a55-3a8f1c0e9d21")
CLOSED_RETENTION_S = 24 * 3600.0
MAX_CONTEXTS = 1 << 20  # cached camera contexts (configured cameras, plus unconfigured ones by grid), and zone rules


def event_id(rule: str, subject: str, started_at: float) -> str:
    """Deterministic id: the same rule, subject and opening time always give the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{rule}|{subject}|{started_at:.3f}"))


def _dump(event: GovernanceEvent) -> dict:
    return event.model_dump(mode="json", by_alias=True)


def _revise(event: dict, **changes) -> GovernanceEvent:
    return GovernanceEvent.model_validate({**event, **changes, "revision": event["revision"] + 1})


@dataclass(frozen=True, slots=True)
class CameraContext:
    """What the camera rules need about one camera, worked out once from the configuration."""

    rules: RuleSettings
    place: Place
    lat: float | None
    lon: float | None
    fire: fire.FireRuleParams


class RuleEngine:
    """Rules over the configured cameras and the catalog; holds configuration only, never state."""

    def __init__(self, cameras: Iterable[ResolvedCamera], catalog: CatalogIndex, defaults: RuleSettings | None = None):
        self.cameras = {cam.id: cam for cam in cameras}
        self.catalog = catalog
        self.defaults = defaults or RuleSettings()
        self._zone_rules: dict[tuple[str, str], tuple[crowding.ZoneRule, bool]] = {}
        self._contexts: dict[tuple[str, str | None], CameraContext] = {}

    # ---- configuration lookups -------------------------------------------------------------
    def rules_for(self, camera_id: str) -> RuleSettings:
        cam = self.cameras.get(camera_id)
        return cam.settings.rules if cam else self.defaults

    def _zone_rule(self, camera_id: str, zone: str) -> tuple[crowding.ZoneRule, bool]:
        """(rule, use_density) for one zone: zone thresholds override the camera's rules."""
        key = (camera_id, zone)
        if key not in self._zone_rules:
            rules = self.rules_for(camera_id)
            cam = self.cameras.get(camera_id)
            cfg = next((z for z in cam.zones if z.name == zone), None) if cam else None
            threshold = cfg.crowd_threshold if cfg and cfg.crowd_threshold is not None else rules.crowding.threshold
            clear = cfg.crowd_clear_threshold if cfg and cfg.crowd_clear_threshold is not None else rules.crowding.clear_threshold
            rule = crowding.ZoneRule(
                threshold=threshold,
                clear_threshold=min(clear, threshold),
                dwell_s=rules.crowding.dwell_s,
                clear_s=rules.crowding.clear_s,
                lateness_s=rules.allowed_lateness_s,
            )
            if len(self._zone_rules) >= MAX_CONTEXTS:
                self._zone_rules.clear()  # unconfigured cameras and zones with ever-new names must not grow it without bound
            self._zone_rules[key] = (rule, bool(cfg and cfg.area_m2))
        return self._zone_rules[key]

    def _camera_place(self, camera_id: str, grid_id: str | None) -> tuple[Place, float | None, float | None]:
        cam = self.cameras.get(camera_id)
        if cam:
            return Place(cam.grid, cam.village, cam.town), cam.lat, cam.lon
        return Place(grid_id or f"camera:{camera_id}"), None, None

    def _context(self, camera_id: str, grid_id: str | None) -> CameraContext:
        """The camera's rules and place (an unconfigured camera is placed by the grid its detections name)."""
        key = (camera_id, None if camera_id in self.cameras else grid_id)
        ctx = self._contexts.get(key)
        if ctx is None:
            rules = self.rules_for(camera_id)
            place, lat, lon = self._camera_place(camera_id, grid_id)
            fr = rules.fire
            ctx = CameraContext(rules, place, lat, lon, fire.FireRuleParams(fr.threshold, fr.k, fr.n, fr.clear_s,
                                                                             rules.allowed_lateness_s))
            if len(self._contexts) >= MAX_CONTEXTS:
                self._contexts.clear()  # unconfigured cameras with ever-new grid ids must not grow it without bound
            self._contexts[key] = ctx
        return ctx

    def _draft(self, *, rule: str, trigger: str, subject: str, started_at: float, t: float, place: Place,
               value: float, peak: float, confidence: float, severity: Severity | None = None,
               **fields) -> GovernanceEvent:
        item = self.catalog.for_trigger(trigger)
        return GovernanceEvent(
            event_id=event_id(rule, subject, started_at),
            revision=0,
            action=EventAction.opened,
            status="open",
            rule=rule,
            catalog_code=item.code,
            title_zh=item.name_zh,
            title_en=item.name_en,
            severity=severity or item.severity,
            confidence=min(max(confidence, 0.0), 1.0),
            grid_id=place.grid,
            village=place.village,
            town=place.town,
            started_at=started_at,
            updated_at=t,
            value=value,
            peak=peak,
            handling_requirement=item.requirement,
            legal_basis=item.legal_basis,
            routing=route(self.catalog, item, place, started_at),
            **fields,
        )

    # ---- camera partition: detections --------------------------------------------------------
    def on_detection(self, state: dict, det: Detection | DetectionView) -> tuple[dict, list[GovernanceEvent], list[FireSignal]]:
        """Crowding per zone and fire k-of-n for one analysed frame (the pydantic record or the codec's view)."""
        drafts: list[GovernanceEvent] = []
        signals: list[FireSignal] = []
        ctx = self._context(det.camera_id, det.grid_id)
        rules, place, lat, lon = ctx.rules, ctx.place, ctx.lat, ctx.lon
        t = det.capture_time
        if state.get("stopped_at") is not None and t <= state["stopped_at"]:
            return state, drafts, signals  # a frame from before the camera was stopped, analysed after it
        zones = state.setdefault("zones", {})
        for zc in det.zones:
            rule, use_density = self._zone_rule(det.camera_id, zc.zone)
            level = zc.density_per_m2 if use_density and zc.density_per_m2 is not None else zc.count
            zs = zones.setdefault(zc.zone, {})
            zs, change = crowding.step(zs, t, level, rule)
            ev = zs.get("event")
            if change == "open":
                severity = Severity.high if zs["peak"] >= 2 * rule.threshold else None
                draft = self._draft(
                    rule="crowding", trigger="crowding", subject=f"{det.camera_id}/{zc.zone}",
                    started_at=zs["started_at"], t=t, place=place, value=level, peak=zs["peak"],
                    confidence=0.9 if det.crowd_estimator == "density" else 0.8, severity=severity,
                    camera_id=det.camera_id, zone=zc.zone, lat=lat, lon=lon,
                    sources=[f"camera:{det.camera_id}"], evidence_key=snapshot_key(det.camera_id, t),
                )
                drafts.append(draft)
                zs["event"], zs["reported_peak"] = _dump(draft), zs["peak"]
            elif change == "close" and ev:
                draft = _revise(ev, action=EventAction.closed, status="closed", updated_at=t, ended_at=t,
                                duration_s=max(t - ev["started_at"], 0.0), value=level, peak=zs["peak"])
                drafts.append(draft)
                zs["event"] = None
            elif ev and zs.get("open") and _grew(zs["peak"], zs["reported_peak"], rules.update_ratio):
                severity = Severity.high if zs["peak"] >= 2 * rule.threshold else Severity(ev["severity"])
                draft = _revise(ev, action=EventAction.updated, updated_at=t, value=level, peak=zs["peak"],
                                duration_s=max(t - ev["started_at"], 0.0), severity=max_severity(severity, ev["severity"]),
                                evidence_key=snapshot_key(det.camera_id, t))
                drafts.append(draft)
                zs["event"], zs["reported_peak"] = _dump(draft), zs["peak"]
        if det.fire is not None:
            fs, change = fire.step(state.setdefault("fire", {}), t, det.fire.score, ctx.fire)
            state["fire"] = fs
            here = _place_dump(place, lat, lon)
            if change == "on":
                fs["place"] = here  # the grid told "on" is the one told "off", wherever the camera is placed by then
                signals.append(self._fire_signal(det.camera_id, fs, here, t, on=True))
            elif change == "off":
                signals.append(self._fire_signal(det.camera_id, fs, fs.pop("place", None) or here, t, on=False))
            elif fs.get("on") and fs.get("place", here)["grid"] != here["grid"]:
                # placed in another grid cell while on (an unconfigured camera's detections name a new grid, or
                # the configuration moved it): the old cell's source goes off, the new cell's comes on from now
                signals.append(self._fire_signal(det.camera_id, fs, fs["place"], t, on=False))
                fs["place"] = here
                signals.append(self._fire_signal(det.camera_id, fs, here, t, on=True, started_at=t))
            elif fs.get("on") and "place" not in fs:
                fs["place"] = here  # a state from before the place was kept: "on" went to the grid of then
        return state, drafts, signals

    def on_camera_health(self, state: dict, health: CameraHealth) -> tuple[dict, list[GovernanceEvent], list[FireSignal]]:
        """The camera partition's part of a health report: a camera stopped for good (``final``: removed from
        the fleet, outside its schedule, file ended) sends no more frames, so its open crowding events close
        and its fire source goes off in its grid cell (which closes a fire event no other source keeps on).
        A stop that is not final (a restart, a worker shutdown, a move to another worker) leaves them open:
        the camera goes on, and closing would reopen the same situation under new, unacknowledged ids.

        Frames from before the stop that are analysed after it are dropped. Other states change nothing
        here (an offline camera gets its camera_offline event from ``on_health``). A camera without camera
        state is left without one.
        """
        drafts: list[GovernanceEvent] = []
        signals: list[FireSignal] = []
        if health.state != "stopped" or not health.final or not state:
            return state, drafts, signals
        # the close is never before a frame already applied (a file read faster than real time runs ahead)
        zones, fs = state.get("zones") or {}, state.get("fire") or {}
        t = max([health.time, *(zs["max_t"] for zs in zones.values() if zs.get("max_t") is not None),
                 *([fs["max_t"]] if fs.get("max_t") is not None else [])])
        for zs in zones.values():
            ev = zs.get("event")
            if zs.get("open") and ev:
                drafts.append(_revise(ev, action=EventAction.closed, status="closed", updated_at=t, ended_at=t,
                                      duration_s=max(t - ev["started_at"], 0.0), peak=zs["peak"]))
            zs.update(open=False, closed_at=t, event=None, samples=[], max_t=t)
        if fs:
            if fs.get("on"):
                ctx = self._context(health.camera_id, health.grid_id)
                at = fs.pop("place", None) or _place_dump(ctx.place, ctx.lat, ctx.lon)
                signals.append(self._fire_signal(health.camera_id, fs, at, t, on=False))
            fs.update(on=False, frames=[], max_t=t)
        state["stopped_at"] = t
        return state, drafts, signals

    @staticmethod
    def _fire_signal(camera_id: str, fs: dict, at: dict, t: float, *, on: bool,
                     started_at: float | None = None) -> FireSignal:
        return FireSignal(
            camera_id=camera_id, grid_id=at["grid"], village=at["village"], town=at["town"], lat=at["lat"],
            lon=at["lon"], time=t, on=on, score=fs["peak"],
            started_at=fs["started_at"] if started_at is None else started_at,
            evidence_key=snapshot_key(camera_id, t) if on else None,
        )

    # ---- grid partition: fire signals and sensor readings ------------------------------------
    def on_grid_input(self, state: dict, item: FireSignal | SensorReading) -> tuple[dict, list[GovernanceEvent]]:
        """Fuse video fire signals and smoke/heat alarms per grid cell; other sensor alarms per sensor."""
        if isinstance(item, SensorReading) and item.kind not in FIRE_SENSOR_KINDS:
            return state, self._sensor_alarm(state, item)
        sources = state.setdefault("sources", {})
        if isinstance(item, FireSignal):
            key, kind, on, score, t = f"camera:{item.camera_id}", "video", item.on, item.score, item.time
        else:
            key, kind, t = f"sensor:{item.sensor_id}", "sensor", item.time
            on, score = self._alarming(item), self.defaults.sensors.confidence
        src = sources.get(key)
        if src and t < src["max_t"]:
            return state, []  # older than what this source already told us
        if src is None and state.get("event") is None:
            _forget_quiet(sources, lambda s: not s["on"] and s["max_t"] < t - CLOSED_RETENTION_S)
        was_on = bool(src and src["on"])
        began = item.started_at if isinstance(item, FireSignal) else t
        src = sources[key] = {
            "kind": kind, "on": on, "max_t": t, "score": max(score, src["score"]) if src and was_on and on else score,
            "t_on": (src["t_on"] if was_on else began) if on else (src or {}).get("t_on", t),
            "t_off": None if on else (src["t_off"] if src and not was_on and src.get("t_off") is not None else t),
        }
        # the cell's place from all its inputs: a value once known is kept, a missing one filled in, so
        # an input without village/town routes the event (and names its place) as well as one with them
        known = state.get("place") or {}
        state["place"] = {k: known.get(k) if known.get(k) is not None else v
                          for k, v in (("grid", item.grid_id), ("village", item.village), ("town", item.town))}
        place = Place(state["place"]["grid"], state["place"]["village"], state["place"]["town"])
        if isinstance(item, FireSignal) and item.on and item.evidence_key:
            state["evidence_key"] = item.evidence_key
        return state, self._fire_incident(state, t, place, item.lat, item.lon)

    def _alarming(self, reading: SensorReading) -> bool:
        limit = self.defaults.sensors.thresholds.get(reading.kind)
        return reading.alarm or (limit is not None and reading.value >= limit)

    def _fire_incident(self, state: dict, t: float, place: Place, lat, lon) -> list[GovernanceEvent]:
        window = self.defaults.fusion_window_s
        sources = state["sources"]

        def recent_off(s: dict) -> bool:
            return s["t_off"] is not None and s["t_off"] >= t - window

        def recent(kind: str) -> bool:
            return any(s["kind"] == kind and (s["on"] or recent_off(s)) for s in sources.values())

        on = {k: s for k, s in sources.items() if s["on"]}
        video_on = any(s["kind"] == "video" for s in on.values())
        sensor_on = any(s["kind"] == "sensor" for s in on.values())
        fused = (video_on and recent("sensor")) or (sensor_on and recent("video"))
        p_video = max((s["score"] for s in sources.values() if s["kind"] == "video" and (s["on"] or (fused and recent_off(s)))),
                      default=0.0)
        p_sensor = self.defaults.sensors.confidence
        ev = state.get("event")
        if ev is None:
            if not on:
                return []
            trigger = "fire.fused" if fused else ("fire.video" if video_on else "fire.sensor")
            started = min(s["t_on"] for s in on.values())
            if state.get("closed_at") is not None and started <= state["closed_at"]:
                # on since before the last close (a source's late input): never starts before that event ended
                started = max(t, state["closed_at"])
            confidence = 1 - (1 - p_video) * (1 - p_sensor) if fused else (p_video if video_on else p_sensor)
            # a fused event names the sources it fused, also one that went quiet inside the window
            named = {k for k, s in sources.items() if s["on"] or (fused and recent_off(s))}
            draft = self._draft(
                rule="fire", trigger=trigger, subject=f"grid:{place.grid}", started_at=started, t=t, place=place,
                value=p_video, peak=p_video, confidence=confidence, fused=fused, lat=lat, lon=lon,
                camera_id=next((k.split(":", 1)[1] for k in sorted(named) if k.startswith("camera:")), None),
                sensor_ids=sorted(k.split(":", 1)[1] for k in named if k.startswith("sensor:")),
                sources=sorted(named), evidence_key=state.get("evidence_key"),
            )
            state["event"] = _dump(draft)
            return [draft]
        # the event names the cell's place as now known (published with its next revision)
        ev["grid_id"], ev["village"], ev["town"] = place.grid, place.village, place.town
        if not on:
            draft = _revise(ev, action=EventAction.closed, status="closed", updated_at=t, ended_at=t,
                            duration_s=max(t - ev["started_at"], 0.0))
            # every source's record stays (its max_t keeps its stale readings out) until quiet for CLOSED_RETENTION_S
            state["event"], state["closed_at"] = None, t
            _forget_quiet(sources, lambda s: s["max_t"] < t - CLOSED_RETENTION_S)
            if not any(s["kind"] == "video" and recent_off(s) for s in sources.values()):
                state.pop("evidence_key", None)  # kept while the video that took it can still fuse
            return [draft]
        all_sources = sorted(set(ev["sources"]) | set(on))
        sensor_ids = sorted({*ev["sensor_ids"], *(k.split(":", 1)[1] for k in on if k.startswith("sensor:"))})
        changes: dict = {}
        if fused and not ev["fused"]:
            item: Item = self.catalog.for_trigger("fire.fused")
            changes = {
                "fused": True, "catalog_code": item.code, "title_zh": item.name_zh, "title_en": item.name_en,
                "severity": max_severity(item.severity, Severity(ev["severity"]).raised()),
                "confidence": min(1.0, 1 - (1 - p_video) * (1 - p_sensor)),
                "handling_requirement": item.requirement, "legal_basis": item.legal_basis,
                "routing": route(self.catalog, item, place, t).model_dump(mode="json"),
            }
        elif _grew(p_video, ev["peak"], self.defaults.update_ratio):
            changes = {"confidence": max(ev["confidence"], p_video)}
        if all_sources != ev["sources"] and not changes:
            ev["sources"], ev["sensor_ids"] = all_sources, sensor_ids  # recorded, published with the next change
        if not changes:
            return []
        if ev.get("camera_id") is None:
            changes["camera_id"] = next((k.split(":", 1)[1] for k in on if k.startswith("camera:")), None)
        if ev.get("evidence_key") is None and state.get("evidence_key"):
            changes["evidence_key"] = state["evidence_key"]
        draft = _revise(ev, action=EventAction.updated, updated_at=t, value=p_video, peak=max(ev["peak"], p_video),
                        duration_s=max(t - ev["started_at"], 0.0), sources=all_sources, sensor_ids=sensor_ids, **changes)
        state["event"] = _dump(draft)
        return [draft]

    def _sensor_alarm(self, state: dict, reading: SensorReading) -> list[GovernanceEvent]:
        """One sensor's alarm event. The sensor's record outlives its event (``max_t``, ``closed_at``) for
        CLOSED_RETENTION_S, so a stale or redelivered reading from before the close cannot reopen it."""
        alarms = state.setdefault("alarms", {})
        t = reading.time
        st = alarms.get(reading.sensor_id)
        if st is None:
            _forget_quiet(alarms, lambda s: s["event"] is None and (s["max_t"] is None or s["max_t"] < t - CLOSED_RETENTION_S))
            st = alarms[reading.sensor_id] = {"max_t": None, "event": None}
        if st["max_t"] is not None and t < st["max_t"]:
            return []
        if st.get("closed_at") is not None and t <= st["closed_at"]:
            return []  # at or before the close of its last event (a replay of the closing reading, say)
        st["max_t"] = t
        ev = st["event"]
        place = Place(reading.grid_id, reading.village, reading.town)
        if self._alarming(reading):
            if ev is None:
                draft = self._draft(
                    rule="sensor_alarm", trigger=f"sensor.{reading.kind.value}", subject=f"sensor:{reading.sensor_id}",
                    started_at=t, t=t, place=place, value=reading.value, peak=reading.value,
                    confidence=self.defaults.sensors.confidence, sensor_ids=[reading.sensor_id],
                    sources=[f"sensor:{reading.sensor_id}"], lat=reading.lat, lon=reading.lon,
                )
                st["event"] = _dump(draft)
                return [draft]
            if _grew(reading.value, ev["peak"], self.defaults.update_ratio):
                draft = _revise(ev, action=EventAction.updated, updated_at=t, value=reading.value, peak=reading.value,
                                duration_s=max(t - ev["started_at"], 0.0))
                st["event"] = _dump(draft)
                return [draft]
            return []
        if ev is not None:
            draft = _revise(ev, action=EventAction.closed, status="closed", updated_at=t, ended_at=t,
                            value=reading.value, duration_s=max(t - ev["started_at"], 0.0))
            st["event"], st["closed_at"] = None, t
            return [draft]
        return []

    # ---- health partition ------------------------------------------------------------------
    def on_health(self, state: dict, health: CameraHealth) -> tuple[dict, list[GovernanceEvent]]:
        """A camera's health report: offline for offline_minutes → equipment fault; streaming again, or stopped on
        purpose → closed. (The camera partition takes the same report in ``on_camera_health``.)"""
        if state.get("max_t") is not None and health.time < state["max_t"]:
            return state, []
        state["max_t"] = health.time
        state["camera_id"] = health.camera_id
        state["grid_id"] = health.grid_id
        state["stopped"] = health.state == "stopped"
        ev = state.get("event")
        if health.state == "stopped":  # not pulled on purpose (removed, outside its schedule, file ended): no fault
            state["offline_since"] = None
            if ev and health.final:  # a fault already open is over: nobody is to repair a camera taken out of service
                state["event"] = None
                return state, [_revise(ev, action=EventAction.closed, status="closed", updated_at=health.time,
                                       ended_at=health.time, duration_s=max(health.time - ev["started_at"], 0.0))]
            return state, []
        if health.state == "streaming":
            state["offline_since"], state["streaming_at"] = None, health.time
            if ev:
                state["event"] = None
                return state, [_revise(ev, action=EventAction.closed, status="closed", updated_at=health.time,
                                       ended_at=health.time, duration_s=max(health.time - ev["started_at"], 0.0))]
            return state, []
        if state.get("offline_since") is None:
            # Ingest reports streaming before the first frame, so after a reconnect last_frame_time can be
            # older than the previous outage's end: the new outage must not reuse its start (and event id).
            since = health.last_frame_time if health.last_frame_time is not None else health.time
            state["offline_since"] = max(since, state.get("streaming_at", since))
        state["reason"] = health.reason
        return self.check_offline(state, health.time)

    def check_offline(self, state: dict, now: float) -> tuple[dict, list[GovernanceEvent]]:
        """Open the fault event when the camera has been offline (or silent) for offline_minutes by ``now``;
        a camera whose last report said it was stopped on purpose is not expected to report."""
        if state.get("event") or state.get("camera_id") is None or state.get("stopped"):
            return state, []
        camera_id = state["camera_id"]
        limit = self.rules_for(camera_id).offline_minutes * 60.0
        since = state.get("offline_since")
        if since is None and state.get("max_t") is not None and now - state["max_t"] >= limit:
            since = state["max_t"]  # no report at all for the whole period
        if since is None or now - since < limit:
            return state, []
        place, lat, lon = self._camera_place(camera_id, state.get("grid_id"))
        draft = self._draft(
            rule="camera_offline", trigger="camera.offline", subject=f"camera:{camera_id}", started_at=since, t=now,
            place=place, value=now - since, peak=now - since, confidence=1.0, camera_id=camera_id, lat=lat, lon=lon,
            sources=[f"camera:{camera_id}"],
        )
        state["event"] = _dump(draft)
        return state, [draft]

    # ---- desk partition: the public event ----------------------------------------------------
    def on_draft(self, state: dict, draft: GovernanceEvent) -> tuple[dict, list[GovernanceEvent]]:
        """Merge an owner's draft into the public event: revision, routing and acknowledgement are the desk's."""
        if draft.revision <= state.get("seq", -1):
            return state, []  # a replayed draft
        state["seq"] = draft.revision
        prev = state.get("event")
        # The draft was validated when it was decoded, and every desk field below comes from a
        # validated record too, so the merge copies instead of validating a third time.
        fields = _dump(draft)
        changes: dict = {}
        if prev is None:
            changes["revision"] = 0 if draft.action is EventAction.opened else draft.revision
        else:
            changes["revision"] = prev["revision"] + 1
            if draft.catalog_code == prev["catalog_code"]:
                changes["routing"] = prev["routing"]
            else:  # a new item (fusion) is routed anew, but never below where escalation already took it
                changes["routing"] = _no_lower(fields["routing"], prev["routing"])
                state.pop("exhausted", None)  # the next due tick decides again for this routing
            changes["acknowledged_by"] = prev["acknowledged_by"]
            changes["severity"] = max_severity(draft.severity, prev["severity"])
            if draft.updated_at < prev["updated_at"]:  # an ack or escalation stamped later than the frame behind this
                changes["updated_at"] = prev["updated_at"]
        pending = state.pop("pending_ack", None)
        state.pop("pending_ack_at", None)
        if pending and changes.get("acknowledged_by", draft.acknowledged_by) is None:
            changes["acknowledged_by"] = pending
        fields.update(changes)
        if "severity" in changes:
            fields["severity"] = changes["severity"].value
        state["event"] = fields
        if "routing" in changes:
            changes["routing"] = Routing.model_validate(changes["routing"])  # the model holds a Routing, the state its dump
        return state, [draft.model_copy(update=changes)]

    def on_ack(self, state: dict, ack: Ack) -> tuple[dict, list[GovernanceEvent]]:
        """Acknowledge once; an ack before the event arrives is kept until it does (or CLOSED_RETENTION_S)."""
        ev = state.get("event")
        if ev is None:
            state["pending_ack"], state["pending_ack_at"] = ack.by, ack.time
            return state, []
        if ev["acknowledged_by"] is not None or ev["status"] == "closed":
            return state, []
        # updated_at is the time of the input behind a revision: here the ack's (never before the last revision's)
        event = _revise(ev, action=EventAction.acknowledged, acknowledged_by=ack.by, updated_at=max(ack.time, ev["updated_at"]))
        state["event"] = _dump(event)
        return state, [event]

    def due(self, state: dict, now: float) -> bool:
        """True when the desk should look at this event at ``now`` (deadline passed unacknowledged)."""
        ev = state.get("event")
        return bool(ev and ev["status"] == "open" and ev["acknowledged_by"] is None and not state.get("exhausted")
                    and now >= ev["routing"]["deadline_at"])

    def expired(self, state: dict, now: float) -> bool:
        """True when the desk can forget this entry: a closed event, or an ack whose event never came,
        older than CLOSED_RETENTION_S (an ack after its event was forgotten is one of the latter)."""
        ev = state.get("event")
        if ev is None:
            # an entry without pending_ack_at was written before its time was kept: its age is unknown
            return now - state.get("pending_ack_at", float("-inf")) > CLOSED_RETENTION_S
        return ev["status"] == "closed" and now - (ev["ended_at"] or now) > CLOSED_RETENTION_S

    def on_tick(self, state: dict, now: float) -> tuple[dict | None, list[GovernanceEvent]]:
        """Escalate an unacknowledged event past its deadline; returns None state when it can be forgotten."""
        if self.expired(state, now):
            return None, []
        ev = state.get("event")
        if not self.due(state, now):
            return state, []
        item = self.catalog.items.get(ev["catalog_code"])
        place = Place(ev["grid_id"], ev["village"], ev["town"])
        nxt = escalate(self.catalog, item, Routing.model_validate(ev["routing"]), place, now) if item else None
        if nxt is None:
            state["exhausted"] = True  # top level reached: stop asking
            return state, []
        event = _revise(ev, action=EventAction.escalated, routing=nxt.model_dump(mode="json"),
                        severity=Severity(ev["severity"]).raised(), updated_at=max(now, ev["updated_at"]))
        state["event"] = _dump(event)
        return state, [event]


def _grew(peak: float, reported: float, ratio: float) -> bool:
    """True when ``peak`` grew past ``reported`` by ``ratio`` (strictly: a flat peak is never re-published)."""
    return peak > reported and peak >= max(reported, 1e-9) * ratio


def _place_dump(place: Place, lat: float | None, lon: float | None) -> dict:
    return {"grid": place.grid, "village": place.village, "town": place.town, "lat": lat, "lon": lon}


def _forget_quiet(records: dict, quiet) -> None:
    """Drop the records for which ``quiet(record)`` holds (a source quiet for CLOSED_RETENTION_S)."""
    for key in [k for k, rec in records.items() if quiet(rec)]:
        del records[key]


def _no_lower(new: dict, current: dict) -> dict:
    """``new`` routing (a dump), or ``current`` with the new department when it is higher; never fewer escalations."""
    if LEVELS.index(Level(current["level"])) > LEVELS.index(Level(new["level"])):
        new = {**current, "department": new["department"]}
    return {**new, "escalations": max(new["escalations"], current["escalations"])}


def max_severity(a: Severity | str, b: Severity | str) -> Severity:
    order = list(Severity)
    a, b = Severity(a), Severity(b)
    return a if order.index(a) >= order.index(b) else b
