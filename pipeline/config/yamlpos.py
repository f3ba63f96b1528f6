"""Read YAML into plain Python values while remembering where every key and value was written.

PyYAML's composer gives each node a start mark; walking the node tree ourselves keeps a map from key
path (``("groups", 0, "url")``) to ``(line, col)``, which is how validation errors find their place.
String values get ``${VAR}`` interpolation here, so a missing variable is reported where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.env import TemplateError, interpolate
from pipeline.config.errors import ConfigIssue, decode_position, format_key_path, read_error

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = _YAML_TAG_PREFIX + "str"
_MAP_TAG = _YAML_TAG_PREFIX + "map"
_SEQ_TAG = _YAML_TAG_PREFIX + "seq"
_MERGE_TAG = _YAML_TAG_PREFIX + "merge"
_VALUE_TAG = _YAML_TAG_PREFIX + "value"

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]


@dataclass
class YamlDoc:
    """A parsed file: plain data plus 1-based ``(line, col)`` of every value and mapping key."""

    file: str
    data: Any = None
    values: dict[KeyPath, Pos] = field(default_factory=dict)
    keys: dict[KeyPath, Pos] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def locate(self, path: KeyPath, *, key: bool = False) -> Pos:
        """Position of ``path`` (its key when ``key``), else of its nearest written ancestor."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        for cut in range(len(path) - 1, -1, -1):
            prefix = path[:cut]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)

    def place(self, path: KeyPath, *, key: bool = False) -> tuple[str, int, int, str]:
        """``(file, line, col, key.path)`` of ``path``: where an issue about it is reported."""
        line, col = self.locate(path, key=key)
        return self.file, line, col, format_key_path(path)

    def issue(self, path: KeyPath, message: str, *, key: bool = False) -> ConfigIssue:
        return ConfigIssue(*self.place(path, key=key), message)


def load_yaml(path: Path, *, display: str | None = None) -> YamlDoc:
    """Parse ``path``; syntax errors, duplicate keys and missing variables land in ``doc.issues``."""
    doc = YamlDoc(display or str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        line, col = decode_position(exc) if isinstance(exc, UnicodeDecodeError) else (None, None)
        doc.issues.append(ConfigIssue(doc.file, line, col, "", f"cannot read file: {read_error(exc)}"))
        return doc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        doc.issues.append(ConfigIssue(doc.file, line, col, "", f"YAML syntax: {exc.problem or exc}"))
        return doc
    except yaml.reader.ReaderError as exc:  # e.g. a NUL or other control character
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - before.rfind("\n")
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)  # C and pure loaders differ
        doc.issues.append(ConfigIssue(doc.file, line, col, "", f"YAML: character {code:#06x} is not allowed in YAML "
                                                              "(control character)"))
        return doc
    if node is not None:
        walker = _Walker(doc, budget=4 * len(text) + 100_000)
        try:
            doc.data = walker.value(node, ())
        except _TooManyValues:
            doc.data = None
            doc.values.clear()
            doc.issues.append(ConfigIssue(doc.file, None, None, "", f"YAML expands to more than {walker.budget} values "
                                                                    "through aliases (*anchor); refusing to load it"))
    return doc


class _TooManyValues(Exception):
    """Aliases that expand beyond the budget (a "billion laughs" document)."""


class _Walker:
    def __init__(self, doc: YamlDoc, budget: int):
        self.doc = doc
        self.constructor = yaml.constructor.SafeConstructor()  # scalars and merge keys (<<) only
        self.budget, self.walked = budget, 0

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self.walked += 1
        if self.walked > self.budget:  # aliases are walked once per use: bound the expansion
            raise _TooManyValues
        self.doc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in (_MAP_TAG, _SEQ_TAG) and not isinstance(node, yaml.ScalarNode):
            self.doc.issues.append(self.doc.issue(path, f"unsupported YAML tag {_short_tag(node.tag)!r}"))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.scalar(node, path)
        if node.tag == _STR_TAG and isinstance(value, str):
            try:
                value = interpolate(value, secret_field=bool(path) and path[-1] == "url")
            except TemplateError as exc:
                self.doc.issues.append(self.doc.issue(path, str(exc)))
        return value

    def scalar(self, node: yaml.ScalarNode, path: KeyPath, *, key: bool = False) -> Any:
        """The scalar's Python value; an unknown tag (``!env X``, ``!!python/object:…``) or a value its
        tag cannot read (``!!float abc``) is an issue, and the text as written stands in for it."""
        try:
            return self.constructor.construct_object(node)
        except (yaml.constructor.ConstructorError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # ConstructorError for a tag the safe loader does not know; the others from one it does
            # (float("abc") for !!float abc), as does a ConstructorError for !!binary that is not base64
            known = node.tag in self.constructor.yaml_constructors
            message = f"{'value is not valid for' if known else 'unsupported'} YAML tag {_short_tag(node.tag)!r}"
        self.constructor.recursive_objects.pop(node, None)  # left behind by the failed construction
        if key:
            pos = (node.start_mark.line + 1, node.start_mark.column + 1)
            self.doc.issues.append(ConfigIssue(self.doc.file, *pos, format_key_path(path), message))
        else:
            self.doc.issues.append(self.doc.issue(path, message))
        return node.value

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict:
        """The mapping's own keys (a key written twice is an issue), then the keys of its YAML merge
        keys (``<<: *anchor``, ``<<: [*a, *b]``) that it does not set itself: own keys override merged
        ones, and an earlier merged mapping wins over a later one, as the YAML merge key type says."""
        own, merged = self.merge_sources(node, path, set())
        out: dict = {}
        for key_node, value_node in own:
            key = self.key(key_node, path)
            kpath = (*path, key)
            pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                first = self.doc.keys[kpath][0]
                self.doc.issues.append(
                    ConfigIssue(self.doc.file, *pos, format_key_path(kpath), f"duplicate key (first written on line {first})")
                )
                continue
            self.doc.keys[kpath] = pos
            out[key] = self.value(value_node, kpath)
        for key_node, value_node in merged:
            key = self.key(key_node, path)
            if key in out:
                continue  # overridden by the mapping itself or by an earlier merged mapping
            kpath = (*path, key)
            self.doc.keys[kpath] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.value(value_node, kpath)
        return out

    def key(self, key_node: yaml.Node, path: KeyPath) -> str:
        if key_node.tag == _VALUE_TAG:  # the YAML "=" value key: plain text here
            return "="
        if not isinstance(key_node, yaml.ScalarNode):  # ``? [a, b]``: reported as an unknown key '[]'
            return "[]" if isinstance(key_node, yaml.SequenceNode) else "{}"
        key = self.scalar(key_node, (*path, key_node.value), key=True)
        return key if isinstance(key, str) else str(key)

    def merge_sources(self, node: yaml.MappingNode, path: KeyPath, active: set[int]) -> tuple[list, list]:
        """``(own pairs, merged pairs)`` of ``node``, the merged ones in precedence order (each merged
        mapping's own keys before those it merges itself). Nodes are not changed: an anchor can be
        merged in many places."""
        own: list = []
        merged: list = []
        active = active | {id(node)}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    found = "a list" if isinstance(source, yaml.SequenceNode) else "a scalar"
                    self.doc.issues.append(self.doc.issue(path, f"YAML merge: <<: takes a mapping (*anchor) or a list of "
                                                                f"mappings, found {found}"))
                    continue
                if id(source) in active:  # an anchor merged into itself: nothing more to add
                    continue
                self.walked += 1
                if self.walked > self.budget:
                    raise _TooManyValues
                sub_own, sub_merged = self.merge_sources(source, path, active)
                merged += sub_own + sub_merged
        return own, merged


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:float`` → ``!!float``; local tags (``!env``) as written."""
    return "!!" + tag[len(_YAML_TAG_PREFIX):] if tag.startswith(_YAML_TAG_PREFIX) else tag
