"""Generate the configuration reference (Markdown) from the pydantic models' field descriptions.

    python -m pipeline.config.reference                       # print it
    python -m pipeline.config.reference --write docs/config.md  # refresh the marked section in place

``tests/unit/config/test_reference.py`` fails when docs/config.md is out of date.
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.config.inventory import OPTIONAL, REQUIRED, ZONE_COLUMNS, ZONE_SEP
from pipeline.config.models import (
    CameraConfig,
    CameraSettings,
    ConfigFile,
    GroupConfig,
    Schedule,
    ZoneConfig,
)

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m pipeline.config.reference --write docs/config.md -->"
END = "<!-- END GENERATED REFERENCE -->"
COMMAND = "python -m pipeline.config.reference --write docs/config.md"


def type_name(tp: object) -> str:
    """A short readable name for an annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return f"[{', '.join(type_name(a) for a in args)}]" if args[-1] is not Ellipsis else f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping {type_name(args[0])} → {type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    if tp is typing.Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "see below"
        return f"`{_plain(value)!r}`" if value not in ([], {}) else "empty"
    value = field.default
    if value is PydanticUndefined or value is None:
        return "—"
    value = _plain(value)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _plain(value):
    """``value`` with enum members (also list items and mapping keys) written as their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


_BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "min length"}


def _bounds(field) -> str:
    """`` (≥ 0, ≤ 1)`` from the field's numeric and length constraints."""
    found = []
    for meta in field.metadata:
        for attr, symbol in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{symbol} {value}")
    return f" ({', '.join(found)})" if found else ""


def model_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {type_name(field.annotation)}{_bounds(field)} | {_default(field)} | {desc} |")
    return "\n".join(rows)


def _nested(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    out = []
    for name, field in model.model_fields.items():
        tp = field.annotation
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out.append((f"{prefix}{name}", tp))
            out.extend(_nested(tp, f"{prefix}{name}."))
    return out


def reference() -> str:
    """The whole generated section, between its markers."""
    parts = [
        BEGIN,
        "",
        "### Top level",
        "",
        model_table(ConfigFile),
        "",
        "### Group (`groups[]`)",
        "",
        "A group also accepts every settings key (see *Settings*); they override `defaults` for its cameras.",
        "",
        model_table(GroupConfig),
        "",
        "### Camera (`groups[].cameras[]`)",
        "",
        (
            "A camera also accepts every settings key; they override its group's. Merge order: built-in → "
            "`defaults` (outer file first, then included file) → group → camera; nested mappings merge key by "
            "key, lists replace."
        ),
        "",
        model_table(CameraConfig),
        "",
        "### Zone (`zones[]`)",
        "",
        model_table(ZoneConfig),
        "",
        "### Schedule (`schedule`)",
        "",
        model_table(Schedule),
        "",
        "### Settings (`defaults`, group, camera)",
        "",
        model_table(CameraSettings),
    ]
    for path, model in _nested(CameraSettings, ""):
        parts += ["", f"#### `{path}`", "", (model.__doc__ or "").strip().splitlines()[0], "", model_table(model)]
    parts += [
        "",
        "### Inventory CSV (`inventory:` on a group)",
        "",
        (
            f"Required columns: {', '.join(f'`{c}`' for c in REQUIRED)}. "
            f"Optional: {', '.join(f'`{c}`' for c in OPTIONAL)}. "
            f"Zone columns: {', '.join(f'`{c}`' for c in ZONE_COLUMNS)} (the zone fields above; "
            f"`zone_polygon` as `\"x1 y1;x2 y2;x3 y3\"`; several zones on one camera are separated by "
            f"`{ZONE_SEP}` in every zone column). Rows inherit the group's town, village and settings; empty "
            "cells mean \"not set\"; `${VAR}` works in `url`."
        ),
        "",
        END,
    ]
    return "\n".join(parts) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with its marked section replaced by ``section`` (ValueError when markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers not found; add these two lines where the reference goes:\n{BEGIN}\n{END}")
    return text[:start] + section.rstrip("\n") + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the configuration reference from the models.")
    parser.add_argument("--write", type=Path, help="Markdown file whose marked section is replaced.")
    args = parser.parse_args(argv)
    section = reference()
    if args.write is None:
        sys.stdout.write(section)
        return 0
    args.write.write_text(replace_section(args.write.read_text(encoding="utf-8"), section), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
