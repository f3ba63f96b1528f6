"""Which model validates which YAML file: camera-group files, or another kind named by a top-level key.

``guanjia config validate`` checks every file it is given; a file whose top level has one of the keys in
:data:`FILE_KINDS` is validated against that model, everything else is a camera-group file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from pipeline.config.errors import ConfigError, ConfigIssue
from pipeline.config.loader import load_config
from pipeline.config.models import CityConfig
from pipeline.config.validation import load_model_file
from pipeline.config.yamlpos import load_yaml

# top-level key -> "module:Model" validating the whole file
FILE_KINDS: dict[str, str] = {
    "catalog": "pipeline.catalog.models:CatalogFile",
}


@dataclass
class Validation:
    """Result of checking several files at once."""

    city: CityConfig | None = None
    others: dict[str, str] = field(default_factory=dict)  # file -> kind validated
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was not validated
    issues: list[ConfigIssue] = field(default_factory=list)


def file_kind(path: Path) -> str | None:
    """The FILE_KINDS key found at the top level of ``path``, or None for a camera-group file."""
    data = load_yaml(path).data
    if isinstance(data, dict):
        for key in FILE_KINDS:
            if key in data:
                return key
    return None


def model_for(kind: str) -> type[BaseModel]:
    """Import the model registered for ``kind`` (ImportError if its package is absent)."""
    module, attr = FILE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), attr)


def validate_files(paths: list[Path]) -> Validation:
    """Validate every file; camera-group files are loaded together (ids must be unique across them)."""
    result = Validation()
    groups: list[Path] = []
    for path in paths:
        kind = file_kind(path) if path.is_file() else None
        if kind is None:
            groups.append(path)
            continue
        try:
            model = model_for(kind)
        except (ImportError, AttributeError) as exc:
            result.skipped[str(path)] = f"{kind} file: model {FILE_KINDS[kind]} is not available ({exc})"
            continue
        try:
            load_model_file(path, model)
            result.others[str(path)] = kind
        except ConfigError as exc:
            result.issues.extend(exc.issues)
    if groups:
        try:
            result.city = load_config(groups)
        except ConfigError as exc:
            result.issues.extend(exc.issues)
    return result
