"""``LiveState``: the in-memory picture behind the risk-map page (风险一张图).

It takes plain dicts — camera inventory, detections (``Detection.model_dump(mode="json")``),
governance events and camera-health records — and folds them into one bounded snapshot. It does
no I/O and knows nothing about HTTP, so the Faust worker, the embedded demo and tests drive it the
same way. Methods are thread-safe (an ingest thread may feed it while the page reads it).

Events are read field by field with fallbacks, so a record with more, fewer or renamed fields
still shows what it has instead of failing.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

CAMERA_STATES = ("down", "fire", "crowding", "ok", "unknown")
"""Map states, most urgent first."""

DOWN_HEALTH = frozenset({"down", "offline", "error", "backoff", "failed", "disconnected", "stalled", "unreachable"})
"""Health states (``CameraHealth.state`` and common synonyms) that flag a camera as down."""
CLOSED_STATUS = frozenset({"closed", "resolved", "cleared", "cancelled", "canceled", "expired", "done"})
_SEVERITY_WORDS = {
    "info": 0, "low": 1, "minor": 1, "medium": 2, "moderate": 2, "normal": 2,
    "high": 3, "major": 3, "severe": 3, "critical": 4, "urgent": 4, "emergency": 4,
    "iv": 1, "iii": 2, "ii": 3, "i": 4, "一般": 1, "较大": 2, "重大": 3, "特别重大": 4,
}
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
MAX_TEXT = 200


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A display string: credentials in any embedded URL replaced, length capped."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return None
    text = _URL_USERINFO.sub(r"\1***@", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch from a number (s or ms) or an ISO-8601 string."""
    number = _number(value)
    if number is not None:
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str) and value:
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if stamp.tzinfo is None:
            return None  # a naive local time is ambiguous: better no countdown than a wrong one
        return stamp.timestamp()
    return None


def _first(record: Mapping[str, Any], *paths: str) -> Any:
    """The first present, non-empty value among dotted ``paths`` (``"routing.unit"``)."""
    for path in paths:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                break
        if value not in (None, "", [], {}):
            return value
    return None


def severity_rank(value: Any) -> int:
    """0 (info) … 4 (critical) from a word, a Chinese grade, a roman level or a number."""
    number = _number(value)
    if number is not None:
        return max(0, min(4, int(number)))
    if isinstance(value, str):
        return _SEVERITY_WORDS.get(value.strip().lower(), 2)
    return 2


def _kind(event_type: str | None, name: str | None) -> str | None:
    """``fire`` or ``crowding`` when the event's type or name says so (drives the marker colour)."""
    words = f"{event_type or ''} {name or ''}".lower()
    if any(w in words for w in ("fire", "smoke", "火", "烟")):
        return "fire"
    if any(w in words for w in ("crowd", "密集", "聚集")):
        return "crowding"
    return None


class LiveState:
    """Bounded, thread-safe aggregate of cameras, live counts, health and open events."""

    def __init__(self, max_events: int = 2000, max_closed: int = 50, max_cameras: int = 20000,
                 clock: Any = time.time) -> None:
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

    # -- inputs -------------------------------------------------------------------------------

    def set_cameras(self, cameras: Iterable[Mapping[str, Any]]) -> None:
        """Replace the inventory: dicts with id, name, grid, town, village, lat, lon, zones.

        ``zones`` may be zone names or zone dicts (``name`` and optional ``crowd_threshold``).
        Live readings of cameras that stay in the inventory are kept.
        """
        with self._lock:
            fresh: dict[str, dict[str, Any]] = {}
            for cam in cameras:
                cam_id = _text(cam.get("id") or cam.get("camera_id"))
                if not cam_id or len(fresh) >= self.max_cameras:
                    continue
                entry = self._cameras.get(cam_id) or self._new_camera(cam_id)
                entry.update(
                    name=_text(cam.get("name")),
                    grid=_text(cam.get("grid") or cam.get("grid_id")),
                    town=_text(cam.get("town")),
                    village=_text(cam.get("village")),
                    lat=_number(cam.get("lat")),
                    lon=_number(cam.get("lon")),
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
            when = _epoch(detection.get("capture_time")) or self._clock()
            if cam["last_seen"] is not None and when < cam["last_seen"]:
                return  # an older frame arriving late must not overwrite a newer count
            zones: dict[str, dict[str, float | None]] = {}
            for zone in detection.get("zones") or []:
                if not isinstance(zone, Mapping):
                    continue
                name = _text(zone.get("zone"), 80)
                count = _number(zone.get("count"))
                if name is None or count is None or len(zones) >= 64:
                    continue
                zones[name] = {"count": count, "density_per_m2": _number(zone.get("density_per_m2"))}
            fire = detection.get("fire") if isinstance(detection.get("fire"), Mapping) else None
            cam.update(
                zones=zones,
                fire_score=_number(fire.get("score")) if fire else None,
                fire_confirmed=bool(fire.get("confirmed")) if fire else False,
                last_seen=when,
            )
            if not cam["grid"]:
                cam["grid"] = _text(detection.get("grid_id"))
            self.version += 1

    def apply_health(self, health: Mapping[str, Any]) -> None:
        """Record a camera's health (``state`` like streaming / reconnecting / down, optional reason)."""
        with self._lock:
            cam = self._camera(_first(health, "camera_id", "camera", "id"))
            if cam is None:
                return
            state = _text(_first(health, "state", "status", "health"), 40)
            cam.update(
                health=state.lower() if state else None,
                reason=_text(_first(health, "reason", "last_error", "error", "last_error_class")),
                health_time=_epoch(_first(health, "time", "updated_at", "last_frame_time", "timestamp")),
            )
            self.version += 1

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Add, update or close a governance event (a ``GovernanceEvent`` dumped to a dict)."""
        with self._lock:
            item = self._event_view(event)
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
            project = _projection([(c["lat"], c["lon"]) for c in self._cameras.values()]
                                  + [(e["lat"], e["lon"]) for e in self._open.values()])
            cameras = [self._camera_view(c, kinds_by_camera.get(c["id"], set()), project)
                       for c in self._cameras.values()]
            by_id = {c["id"]: c for c in cameras}
            events = []
            for ev in self._open.values():
                cam = by_id.get(ev["camera_id"] or "")
                x, y = project(ev["lat"], ev["lon"]) if ev["lat"] is not None else (
                    (cam["x"], cam["y"]) if cam else (None, None))
                events.append(dict(ev, camera_name=cam["name"] if cam else None, x=x, y=y,
                                   time_left_s=None if ev["deadline"] is None else round(ev["deadline"] - now, 1)))
            events.sort(key=lambda e: (-e["severity_rank"], e["deadline"] if e["deadline"] is not None else math.inf))
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
                "grids": _grid_views(cameras),
                "events": events,
                "recent_closed": closed,
                "totals": {
                    "cameras": len(cameras),
                    **totals,
                    "people": round(sum(c["count"] or 0 for c in cameras), 1),
                    "open_events": open_count,
                    "dropped_events": self.dropped_events,
                },
            }

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _new_camera(cam_id: str) -> dict[str, Any]:
        return {
            "id": cam_id, "name": None, "grid": None, "town": None, "village": None,
            "lat": None, "lon": None, "thresholds": {}, "configured": False,
            "zones": {}, "fire_score": None, "fire_confirmed": False, "last_seen": None,
            "health": None, "reason": None, "health_time": None,
        }

    def _camera(self, raw_id: Any) -> dict[str, Any] | None:
        cam_id = _text(raw_id)
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
                name, limit = _text(zone.get("name"), 80), _number(zone.get("crowd_threshold"))
                if name and limit is not None and zone.get("area_m2") is None:
                    thresholds[name] = limit
        return thresholds

    @staticmethod
    def _camera_view(cam: dict[str, Any], event_kinds: set[str], project: Any) -> dict[str, Any]:
        zones = [{"zone": name, **values} for name, values in cam["zones"].items()]
        whole = cam["zones"].get("*")
        count = whole["count"] if whole else (sum(z["count"] for z in zones) if zones else None)
        over = any(v["count"] >= cam["thresholds"][n] for n, v in cam["zones"].items() if n in cam["thresholds"])
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
            "id": cam["id"], "name": cam["name"], "grid": cam["grid"], "town": cam["town"],
            "village": cam["village"], "lat": cam["lat"], "lon": cam["lon"], "x": x, "y": y,
            "state": state, "down": down, "health": cam["health"], "reason": cam["reason"],
            "count": None if count is None else round(count, 1), "zones": zones,
            "fire_score": cam["fire_score"], "fire_confirmed": cam["fire_confirmed"],
            "last_seen": cam["last_seen"],
        }

    def _event_view(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        event_id = _text(_first(event, "event_id", "id"))
        if not event_id:
            return None
        rule = _text(_first(event, "rule", "type", "event_type"), 40)
        title = _text(_first(event, "title_zh", "title", "title_en", "type_name", "name"))
        status = (_text(_first(event, "status", "state"), 40) or "open").lower()
        severity = _first(event, "severity", "level", "priority")
        escalations = _number(_first(event, "routing.escalations", "escalations"))
        return {
            "event_id": event_id,
            "type": rule,
            "catalog_code": _text(_first(event, "catalog_code", "code"), 40),
            "title": title,
            "title_en": _text(_first(event, "title_en")),
            "kind": "down" if rule == "camera_offline" else _kind(rule, title),
            "severity": _text(severity, 40),
            "severity_rank": severity_rank(severity),
            "status": status,
            "action": _text(_first(event, "action"), 40),
            "closed": status in CLOSED_STATUS,
            "acknowledged_by": _text(_first(event, "acknowledged_by")),
            "camera_id": _text(_first(event, "camera_id", "camera")),
            "zone": _text(_first(event, "zone"), 80),
            "grid": _text(_first(event, "grid_id", "grid")),
            "town": _text(_first(event, "town")),
            "village": _text(_first(event, "village")),
            "lat": _number(_first(event, "lat")),
            "lon": _number(_first(event, "lon")),
            "handling_unit": _text(_first(event, "routing.unit", "handling_unit", "unit")),
            "department": _text(_first(event, "routing.department", "department")),
            "level": _text(_first(event, "routing.level"), 40),
            "escalations": int(escalations) if escalations is not None else 0,
            "deadline": _epoch(_first(event, "routing.deadline_at", "deadline_at", "deadline")),
            "opened_at": _epoch(_first(event, "started_at", "opened_at", "time")),
            "value": _number(_first(event, "value")),
            "peak": _number(_first(event, "peak")),
            "fused": bool(event.get("fused")),
        }


def _projection(points: list[tuple[float | None, float | None]]) -> Any:
    """Equirectangular lat/lon → 0–1 box (north up, aspect kept), with a margin; ``None`` when unknown."""
    known = [(lat, lon) for lat, lon in points if lat is not None and lon is not None]
    if not known:
        return lambda lat, lon: (None, None)
    lats, lons = [p[0] for p in known], [p[1] for p in known]
    lat0 = (min(lats) + max(lats)) / 2
    kx = math.cos(math.radians(lat0))
    span = max((max(lons) - min(lons)) * kx, max(lats) - min(lats), 1e-6)
    cx, cy = (max(lons) + min(lons)) / 2 * kx, (max(lats) + min(lats)) / 2

    def project(lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
        if lat is None or lon is None:
            return None, None
        return round(0.5 + 0.8 * (lon * kx - cx) / span, 5), round(0.5 - 0.8 * (lat - cy) / span, 5)

    return project


def _grid_views(cameras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One box per grid cell around its placed cameras, coloured by its most urgent camera."""
    grids: dict[str, dict[str, Any]] = {}
    for cam in cameras:
        grid = cam["grid"] or "?"
        view = grids.setdefault(grid, {"id": grid, "town": cam["town"], "village": cam["village"],
                                       "cameras": 0, "state": "unknown", "xs": [], "ys": []})
        view["cameras"] += 1
        if CAMERA_STATES.index(cam["state"]) < CAMERA_STATES.index(view["state"]):
            view["state"] = cam["state"]
        if cam["x"] is not None:
            view["xs"].append(cam["x"])
            view["ys"].append(cam["y"])
    out = []
    for view in grids.values():
        xs, ys = view.pop("xs"), view.pop("ys")
        if xs:
            pad = 0.03
            view.update(x=round(min(xs) - pad, 5), y=round(min(ys) - pad, 5),
                        w=round(max(xs) - min(xs) + 2 * pad, 5), h=round(max(ys) - min(ys) + 2 * pad, 5))
        else:
            view.update(x=None, y=None, w=None, h=None)
        out.append(view)
    out.sort(key=lambda g: (CAMERA_STATES.index(g["state"]), g["id"]))
    return out
