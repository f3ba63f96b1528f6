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
    """Within this block :func:`interpolate` leaves the ``${VAR}`` templates of secret fields (camera
    URLs) unchanged: ``guanjia cameras publish`` ships URL templates, never interpolated secrets, and
    each worker fills them from its own environment."""
    token = _KEEP_TEMPLATES.set(True)
    try:
        yield
    finally:
        _KEEP_TEMPLATES.reset(token)


class TemplateError(ValueError):
    """A ``${VAR}`` template that cannot be filled (the message names variables, never values)."""


class MissingVariable(TemplateError):
    """An environment variable without a default is not set."""

    def __init__(self, names: list[str]):
        self.names = names
        joined = ", ".join(names)
        super().__init__(
            f"environment variable {joined} is not set (or write ${{{names[0]}:-default}})"
        )


WORKER_SECRETS = frozenset({
    "GUANJIA_KAFKA_PASSWORD", "GUANJIA_REDIS_PASSWORD", "GUANJIA_REDIS_URL", "GUANJIA_PAGE_TOKEN", "GUANJIA_METRICS_TOKEN",
})
"""The process's own credentials: a camera config (or a record on the cameras topic) may not read them,
since what it interpolates ends up in records, pages and logs."""


class ForbiddenVariable(TemplateError):
    """A template names one of :data:`WORKER_SECRETS`."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"environment variable {', '.join(names)} holds this process's own credentials; "
                         "camera settings cannot use it (give cameras variables of their own)")


def interpolate(text: str, environ: Mapping[str, str] | None = None, *, secret_field: bool = False) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; ``$$`` is a literal ``$``. A ``secret_field`` (a camera
    URL) is left as it is inside :func:`keep_templates`.

    Raises :class:`MissingVariable` naming every unset variable, or :class:`ForbiddenVariable` for
    one of :data:`WORKER_SECRETS` (never their values).
    """
    if "$" not in text or (secret_field and _KEEP_TEMPLATES.get()):
        return text
    env = os.environ if environ is None else environ
    missing: list[str] = []
    forbidden: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name is None:
            return "$"
        if name in WORKER_SECRETS:
            forbidden.append(name)
            return ""
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    result = _VAR.sub(repl, text)
    if forbidden:
        raise ForbiddenVariable(forbidden)
    if missing:
        raise MissingVariable(missing)
    return result
