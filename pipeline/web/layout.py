"""Placing cameras and grid cells on the page's map: lat/lon → a north-up 0–1 box, no tiles."""

from __future__ import annotations

import math
from typing import Any

from pipeline.web.fields import CAMERA_STATES


def projection(points: list[tuple[float | None, float | None]]) -> Any:
    """Equirectangular lat/lon → 0–1 box (north up, aspect kept), with a margin; ``None`` when unknown.

    Points outside lat ±90 / lon ±180 (``fields.as_position`` already drops them) count as unknown.
    """
    known = [(lat, lon) for lat, lon in points if _placeable(lat, lon)]
    if not known:
        return lambda lat, lon: (None, None)
    lats, lons = [p[0] for p in known], [p[1] for p in known]
    lat0 = (min(lats) + max(lats)) / 2
    kx = math.cos(math.radians(lat0))
    span = max((max(lons) - min(lons)) * kx, max(lats) - min(lats), 1e-6)
    cx, cy = (max(lons) + min(lons)) / 2 * kx, (max(lats) + min(lats)) / 2

    def project(lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
        if not _placeable(lat, lon):
            return None, None
        return round(0.5 + 0.8 * (lon * kx - cx) / span, 5), round(0.5 - 0.8 * (lat - cy) / span, 5)

    return project


def _placeable(lat: float | None, lon: float | None) -> bool:
    return lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180


def grid_views(cameras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One box per grid cell around its placed cameras, coloured by its most urgent camera."""
    grids: dict[str, dict[str, Any]] = {}
    for cam in cameras:
        grid = cam["grid"] or "?"
        view = grids.setdefault(
            grid,
            {
                "id": grid,
                "town": cam["town"],
                "village": cam["village"],
                "cameras": 0,
                "state": "unknown",
                "xs": [],
                "ys": [],
            },
        )
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
            view.update(
                x=round(min(xs) - pad, 5),
                y=round(min(ys) - pad, 5),
                w=round(max(xs) - min(xs) + 2 * pad, 5),
                h=round(max(ys) - min(ys) + 2 * pad, 5),
            )
        else:
            view.update(x=None, y=None, w=None, h=None)
        out.append(view)
    out.sort(key=lambda g: (CAMERA_STATES.index(g["state"]), g["id"]))
    return out
