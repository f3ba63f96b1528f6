"""Camera inventory CSV (``inventory: cameras.csv`` on a group): the fleet-scale fast path.

Columns: ``id,url,grid`` (required), ``name,village,town,lat,lon,enabled`` (optional) and zone
columns ``zone_<field>`` for each zone field (``zone_name``, ``zone_polygon`` as ``"x1 y1;x2 y2;…"``,
``zone_area_m2``, …). Several zones on one camera: separate them with ``|`` in every zone column.

Rows are checked column by column and validated in bulk by one pydantic-core call per chunk, and every
camera of a group shares the group's settings object — validating 450k models one at a time, each with
its own settings copy, would be many times slower and larger.
"""

from __future__ import annotations

import csv
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from pipeline.config.env import TemplateError, interpolate
from pipeline.config.errors import ConfigIssue
from pipeline.config.models import (
    CameraSettings,
    ResolvedCamera,
    ZoneConfig,
    deferred_base_dir,
    resolve_file_url,
)
from pipeline.config.validation import did_you_mean, issues_from_error

REQUIRED = ("id", "url", "grid")
OPTIONAL = ("name", "village", "town", "lat", "lon", "enabled")
ZONE_PREFIX = "zone_"
ZONE_COLUMNS = tuple(ZONE_PREFIX + name for name in ZoneConfig.model_fields)
COLUMNS = REQUIRED + OPTIONAL + ZONE_COLUMNS
ZONE_SEP = "|"
CHUNK = 20_000

_cameras = TypeAdapter(list[ResolvedCamera])


@dataclass(frozen=True)
class GroupContext:
    """What an inventory row inherits from its group."""

    group_id: str
    town: str | None
    village: str | None
    settings: CameraSettings


def read_inventory(
    path: Path,
    group: GroupContext,
    seen_ids: dict[str, tuple[str, int]],
    issues: list[ConfigIssue],
    *,
    display: str | None = None,
) -> list[ResolvedCamera]:
    """Cameras of one inventory CSV; problems are appended to ``issues`` as ``file.csv:ROW: column: message``.

    ``seen_ids`` maps every camera id met so far to ``(file, line)`` and catches duplicates across files.
    Raises OSError or UnicodeDecodeError when the file cannot be read (the caller reports it where the
    inventory is named).
    """
    name = display or str(path)
    with path.open(newline="", encoding="utf-8-sig") as fh, _gc_paused():
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if not _header_ok(header, name, issues):
            return []
        rows = _Rows(header, group, path.parent.resolve(), name, seen_ids, issues)
        cameras: list[ResolvedCamera] = []
        for chunk, lines in _chunks(rows.records(reader)):
            try:
                cameras.extend(_cameras.validate_python(chunk))
            except ValidationError as exc:
                issues.extend(issues_from_error(exc, ResolvedCamera, _csv_locator(name, lines)))
        if rows.deferred:  # templated relative paths (keep_templates): the worker resolves them once filled
            for cam in cameras:
                cam.defer_url_base_dir(rows.base_dir)
    return cameras


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while rows are built, then freeze what exists.

    Rows build only acyclic objects (freed by reference counting), yet every collection would rescan
    all of the hundreds of thousands already built: 4× the validation time at fleet scale. Freezing
    moves the loaded cameras out of the collector's generations; they live as long as the config.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _header_ok(header: list[str], name: str, issues: list[ConfigIssue]) -> bool:
    ok = True
    for col in header:
        if col not in COLUMNS:
            issues.append(ConfigIssue(name, 1, None, col or "(empty)", f"unknown column{did_you_mean(col, COLUMNS)}"))
            ok = False
    for col in REQUIRED:
        if col not in header:
            issues.append(ConfigIssue(name, 1, None, col, f"missing required column (header needs {', '.join(REQUIRED)})"))
            ok = False
    if "zone_name" not in header and any(c in ZONE_COLUMNS for c in header):
        issues.append(ConfigIssue(name, 1, None, "zone_name", "zone columns need a zone_name column"))
        ok = False
    dupes = sorted({c for c in header if header.count(c) > 1})
    for col in dupes:
        issues.append(ConfigIssue(name, 1, None, col, "column appears more than once"))
        ok = False
    return ok


def _chunks(records: Iterator[tuple[dict, int]]) -> Iterator[tuple[list[dict], list[int]]]:
    chunk: list[dict] = []
    lines: list[int] = []
    for record, line in records:
        chunk.append(record)
        lines.append(line)
        if len(chunk) >= CHUNK:
            yield chunk, lines
            chunk, lines = [], []
    if chunk:
        yield chunk, lines


def _csv_locator(name: str, lines: list[int]):
    def locate(loc: tuple, about_key: bool):
        row = lines[loc[0]] if loc and isinstance(loc[0], int) else None
        field = loc[1] if len(loc) > 1 else ""
        if field == "zones":
            field = ZONE_PREFIX + (str(loc[3]) if len(loc) > 3 else "name")
        return name, row, None, str(field)

    return locate


class _Rows:
    """Turns CSV rows into dicts for bulk validation, reporting what only a row-level look can see."""

    def __init__(self, header, group: GroupContext, base_dir: Path, name, seen_ids, issues):
        self.index = {col: i for i, col in enumerate(header)}
        self.width = len(header)
        self.group = group
        self.base_dir = str(base_dir)
        self.name = name
        self.seen_ids = seen_ids
        self.issues = issues
        self.deferred = False  # a url left relative and templated by resolve_file_url
        self.optional = [(col, self.index[col]) for col in OPTIONAL if col in self.index]
        self.zones = [(col[len(ZONE_PREFIX):], self.index[col]) for col in ZONE_COLUMNS if col in self.index]

    def error(self, line: int, column: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.name, line, None, column, message))

    def records(self, reader) -> Iterator[tuple[dict, int]]:
        """``(record, line)`` per row; the loop is the per-camera hot path, hence the local names."""
        i_id, i_url, i_grid = (self.index[c] for c in REQUIRED)
        i_zone = self.index.get("zone_name")
        intern, seen, name, width = sys.intern, self.seen_ids, self.name, self.width
        optional = [(col, i, col in ("town", "village")) for col, i in self.optional]
        group = self.group
        inherited = {"group_id": group.group_id, "town": group.town, "village": group.village, "settings": group.settings}
        for row in reader:
            line = reader.line_num
            if len(row) != width:
                if any(cell.strip() for cell in row):
                    self.error(line, "(row)", f"expected {width} columns, found {len(row)}")
                continue
            cam_id = row[i_id]
            first = seen.get(cam_id)
            if first is None:
                seen[cam_id] = (name, line)
            else:
                self.error(line, "id", f"duplicate camera id {cam_id!r} (first defined at {first[0]}:{first[1]})")
            url = row[i_url]
            if "$" in url or "://" not in url:
                url = self.url(url, line)
            record = inherited.copy()
            record["id"] = cam_id
            record["url"] = url
            record["grid"] = intern(row[i_grid])
            for col, i, shared in optional:
                if row[i]:
                    record[col] = intern(row[i]) if shared else row[i]
            if i_zone is not None and row[i_zone]:
                zones = self.parse_zones(row, line)
                if zones is not None:
                    record["zones"] = zones
            yield record, line

    def url(self, url: str, line: int) -> str:
        if "$" in url:
            try:
                url = interpolate(url, secret_field=True)
            except TemplateError as exc:
                self.error(line, "url", str(exc))
        if not self.deferred and deferred_base_dir(url, self.base_dir) is not None:
            self.deferred = True
        return resolve_file_url(url, self.base_dir)

    def parse_zones(self, row: list[str], line: int) -> list[dict] | None:
        """Zone dicts for validation, or None after reporting a cell that cannot be split or parsed."""
        names = row[self.index["zone_name"]].split(ZONE_SEP)
        zones: list[dict] = [{} for _ in names]
        ok = True
        for field, i in self.zones:
            if not row[i]:
                continue
            parts = row[i].split(ZONE_SEP)
            if len(parts) != len(names):
                self.error(line, ZONE_PREFIX + field, f"{len(parts)} value(s) for {len(names)} zone(s); separate zones with {ZONE_SEP!r}")
                ok = False
                continue
            for zone, part in zip(zones, parts):
                part = part.strip()
                if part and field == "polygon":
                    try:
                        part = _parse_polygon(part)
                    except ValueError as exc:
                        self.error(line, "zone_polygon", str(exc))
                        ok = False
                if part:
                    zone[field] = part
        return zones if ok else None


def _parse_polygon(text: str) -> list[tuple[float, float]]:
    """``"x1 y1;x2 y2;…"`` → points (ValueError naming the bad point)."""
    points = []
    for n, pair in enumerate(p for p in text.split(";") if p.strip()):
        xy = pair.split()
        try:
            if len(xy) != 2:
                raise ValueError
            points.append((float(xy[0]), float(xy[1])))
        except ValueError:
            raise ValueError(f"point {n} {pair.strip()!r} is not 'x y' (write polygons as \"x1 y1;x2 y2;x3 y3\")") from None
    return points
