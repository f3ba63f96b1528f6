"""Reading display fields out of loosely-typed records: sanitised text, numbers, times, severities.

Records are read field by field with fallbacks, so one with more, fewer or renamed fields still shows
what it has instead of failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

CAMERA_STATES = ("down", "fire", "crowding", "ok", "unknown")
"""Map states, most urgent first."""

DOWN_HEALTH = frozenset(
    {"down", "offline", "error", "backoff", "failed", "disconnected", "stalled", "unreachable"}
)
"""Health states (``CameraHealth.state`` and common synonyms) that flag a camera as down."""
CLOSED_STATUS = frozenset(
    {"closed", "resolved", "cleared", "cancelled", "canceled", "expired", "done"}
)
_SEVERITY_WORDS = {
    "info": 0,
    "low": 1,
    "minor": 1,
    "medium": 2,
    "moderate": 2,
    "normal": 2,
    "high": 3,
    "major": 3,
    "severe": 3,
    "critical": 4,
    "urgent": 4,
    "emergency": 4,
    "iv": 1,
    "iii": 2,
    "ii": 3,
    "i": 4,
    "一般": 1,
    "较大": 2,
    "重大": 3,
    "特别重大": 4,
}
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
MAX_TEXT = 200


def display_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A display string: credentials in any embedded URL replaced, length capped."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return None
    if isinstance(value, Enum):
        value = value.value
    text = _URL_USERINFO.sub(r"\1***@", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_position(lat: Any, lon: Any) -> tuple[float | None, float | None]:
    """``(lat, lon)`` when both are numbers within ±90 / ±180, else ``(None, None)``.

    One out-of-range point would stretch the map until every camera sits in its centre, and a huge
    one overflows the projection to ``Infinity``: such a position is ignored, never drawn.
    """
    lat_n, lon_n = as_number(lat), as_number(lon)
    if lat_n is None or lon_n is None or abs(lat_n) > 90 or abs(lon_n) > 180:
        return None, None
    return lat_n, lon_n


def as_epoch(value: Any) -> float | None:
    """Seconds since the epoch from a number (s or ms) or an ISO-8601 string."""
    number = as_number(value)
    if number is not None:
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str) and value:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        if stamp.tzinfo is None:
            return None  # a naive local time is ambiguous: better no countdown than a wrong one
        return stamp.timestamp()
    return None


def first_of(record: Mapping[str, Any], *paths: str) -> Any:
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
    number = as_number(value)
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


def event_view(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields the page shows from one governance-event revision (``None`` without an id)."""
    event_id = display_text(first_of(event, "event_id", "id"))
    if not event_id:
        return None
    rule = display_text(first_of(event, "rule", "type", "event_type"), 40)
    title = display_text(first_of(event, "title_zh", "title", "title_en", "type_name", "name"))
    status = (display_text(first_of(event, "status", "state"), 40) or "open").lower()
    severity = first_of(event, "severity", "level", "priority")
    escalations = as_number(first_of(event, "routing.escalations", "escalations"))
    lat, lon = as_position(first_of(event, "lat"), first_of(event, "lon"))
    return {
        "event_id": event_id,
        "type": rule,
        "catalog_code": display_text(first_of(event, "catalog_code", "code"), 40),
        "title": title,
        "title_en": display_text(first_of(event, "title_en")),
        "kind": "down" if rule == "camera_offline" else _kind(rule, title),
        "severity": display_text(severity, 40),
        "severity_rank": severity_rank(severity),
        "status": status,
        "action": display_text(first_of(event, "action"), 40),
        "closed": status in CLOSED_STATUS,
        "acknowledged_by": display_text(first_of(event, "acknowledged_by")),
        "camera_id": display_text(first_of(event, "camera_id", "camera")),
        "zone": display_text(first_of(event, "zone"), 80),
        "grid": display_text(first_of(event, "grid_id", "grid")),
        "town": display_text(first_of(event, "town")),
        "village": display_text(first_of(event, "village")),
        "lat": lat,
        "lon": lon,
        "handling_unit": display_text(first_of(event, "routing.unit", "handling_unit", "unit")),
        "department": display_text(first_of(event, "routing.department", "department")),
        "level": display_text(first_of(event, "routing.level"), 40),
        "escalations": int(escalations) if escalations is not None else 0,
        "deadline": as_epoch(first_of(event, "routing.deadline_at", "deadline_at", "deadline")),
        "opened_at": as_epoch(first_of(event, "started_at", "opened_at", "time")),
        "value": as_number(first_of(event, "value")),
        "peak": as_number(first_of(event, "peak")),
        "fused": bool(event.get("fused")),
    }
