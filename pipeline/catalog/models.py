"""The event catalog (四级目录: category → subcategory → matter → item) and routing, as in configs/catalog.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ingest.settings import StrictModel
from pipeline.records import Level, Severity

Trigger = Literal[
    "crowding",
    "fire.video",
    "fire.sensor",
    "fire.fused",
    "sensor.gas",
    "sensor.water_level",
    "sensor.people_counter",
    "camera.offline",
]

_CODE = r"^\d{2}(\.\d{2}){%d}$"


class _Named(StrictModel):
    code: str = Field(..., description="Dotted two-digit code; each level extends its parent's.")
    name_zh: str = Field(..., min_length=1, description="Chinese name.")
    name_en: str = Field(..., min_length=1, description="English name.")


class Item(_Named):
    """A concrete event type with its handling standard."""

    code: str = Field(..., pattern=_CODE % 3, description="Four-level code, e.g. 01.01.01.01.")
    severity: Severity = Field(..., description="Default severity: low, medium, high or critical.")
    unit_type: Level = Field(..., description="Level that handles it first: grid, village, town or city.")
    deadline_minutes: float = Field(..., gt=0, description="Minutes to acknowledge before escalation to the next level.")
    requirement: str = Field(..., min_length=1, description="Handling requirement (处置要求).")
    legal_basis: str = Field(..., min_length=1, description="Legal basis (法律依据).")
    trigger: Trigger | None = Field(None, description="Rule output this item is used for (each trigger on one item).")


class Matter(_Named):
    code: str = Field(..., pattern=_CODE % 2)
    department: str = Field(..., min_length=1, description="Responsible department (责任部门) for the matter.")
    items: list[Item] = Field(..., min_length=1)


class Subcategory(_Named):
    code: str = Field(..., pattern=_CODE % 1)
    matters: list[Matter] = Field(..., min_length=1)


class Category(_Named):
    code: str = Field(..., pattern=_CODE % 0)
    subcategories: list[Subcategory] = Field(..., min_length=1)


class Catalog(StrictModel):
    """The taxonomy."""

    version: str = Field(..., min_length=1, description="Catalog version, e.g. 2026.1.")
    categories: list[Category] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _codes_nest_and_unique(self) -> Catalog:
        seen: set[str] = set()
        triggers: dict[str, str] = {}
        for cat in self.categories:
            for sub in cat.subcategories:
                _child_of(sub.code, cat.code)
                for matter in sub.matters:
                    _child_of(matter.code, sub.code)
                    for item in matter.items:
                        _child_of(item.code, matter.code)
                        if item.trigger and item.trigger in triggers:
                            raise ValueError(f"trigger {item.trigger!r} is on both {triggers[item.trigger]} and {item.code}")
                        if item.trigger:
                            triggers[item.trigger] = item.code
            for code in _codes(cat):
                if code in seen:
                    raise ValueError(f"duplicate code {code}")
                seen.add(code)
        return self


def _child_of(code: str, parent: str) -> None:
    if not code.startswith(parent + "."):
        raise ValueError(f"code {code} does not extend its parent's code {parent}")


def _codes(cat: Category) -> list[str]:
    out = [cat.code]
    for sub in cat.subcategories:
        out.append(sub.code)
        for matter in sub.matters:
            out.append(matter.code)
            out.extend(item.code for item in matter.items)
    return out


class LevelUnit(StrictModel):
    """How the handling unit at one level is named and how long it has."""

    unit: str = Field(..., description="Template for the unit name; {grid}, {village}, {town} are filled in.")
    deadline_minutes: float | None = Field(None, gt=0, description="Time to acknowledge at this level after an escalation (default: the item's deadline).")


class RoutingTable(StrictModel):
    """grid → village/community → town → city, and departments per matter."""

    levels: dict[Level, LevelUnit] = Field(..., description="Handling unit per level.")
    max_escalations: int = Field(3, ge=0, description="Stop escalating after this many times.")

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, levels: dict[Level, LevelUnit]) -> dict[Level, LevelUnit]:
        missing = [lvl.value for lvl in Level if lvl not in levels]
        if missing:
            raise ValueError(f"missing level(s): {', '.join(missing)}")
        return levels


class CatalogFile(StrictModel):
    """The whole configs/catalog.yaml: ``catalog:`` taxonomy and ``routing:`` table."""

    catalog: Catalog = Field(..., description="The four-level event taxonomy.")
    routing: RoutingTable = Field(..., description="Handling units per level and escalation.")
