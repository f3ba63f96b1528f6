"""``${VAR}`` and ``${VAR:-default}`` interpolation for string values (secrets stay out of files)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

# ${VAR} / ${VAR:-default} (groups 1, 2), else $$, a stray ${ or $ (checked by check_templates)
_TOKEN = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$|\{|[A-Za-z0-9_]*)")


_KEEP_TEMPLATES: ContextVar[bool] = ContextVar("guanjia_keep_templates", default=False)


@contextmanager
def keep_templates() -> Iterator[None]:
    """Within this block :func:`interpolate` leaves the ``${VAR}`` templates of secret fields (camera
    URLs) unchanged: ``guanjia cameras publish`` ships URL templates, never interpolated secrets, and
    each worker fills them from its own environment. The templates are still checked (syntax, and
    never one of :data:`WORKER_SECRETS`); only an unset variable is left for the worker to report."""
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


class MalformedTemplate(TemplateError):
    """A ``${`` that does not open a ``${VAR}`` / ``${VAR:-default}`` template, or a bare ``$NAME`` in a
    URL (the message shows the template's name part only, never a value or a default)."""


_NAME_CHARS = re.compile(r"[A-Za-z0-9_]*")
_BARE_NAME = re.compile(r"\$[A-Z][A-Z0-9_]*")  # $CAM_PW in a URL: meant as ${CAM_PW}?
_SYNTAX = "templates are ${NAME} or ${NAME:-default}, and $$ is a literal $"


def _malformed(text: str, start: int) -> MalformedTemplate:
    """Why the ``${`` at ``start`` does not open a template, naming only ``${`` and the name after it."""
    name = _NAME_CHARS.match(text, start + 2).group()
    fragment = "${" + name
    after = start + 2 + len(name)
    if "}" not in text[after:]:
        why = "no closing }"
    elif not name:
        why = "a variable name must follow ${"
    elif name[0].isdigit():
        why = "a variable name starts with a letter or _"
    elif text.startswith(":-", after):
        why = "a default cannot hold another ${...} template"
    elif text.startswith(":", after):
        fragment += text[after:after + 2]
        why = "only ${NAME:-default} is supported"
    else:
        why = "a variable name holds only letters, digits and _"
    return MalformedTemplate(f"malformed template {fragment!r}: {why}; {_SYNTAX}")


def check_templates(text: str, *, secret_field: bool = False) -> list[tuple[str, str | None]]:
    """The ``(name, default)`` of every ``${VAR}`` / ``${VAR:-default}`` in ``text``.

    Raises :class:`MalformedTemplate` for a ``${`` that opens none (``${CAM_PW``, ``${CAM-PW}``,
    ``${X:?msg}``, ``${A:-${B}}``) and, in a ``secret_field`` (a camera URL), for a bare
    ``$NAME`` in capitals, which is never filled in (a ``$`` before anything else stays literal).
    """
    found: list[tuple[str, str | None]] = []
    for m in _TOKEN.finditer(text):
        if m.group(1) is not None:
            if m.group(2) is not None and "${" in m.group(2):
                raise _malformed(text, m.start())
            found.append((m.group(1), m.group(2)))
        elif m.group(0) == "${":
            raise _malformed(text, m.start())
        elif secret_field and _BARE_NAME.fullmatch(m.group(0)):
            raise MalformedTemplate("a $NAME without braces is not filled from the environment; write ${NAME} "
                                    "for the variable, or $$ for a literal $")
    return found


def has_template(text: str) -> bool:
    """Whether ``text`` still holds a ``${VAR}`` template (``$$`` escapes do not count)."""
    return "${" in text and any(m.group(1) is not None for m in _TOKEN.finditer(text))


def templates_kept() -> bool:
    """Whether this is a :func:`keep_templates` block (camera URLs keep their ``${VAR}`` templates)."""
    return _KEEP_TEMPLATES.get()


def interpolate(text: str, environ: Mapping[str, str] | None = None, *, secret_field: bool = False) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; ``$$`` is a literal ``$``. A ``secret_field`` (a camera
    URL) is left as it is inside :func:`keep_templates`, once its templates are checked.

    Raises :class:`MalformedTemplate` for broken template syntax (see :func:`check_templates`),
    :class:`ForbiddenVariable` for one of :data:`WORKER_SECRETS`, or :class:`MissingVariable` naming
    every unset variable (never their values); inside :func:`keep_templates` a secret field is not
    filled, so unset variables are the worker's to report.
    """
    if "$" not in text:
        return text
    templates = check_templates(text, secret_field=secret_field)
    forbidden = [name for name, _ in templates if name in WORKER_SECRETS]
    if forbidden:
        raise ForbiddenVariable(list(dict.fromkeys(forbidden)))
    if secret_field and _KEEP_TEMPLATES.get():
        return text
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name is None:
            return "$" if m.group(0) == "$$" else m.group(0)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    result = _TOKEN.sub(repl, text)
    if missing:
        raise MissingVariable(missing)
    return result
