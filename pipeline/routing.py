"""Routing: grid cell → village/community → town → city, the matter's department, deadlines, escalation."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalog import CatalogIndex
from pipeline.catalog.models import Item
from pipeline.records import Level, Routing

LEVELS = list(Level)


@dataclass(frozen=True, slots=True)
class Place:
    """Where an event happened, as far as it is known."""

    grid: str | None = None
    village: str | None = None
    town: str | None = None

    def known(self, level: Level) -> bool:
        return level is Level.city or getattr(self, level.value) is not None


def _unit(catalog: CatalogIndex, level: Level, place: Place) -> str:
    template = catalog.routing.levels[level].unit
    return template.format(grid=place.grid or "", village=place.village or "", town=place.town or "")


def _first_known(start: Level, place: Place) -> Level:
    for level in LEVELS[LEVELS.index(start):]:
        if place.known(level):
            return level
    return Level.city


def route(catalog: CatalogIndex, item: Item, place: Place, opened_at: float) -> Routing:
    """Initial routing: the item's handling level (or the next one whose place is known)."""
    level = _first_known(item.unit_type, place)
    return Routing(
        level=level,
        unit=_unit(catalog, level, place),
        department=catalog.matter_of(item).department,
        deadline_at=opened_at + item.deadline_minutes * 60.0,
        escalations=0,
    )


def escalate(catalog: CatalogIndex, item: Item, current: Routing, place: Place, now: float) -> Routing | None:
    """Routing one level up with a fresh deadline, or None at the top / after max_escalations."""
    if current.escalations >= catalog.routing.max_escalations or current.level is Level.city:
        return None
    level = _first_known(LEVELS[LEVELS.index(current.level) + 1], place)
    minutes = catalog.routing.levels[level].deadline_minutes or item.deadline_minutes
    return Routing(
        level=level,
        unit=_unit(catalog, level, place),
        department=current.department,
        deadline_at=now + minutes * 60.0,
        escalations=current.escalations + 1,
    )
