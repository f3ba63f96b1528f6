"""defaults → group → camera: deep merge of settings layers, and finding which layer wrote a bad value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline.config.errors import ConfigIssue
from pipeline.config.models import SETTINGS_KEYS, CameraSettings
from pipeline.config.validation import issues_from_error
from pipeline.config.yamlpos import KeyPath, YamlDoc


def deep_merge(base: dict, over: dict) -> dict:
    """A new dict: ``over`` wins; nested dicts merge; lists and scalars replace. Inputs are not changed
    and untouched subtrees are shared, not copied."""
    if not over:
        return base
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def split_settings(raw: dict) -> tuple[dict, dict]:
    """``(own keys, settings keys)`` of a group or camera mapping."""
    own = {k: v for k, v in raw.items() if k not in SETTINGS_KEYS}
    settings = {k: v for k, v in raw.items() if k in SETTINGS_KEYS}
    return own, settings


@dataclass(frozen=True)
class Layer:
    """Settings keys written at ``prefix`` in ``doc`` (the defaults mapping, a group or a camera)."""

    doc: YamlDoc
    prefix: KeyPath
    values: dict[str, Any]

    def depth(self, loc: KeyPath) -> int:
        """How many leading parts of ``loc`` this layer wrote."""
        node: Any = self.values
        for n, part in enumerate(loc):
            if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return n
        return len(loc)


@dataclass(frozen=True)
class Chain:
    """Layers from least to most specific, with their merged dict."""

    layers: tuple[Layer, ...] = ()
    merged: dict = field(default_factory=dict)

    def then(self, layer: Layer) -> Chain:
        return Chain((*self.layers, layer), deep_merge(self.merged, layer.values))

    def validate(self, issues: list[ConfigIssue]) -> CameraSettings | None:
        """The merged :class:`CameraSettings`; each error is reported where its value was written."""
        try:
            return CameraSettings.model_validate(self.merged)
        except ValidationError as exc:
            issues.extend(issues_from_error(exc, CameraSettings, self._locate))
            return None

    def _locate(self, loc: KeyPath, about_key: bool):
        # deepest writer wins; on a tie the most specific layer (camera over group over defaults)
        best = max(reversed(self.layers), key=lambda layer: layer.depth(loc))
        depth = max(best.depth(loc), 1) if loc else 0
        path = (*best.prefix, *loc[:depth])
        return best.doc.place(path, key=about_key and depth == len(loc))
