"""The event catalog (四级目录: category → subcategory → matter → item) and routing, as in configs/catalog.yaml."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ingest.settings import StrictModel
from pipeline.records import Level, Severity

# The rule outputs the engine looks up (CatalogIndex.for_trigger); the catalog must bind each to exactly one item.
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
    def _codes_nest_and_triggers_complete(self) -> Catalog:
        errors = _catalog_errors(self)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


# Where a catalog problem is, relative to ``catalog:`` (e.g. ``("categories", 0, "subcategories", 1, "code")``).
Loc = tuple[str | int, ...]


def _catalog_errors(catalog: Catalog) -> list[InitErrorDetails]:
    """Every cross-item problem, each at the key it is about.

    They are raised as one ValidationError whose locations pydantic appends to ``catalog``'s own, so
    ``guanjia config validate`` reports the line of the offending item, not the top of the catalog.
    """
    # imported here: importing pipeline.config loads the whole config loader
    from pipeline.config.errors import format_key_path

    errors: list[InitErrorDetails] = []
    codes: dict[str, Loc] = {}  # code -> where it was first written
    triggers: dict[str, tuple[str, Loc]] = {}  # trigger -> (item code, where)

    def error(loc: Loc, value: object, message: str) -> None:
        errors.append(InitErrorDetails(type=PydanticCustomError("catalog", "{message}", {"message": message}),
                                       loc=loc, input=value))

    def code(node: _Named, loc: Loc, parent: str | None) -> None:
        if parent is not None and not node.code.startswith(parent + "."):
            error((*loc, "code"), node.code, f"code {node.code} does not extend its parent's code {parent}")
        if node.code in codes:
            error((*loc, "code"), node.code, f"duplicate code {node.code} (first at {format_key_path(('catalog', *codes[node.code]))})")
        else:
            codes[node.code] = (*loc, "code")

    for c, cat in enumerate(catalog.categories):
        cat_loc: Loc = ("categories", c)
        code(cat, cat_loc, None)
        for s, sub in enumerate(cat.subcategories):
            sub_loc: Loc = (*cat_loc, "subcategories", s)
            code(sub, sub_loc, cat.code)
            for m, matter in enumerate(sub.matters):
                matter_loc: Loc = (*sub_loc, "matters", m)
                code(matter, matter_loc, sub.code)
                for i, item in enumerate(matter.items):
                    item_loc: Loc = (*matter_loc, "items", i)
                    code(item, item_loc, matter.code)
                    if item.trigger is None:
                        continue
                    if item.trigger in triggers:
                        first_code, first_loc = triggers[item.trigger]
                        error((*item_loc, "trigger"), item.trigger,
                              f"trigger {item.trigger!r} is already on item {first_code} (at {format_key_path(('catalog', *first_loc))}); "
                              "each trigger belongs to one item")
                    else:
                        triggers[item.trigger] = (item.code, (*item_loc, "trigger"))
    for trigger in get_args(Trigger):
        if trigger not in triggers:
            error((), sorted(triggers), f"no catalog item has trigger {trigger!r}; every trigger the rules raise needs one")
    return errors



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
