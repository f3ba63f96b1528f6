"""``LiveState``: the in-memory picture behind the risk-map page (风险一张图).

It takes plain dicts — camera inventory, detections (``Detection.model_dump(mode="json")``),
governance events and camera-health records — and folds them into one bounded snapshot. It does
no I/O and knows nothing about HTTP, so the Faust worker, the embedded demo and tests drive it the
same way. Methods are thread-safe (an ingest thread may feed it while the page reads it).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.web.fields import (
    CAMERA_STATES,
    DOWN_HEALTH,
    as_epoch,
    as_number,
    as_position,
    display_text,
    event_view,
    first_of,
    severity_rank,
)
from pipeline.web.layout import grid_views, projection

__all__ = ["CAMERA_STATES", "LiveState", "severity_rank"]


class LiveState:
    """Bounded, thread-safe aggregate of cameras, live counts, health and open events."""

    def __init__(
        self,
        max_events: int = 2000,
        max_closed: int = 50,
        max_cameras: int = 20000,
        clock: Any = time.time,
    ) -> None:
        """``max_events`` open events and ``max_closed`` recently closed ones are kept (oldest go first);
        detections or health for unknown cameras add at most ``max_cameras`` cameras in total."""
        self.max_events = max_events
        self.max_closed = max_closed
        self.max_cameras = max_cameras
        self._clock = clock
        self._lock = threading.Lock()
        self._cameras: dict[str, dict[str, Any]] = {}
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._closed: deque[dict[str, Any]] = deque(maxlen=max_closed)
        self._closed_ids: dict[str, None] = {}
        self.version = 0
        self.dropped_events = 0
        self.skipped_messages = 0

    # -- inputs -------------------------------------------------------------------------------

    def set_cameras(self, cameras: Iterable[Mapping[str, Any]]) -> None:
        """Replace the inventory: dicts with id, name, grid, town, village, lat, lon, zones.

        ``zones`` may be zone names or zone dicts (``name`` and optional ``crowd_threshold``).
        Live readings of cameras that stay in the inventory are kept.
        """
        with self._lock:
            fresh: dict[str, dict[str, Any]] = {}
            for cam in cameras:
                cam_id = display_text(cam.get("id") or cam.get("camera_id"))
                if not cam_id or len(fresh) >= self.max_cameras:
                    continue
                entry = self._cameras.get(cam_id) or self._new_camera(cam_id)
                lat, lon = as_position(cam.get("lat"), cam.get("lon"))
                entry.update(
                    name=display_text(cam.get("name")),
                    grid=display_text(cam.get("grid") or cam.get("grid_id")),
                    town=display_text(cam.get("town")),
                    village=display_text(cam.get("village")),
                    lat=lat,
                    lon=lon,
                    thresholds=self._zone_thresholds(cam.get("zones")),
                    configured=True,
                )
                fresh[cam_id] = entry
            self._cameras = fresh
            self.version += 1

    def apply_detection(self, detection: Mapping[str, Any]) -> None:
        """Fold one detection record (``guanjia.detection.v1`` as a dict) into its camera."""
        with self._lock:
            cam = self._camera(detection.get("camera_id"))
            if cam is None:
                return
            when = as_epoch(detection.get("capture_time")) or self._clock()
            if cam["last_seen"] is not None and when < cam["last_seen"]:
                return  # an older frame arriving late must not overwrite a newer count
            zones: dict[str, dict[str, float | None]] = {}
            for zone in detection.get("zones") or []:
                if not isinstance(zone, Mapping):
                    continue
                name = display_text(zone.get("zone"), 80)
                count = as_number(zone.get("count"))
                if name is None or count is None or len(zones) >= 64:
                    continue
                zones[name] = {
                    "count": count,
                    "density_per_m2": as_number(zone.get("density_per_m2")),
                }
            fire = detection.get("fire") if isinstance(detection.get("fire"), Mapping) else None
            cam.update(
                zones=zones,
                fire_score=as_number(fire.get("score")) if fire else None,
                fire_confirmed=bool(fire.get("confirmed")) if fire else False,
                last_seen=when,
            )
            if not cam["grid"]:
                cam["grid"] = display_text(detection.get("grid_id"))
            self.version += 1

    def apply_health(self, health: Mapping[str, Any]) -> None:
        """Record a camera's health: a ``CameraHealth`` record or ingest's health dict (``state``
        like streaming / backoff / error, optional reason or last_error_class + last_error)."""
        with self._lock:
            cam = self._camera(first_of(health, "camera_id", "camera", "id"))
            if cam is None:
                return
            state = display_text(first_of(health, "state", "status", "health"), 40)
            reason = first_of(health, "reason", "error")
            if reason is None:
                parts = [first_of(health, "last_error_class"), first_of(health, "last_error")]
                reason = ": ".join(str(p) for p in parts if p is not None) or None
            cam.update(
                health=state.lower() if state else None,
                reason=display_text(reason),
                health_time=as_epoch(
                    first_of(health, "time", "updated_at", "last_frame_time", "timestamp")
                ),
            )
            self.version += 1

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Add, update or close a governance event (a ``GovernanceEvent`` dumped to a dict)."""
        with self._lock:
            item = event_view(event)
            if item is None:
                return
            event_id = item["event_id"]
            if item["closed"]:
                self._open.pop(event_id, None)
                if event_id not in self._closed_ids:
                    if len(self._closed) == self._closed.maxlen and self._closed:
                        self._closed_ids.pop(self._closed[0]["event_id"], None)
                    self._closed.append(item)
                    self._closed_ids[event_id] = None
            elif event_id not in self._closed_ids:
                self._open[event_id] = item
                self._open.move_to_end(event_id)
                while len(self._open) > self.max_events:
                    self._open.popitem(last=False)
                    self.dropped_events += 1
            else:
                return  # a late update of an event already closed
            self.version += 1

    def note_skipped(self, topic: str = "", offset: int = -1) -> None:
        """Count a message the feed skipped (too large, not a JSON object): ``follow``'s ``on_skip``.

        The count is ``totals.skipped_messages`` in the snapshot and shows in the page's header.
        """
        with self._lock:
            self.skipped_messages += 1
            self.version += 1

    # -- output -------------------------------------------------------------------------------

    def snapshot(self, max_events: int | None = None) -> dict[str, Any]:
        """Everything the page shows, JSON-serialisable; positions ``x``/``y`` in 0–1 (north up).

        ``max_events`` keeps only the most urgent open events in the list (``totals.open_events``
        still counts them all).
        """
        with self._lock:
            now = self._clock()
            kinds_by_camera: dict[str, set[str]] = {}
            for ev in self._open.values():
                if ev["camera_id"] and ev["kind"]:
                    kinds_by_camera.setdefault(ev["camera_id"], set()).add(ev["kind"])
            project = projection(
                [(c["lat"], c["lon"]) for c in self._cameras.values()]
                + [(e["lat"], e["lon"]) for e in self._open.values()]
            )
            cameras = [
                self._camera_view(c, kinds_by_camera.get(c["id"], set()), project)
                for c in self._cameras.values()
            ]
            by_id = {c["id"]: c for c in cameras}
            events = []
            for ev in self._open.values():
                cam = by_id.get(ev["camera_id"] or "")
                x, y = (
                    project(ev["lat"], ev["lon"])
                    if ev["lat"] is not None and ev["lon"] is not None
                    else ((cam["x"], cam["y"]) if cam else (None, None))
                )
                events.append(
                    dict(
                        ev,
                        camera_name=cam["name"] if cam else None,
                        x=x,
                        y=y,
                        time_left_s=None
                        if ev["deadline"] is None
                        else round(ev["deadline"] - now, 1),
                    )
                )
            events.sort(
                key=lambda e: (
                    -e["severity_rank"],
                    e["deadline"] if e["deadline"] is not None else math.inf,
                )
            )
            open_count = len(events)
            if max_events is not None:
                events = events[:max_events]
            closed = [dict(ev) for ev in reversed(self._closed)]
            for ev in events + closed:
                ev.pop("closed", None)
            totals = {state: 0 for state in CAMERA_STATES}
            for cam in cameras:
                totals[cam["state"]] += 1
            return {
                "version": self.version,
                "server_time": now,
                "cameras": cameras,
                "grids": grid_views(cameras),
                "events": events,
                "recent_closed": closed,
                "totals": {
                    "cameras": len(cameras),
                    **totals,
                    "people": round(sum(c["count"] or 0 for c in cameras), 1),
                    "open_events": open_count,
                    "dropped_events": self.dropped_events,
                    "skipped_messages": self.skipped_messages,
                },
            }

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _new_camera(cam_id: str) -> dict[str, Any]:
        return {
            "id": cam_id,
            "name": None,
            "grid": None,
            "town": None,
            "village": None,
            "lat": None,
            "lon": None,
            "thresholds": {},
            "configured": False,
            "zones": {},
            "fire_score": None,
            "fire_confirmed": False,
            "last_seen": None,
            "health": None,
            "reason": None,
            "health_time": None,
        }

    def _camera(self, raw_id: Any) -> dict[str, Any] | None:
        cam_id = display_text(raw_id)
        if not cam_id:
            return None
        cam = self._cameras.get(cam_id)
        if cam is None and len(self._cameras) < self.max_cameras:
            cam = self._cameras[cam_id] = self._new_camera(cam_id)
        return cam

    @staticmethod
    def _zone_thresholds(zones: Any) -> dict[str, float]:
        thresholds: dict[str, float] = {}
        for zone in zones or []:
            if isinstance(zone, Mapping):
                name, limit = (
                    display_text(zone.get("name"), 80),
                    as_number(zone.get("crowd_threshold")),
                )
                if name and limit is not None and zone.get("area_m2") is None:
                    thresholds[name] = limit
        return thresholds

    @staticmethod
    def _camera_view(cam: dict[str, Any], event_kinds: set[str], project: Any) -> dict[str, Any]:
        zones = [{"zone": name, **values} for name, values in cam["zones"].items()]
        whole = cam["zones"].get("*")
        count = whole["count"] if whole else (sum(z["count"] for z in zones) if zones else None)
        over = any(
            v["count"] >= cam["thresholds"][n]
            for n, v in cam["zones"].items()
            if n in cam["thresholds"]
        )
        down = cam["health"] in DOWN_HEALTH or "down" in event_kinds
        if down:
            state = "down"
        elif cam["fire_confirmed"] or "fire" in event_kinds:
            state = "fire"
        elif over or "crowding" in event_kinds:
            state = "crowding"
        elif cam["last_seen"] is not None or cam["health"] is not None:
            state = "ok"
        else:
            state = "unknown"
        x, y = project(cam["lat"], cam["lon"])
        return {
            "id": cam["id"],
            "name": cam["name"],
            "grid": cam["grid"],
            "town": cam["town"],
            "village": cam["village"],
            "lat": cam["lat"],
            "lon": cam["lon"],
            "x": x,
            "y": y,
            "state": state,
            "down": down,
            "health": cam["health"],
            "reason": cam["reason"],
            "count": None if count is None else round(count, 1),
            "zones": zones,
            "fire_score": cam["fire_score"],
            "fire_confirmed": cam["fire_confirmed"],
            "last_seen": cam["last_seen"],
        }
