"""Turn pydantic errors into :class:`ConfigIssue` lines, with "did you mean …" for near misses."""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.config.errors import ConfigError, ConfigIssue
from pipeline.config.yamlpos import KeyPath, YamlDoc, load_yaml

M = TypeVar("M", bound=BaseModel)

# (error loc, is it about the key itself) -> the issue's place
Locator = Callable[[KeyPath, bool], tuple[str, int | None, int | None, str]]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'crowd'?"`` when ``word`` is close to one of ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def model_at(model: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    """The pydantic model that validates the value at ``loc`` under ``model`` (None if not a model)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp, part)
        if tp is None:
            return None
    tp = _unwrap(tp, None)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any, part: str | int | None) -> Any:
    """Step from type ``tp`` into key ``part`` (None: only strip Optional/containers as needed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0], part) if len(args) == 1 else None
    if part is None:
        return tp
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    if isinstance(part, int) and origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple
            return args[min(part, len(args) - 1)]
        return args[0] if args else None
    if origin is dict:
        return typing.get_args(tp)[1]
    return None


_PYDANTIC_TAG = re.compile(r"^[a-z][a-z-]*\[.+\]$")  # validator/union tags in a pydantic loc; user keys such as '[' stay


def issues_from_error(
    exc: ValidationError,
    model: type[BaseModel],
    locate: Locator,
    *,
    extra_keys: Callable[[KeyPath], Iterable[str]] = lambda loc: (),
) -> list[ConfigIssue]:
    """One issue per pydantic error; ``extra_keys(parent_loc)`` adds names accepted besides the model's fields."""
    issues = []
    for err in exc.errors(include_url=False, include_input=True):
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or not _PYDANTIC_TAG.match(p))  # drop 'function-after[…]' tags
        message, about_key = _message(err, model, loc, extra_keys)
        file, line, col, key_path = locate(loc, about_key)
        issues.append(ConfigIssue(file, line, col, key_path, message))
    return issues


def _message(err: dict, model: type[BaseModel], loc: KeyPath, extra_keys) -> tuple[str, bool]:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        sub = model_at(model, parent)
        known = list(sub.model_fields) if sub else []
        known += list(extra_keys(parent))
        return f"unknown key {key!r}{did_you_mean(key, known)}", True
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}", True
    if kind in ("enum", "literal_error"):
        expected = err.get("ctx", {}).get("expected", "")
        value = err.get("input")
        choices = [c.strip(" '\"") for c in expected.replace(" or ", ",").split(",") if c.strip()]
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"unknown value {value!r}: expected {expected}{hint}", False
    msg = err["msg"]
    value = err.get("input")
    if kind == "string_type" and isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
        what = "date" if isinstance(value, datetime.date) else "number"
        msg += f" (YAML read {value} as a {what}: quote it to keep it text)"
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif kind == "assertion_error" and msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    return msg[:1].lower() + msg[1:], False


def doc_locator(doc: YamlDoc, prefix: KeyPath = ()) -> Locator:
    """Locate errors of a value found at ``prefix`` inside ``doc``."""

    return lambda loc, about_key: doc.place((*prefix, *loc), key=about_key)


def validate_value(doc: YamlDoc, model: type[M], value: Any, prefix: KeyPath = (), **kw) -> M | None:
    """Validate ``value`` (written at ``prefix`` in ``doc``) against ``model``; issues go to ``doc.issues``."""
    try:
        return model.model_validate({} if value is None else value)
    except ValidationError as exc:
        doc.issues.extend(issues_from_error(exc, model, doc_locator(doc, prefix), **kw))
        return None


def load_model_file(path: Path | str, model_cls: type[M]) -> M:
    """Validate a YAML file against a pydantic model; raise :class:`ConfigError` with file:line:col errors."""
    doc = load_yaml(Path(path), display=str(path))
    result = validate_value(doc, model_cls, doc.data) if doc.data is not None or not doc.issues else None
    if doc.issues or result is None:
        raise ConfigError(doc.issues)
    return result
