"""``${VAR}`` and ``${VAR:-default}`` interpolation for string values (secrets stay out of files)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


_KEEP_TEMPLATES: ContextVar[bool] = ContextVar("guanjia_keep_templates", default=False)


@contextmanager
def keep_templates() -> Iterator[None]:
    """Within this block :func:`interpolate` returns text unchanged: configs load with their ``${VAR}``
    templates (``guanjia cameras publish`` ships templates, never interpolated secrets)."""
    token = _KEEP_TEMPLATES.set(True)
    try:
        yield
    finally:
        _KEEP_TEMPLATES.reset(token)


class MissingVariable(ValueError):
    """An environment variable without a default is not set."""

    def __init__(self, names: list[str]):
        self.names = names
        joined = ", ".join(names)
        super().__init__(
            f"environment variable {joined} is not set (or write ${{{names[0]}:-default}})"
        )


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; ``$$`` is a literal ``$``.

    Raises :class:`MissingVariable` naming every unset variable (never their values).
    """
    if "$" not in text or _KEEP_TEMPLATES.get():
        return text
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name is None:
            return "$"
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    result = _VAR.sub(repl, text)
    if missing:
        raise MissingVariable(missing)
    return result
