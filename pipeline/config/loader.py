"""Load camera-group YAML files (with includes and inventory CSVs) into one :class:`CityConfig`.

Every problem is collected with its place and raised together as :class:`ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.config.errors import (
    ConfigError,
    ConfigIssue,
    decode_position,
    format_key_path,
    read_error,
    whole_file_decode_error,
)
from pipeline.config.inventory import GroupContext, read_inventory
from pipeline.config.merge import Chain, Layer, deep_merge, split_settings
from pipeline.config.models import (
    SETTINGS_KEYS,
    CameraConfig,
    CameraSettings,
    CityConfig,
    ConfigFile,
    GroupConfig,
    ResolvedCamera,
    RuleSettings,
    resolve_file_url,
)
from pipeline.config.validation import validate_value
from pipeline.config.yamlpos import KeyPath, YamlDoc, load_yaml

# Rule keys read city-wide from defaults: fire fusion and sensor alarms are per grid cell and per
# sensor, so a group's or a camera's value cannot apply to them (update_ratio still does to crowding).
CITY_RULE_KEYS = ("sensors", "fusion_window_s", "update_ratio")
DEFAULTS_ONLY_RULE_KEYS = ("sensors", "fusion_window_s")


def load_config(paths: Iterable[Path | str]) -> CityConfig:
    """Load and validate camera-group files; raise :class:`ConfigError` listing every problem.

    Files that another given file includes are loaded once, through the include.
    """
    loader = _CityLoader()
    loader.load([Path(p) for p in paths])
    rules = loader.city_rules()
    if loader.issues:
        raise ConfigError(loader.issues)
    return CityConfig(groups=loader.groups, cameras=loader.cameras, source_files=loader.files, rules=rules)


def _key(path: Path) -> Path:
    return path.resolve()


def _with_settings_keys(loc: KeyPath) -> Iterable[str]:
    return SETTINGS_KEYS if loc == () else ()


class _CityLoader:
    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []
        self.groups: list[GroupConfig] = []
        self.cameras: list[ResolvedCamera] = []
        self.files: list[str] = []
        self.docs: dict[Path, YamlDoc] = {}
        self.loaded: dict[Path, str] = {}  # file -> where it was first loaded from
        self.group_ids: dict[str, tuple[str, int]] = {}
        self.camera_ids: dict[str, tuple[str, int]] = {}  # id -> (file, line) where first defined
        self.inventories: dict[Path, tuple[str, str]] = {}  # CSV -> (group id, file:line) that loaded it
        self.base = Chain()
        self.base_settings = CameraSettings()
        self.root_chains: list[Chain] = []  # each file given (not through an include): its defaults
        self.default_chains: list[Chain] = []  # each file with defaults: its own over its includers'

    # -- files ---------------------------------------------------------------------------------------

    def doc(self, path: Path, display: str) -> YamlDoc:
        key = _key(path)
        if key not in self.docs:
            self.docs[key] = load_yaml(path, display=display)
        return self.docs[key]

    def load(self, roots: list[Path]) -> None:
        keys = [_key(root) for root in roots]
        reach = {key: self.includes_below(root, str(root), set()) for key, root in zip(keys, roots)}
        for key, root in zip(keys, roots):
            # a root that another root includes (and not mutually, as in a cycle) is loaded through it
            through_other = any(key in reach[other] and other not in reach[key] for other in keys if other != key)
            if not through_other and key not in self.loaded:
                self.load_file(root, str(root), self.base, self.base_settings, (), None)

    def includes_below(self, path: Path, display: str, stack: set[Path]) -> set[Path]:
        """Files reachable through ``include:`` from ``path`` (a cheap pre-pass; errors come later)."""
        key = _key(path)
        if key in stack or not path.is_file():
            return set()
        data = self.doc(path, display).data
        found: set[Path] = set()
        incs = data.get("include") if isinstance(data, dict) else None
        for inc in incs if isinstance(incs, list) else []:
            if isinstance(inc, str):
                target = path.parent / inc
                found.add(_key(target))
                found |= self.includes_below(target, _join(display, inc), stack | {key})
        return found

    def load_file(
        self, path: Path, display: str, chain: Chain, settings: CameraSettings | None, stack: tuple[Path, ...], where: str | None
    ) -> None:
        doc = self.doc(path, display)
        self.loaded[_key(path)] = where or display
        self.files.append(doc.file)
        data = doc.data
        if data is not None and not isinstance(data, dict):
            doc.issues.append(doc.issue((), "the top level must be a mapping with defaults, include and groups"))
        elif isinstance(data, dict):
            # x-… keys hold YAML anchors for reuse (as in docker compose); they are not settings
            validate_value(doc, ConfigFile, {k: v for k, v in data.items() if not str(k).startswith("x-")})
            defaults = data.get("defaults")
            if isinstance(defaults, dict) and defaults:
                chain = chain.then(Layer(doc, ("defaults",), defaults))
                settings = chain.validate(self.issues)
                self.default_chains.append(chain)
            if not stack:
                self.root_chains.append(chain)
            for i, inc in _items(data.get("include"), str):
                self.load_include(doc, path, i, inc, chain, settings, (*stack, _key(path)))
            for i, group in _items(data.get("groups"), dict):
                self.load_group(doc, path.parent.resolve(), ("groups", i), group, chain, settings)
        self.issues.extend(doc.issues)

    def load_include(self, doc: YamlDoc, path: Path, i: int, inc: str, chain, settings, stack) -> None:
        target = path.parent / inc
        where = f"{doc.file}:{doc.locate(('include', i))[0]}"
        if not target.is_file():
            reason = "no such file" if not target.exists() else "not a regular file"
            doc.issues.append(doc.issue(("include", i), f"cannot read included file {inc!r}: {reason}"))
        elif _key(target) in stack:
            doc.issues.append(doc.issue(("include", i), f"include cycle: {inc!r} is already being loaded"))
        elif _key(target) in self.loaded:
            doc.issues.append(doc.issue(("include", i), f"{inc!r} is already included (at {self.loaded[_key(target)]})"))
        else:
            self.load_file(target, _join(doc.file, inc), chain, settings, stack, where)

    def city_rules(self) -> RuleSettings | None:
        """The rules of :data:`CITY_RULE_KEYS` from every file's defaults (a disagreement is an issue
        naming both places), over the first given file's defaults for the other keys.

        Mappings merge key by key over the built-in values, so ``sensors.thresholds: {gas: 10}``
        keeps the built-in thresholds of the other kinds.
        """
        first: dict[KeyPath, tuple[Any, Chain]] = {}
        city: dict = {}
        for chain in self.default_chains:
            rules = chain.merged.get("rules")
            if not isinstance(rules, dict):
                continue
            written = {key: rules[key] for key in CITY_RULE_KEYS if key in rules}
            for loc, value in _leaves(written, ("rules",)):
                seen, where = first.setdefault(loc, (value, chain))
                if where is not chain and seen != value:
                    file, line, col, key_path = chain._locate(loc, False)
                    other = where._locate(loc, False)
                    self.issues.append(ConfigIssue(
                        file, line, col, key_path,
                        f"{value!r} differs from {seen!r} at {other[0]}:{other[1]} ({other[3]}): sensor and fire-fusion "
                        "rules apply city-wide, so every file's defaults must agree; set it once, in the outermost file"))
            city = deep_merge(city, written)
        base = self.root_chains[0].merged.get("rules") if self.root_chains else None
        merged = deep_merge(deep_merge(RuleSettings().model_dump(), base if isinstance(base, dict) else {}), city)
        if self.issues:
            return None  # the settings were reported where they were written
        return RuleSettings.model_validate(merged)

    # -- groups and cameras --------------------------------------------------------------------------

    def load_group(self, doc: YamlDoc, base_dir: Path, prefix: KeyPath, raw: dict, chain: Chain, settings) -> None:
        own, over = split_settings(raw)
        cameras_raw = own.pop("cameras", [])
        group = validate_value(doc, GroupConfig, own, prefix, extra_keys=_with_settings_keys)
        unique = self.check_unique(self.group_ids, own.get("id"), doc, prefix, "group")
        if group and unique:
            self.groups.append(group)
        if over:
            _reject_city_rules(doc, prefix, over)
            chain = chain.then(Layer(doc, prefix, over))
            settings = chain.validate(self.issues)
        # an invalid group still gets its cameras and inventory checked, so every error shows at once
        context = GroupContext(
            group_id=str(own.get("id") or format_key_path(prefix)),
            town=_opt_str(own.get("town")),
            village=_opt_str(own.get("village")),
            settings=settings if settings is not None else self.base_settings,
        )
        if not isinstance(cameras_raw, list):
            doc.issues.append(doc.issue((*prefix, "cameras"), "must be a list of cameras"))
            cameras_raw = []
        for i, cam_raw in enumerate(cameras_raw):
            cam_prefix = (*prefix, "cameras", i)
            if not isinstance(cam_raw, dict):
                doc.issues.append(doc.issue(cam_prefix, "a camera must be a mapping with id, url, grid, …"))
                continue
            cam = self.load_camera(doc, base_dir, cam_prefix, cam_raw, chain, context)
            if cam and group:
                group.cameras.append(cam)
        inventory = own.get("inventory")
        if isinstance(inventory, str) and inventory:
            self.load_inventory(doc, base_dir, (*prefix, "inventory"), inventory, context)

    def load_camera(self, doc, base_dir, prefix, raw, chain: Chain, group: GroupContext) -> CameraConfig | None:
        own, over = split_settings(raw)
        _reject_city_rules(doc, prefix, over)
        cam = validate_value(doc, CameraConfig, own, prefix, extra_keys=_with_settings_keys)
        unique = self.check_unique(self.camera_ids, own.get("id"), doc, prefix, "camera")
        settings = chain.then(Layer(doc, prefix, over)).validate(self.issues) if over else group.settings
        if cam and unique and settings is not None:
            fields: dict[str, Any] = dict(cam)
            fields.update(
                url=resolve_file_url(cam.url, base_dir),
                town=cam.town or group.town,
                village=cam.village or group.village,
                group_id=group.group_id,
                settings=settings,
            )
            resolved = ResolvedCamera.model_validate(fields)
            resolved.defer_url_base_dir(base_dir)  # a templated relative path: the worker resolves it once filled
            self.cameras.append(resolved)
        return cam

    def load_inventory(self, doc: YamlDoc, base_dir: Path, path: KeyPath, inventory: str, group: GroupContext) -> None:
        display = _join(doc.file, inventory)
        key = _key(base_dir / inventory)
        first = self.inventories.get(key)
        if first is not None:  # every row would be a duplicate of itself: say what happened instead
            doc.issues.append(doc.issue(path, f"inventory {inventory} is already loaded by group {first[0]} (at {first[1]}); "
                                              "a CSV belongs to one group", key=True))
            return
        self.inventories[key] = (group.group_id, f"{doc.file}:{doc.locate(path, key=True)[0]}")
        try:
            cameras = read_inventory(base_dir / inventory, group, self.camera_ids, self.issues, display=display)
        except (OSError, UnicodeDecodeError) as exc:
            where = ""
            if isinstance(exc, UnicodeDecodeError):
                exc = whole_file_decode_error(base_dir / inventory, exc)
                where = "line {}, column {}: ".format(*decode_position(exc))
            doc.issues.append(doc.issue(path, f"cannot read inventory {inventory!r}: {where}{read_error(exc)}"))
            return
        self.files.append(display)
        self.cameras.extend(cameras)

    def check_unique(self, seen: dict[str, tuple[str, int]], ident: Any, doc: YamlDoc, prefix: KeyPath, what: str) -> bool:
        """Record ``ident`` (if it is a string) and report a second use, naming both places."""
        if not isinstance(ident, str):
            return True
        path = (*prefix, "id")
        first = seen.get(ident)
        if first is not None:
            doc.issues.append(doc.issue(path, f"duplicate {what} id {ident!r} (first defined at {first[0]}:{first[1]})"))
            return False
        seen[ident] = (doc.file, doc.locate(path)[0])
        return True


def _reject_city_rules(doc: YamlDoc, prefix: KeyPath, over: dict) -> None:
    """A group or camera that sets a city-wide rule gets an error where it wrote it (the engine would ignore it)."""
    rules = over.get("rules")
    for key in DEFAULTS_ONLY_RULE_KEYS if isinstance(rules, dict) else ():
        if key in rules:
            doc.issues.append(doc.issue((*prefix, "rules", key), f"rules.{key} applies city-wide (sensor alarms and fire "
                                        "fusion are per sensor and grid cell, not per camera); set it under defaults.rules",
                                        key=True))


def _leaves(value: Any, prefix: KeyPath) -> Iterable[tuple[KeyPath, Any]]:
    """``(key path, value)`` of every non-mapping value under ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*prefix, key))
    else:
        yield prefix, value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _items(value: Any, kind: type) -> Iterable[tuple[int, Any]]:
    """Well-typed items of a list (others were already reported by ConfigFile validation)."""
    if isinstance(value, list):
        return [(i, item) for i, item in enumerate(value) if isinstance(item, kind)]
    return []


def _join(display: str, relative: str) -> str:
    return os.path.normpath(os.path.join(os.path.dirname(display), relative))
