"""Stream URLs: classify them and redact credentials before anything is printed or logged."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
# Cameras accept unencoded '@', '/' and even spaces in passwords, so user info runs to the LAST '@' of the
# URL: a path or query that holds an '@' is redacted too, which errs on the safe side.
_USERINFO = re.compile(r"^(?P<lead>\s*)(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@", re.DOTALL)
# The same without '://' (a mistyped scheme such as 'rtsp:/admin:pw@h' or 'rtsp//admin:pw@h', or none at all):
# 'user:password@' at the start or after a '/', kept apart from a mistyped scheme in front of it.
_BARE_USERINFO = re.compile(r"(?P<lead>(?:^\s*|/)(?:[A-Za-z][A-Za-z0-9+.-]*(?::/*|//))?)[^\s/:@]+:.*@", re.DOTALL)
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:password|passwd|pass|pwd|pw|passphrase|token|access_token|auth_token|api_?key|key|secret|auth"
    r"|signature|sig|credentials?)=)[^&#;]*")
# Vendors name the password parameter freely (loginpass, loginpas, userpwd, psw, user_password...) and some
# write it in the path, '_'-joined ('/user=admin_password=x_channel=1'): any name holding pas, pwd or psw
# after ? & ; / or _ has its value redacted, up to the next separator or '_name='.
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;/_])[\w.-]*?(?:pas|pwd|psw)[\w.-]*=)(?:(?!_[a-z][a-z0-9]*=)[^&#;\s'\"])*")
# A bare path that is really a URL with a mistyped scheme ('rtsp:/h', 'rtsp:h', 'rtsp//h')...
_MISTYPED_SCHEME = re.compile(r"^(?P<scheme>rtsps?|https?|file)(?::/*|//+)(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
# ...or one that holds 'user:password@' (a URL without its scheme).
_BARE_CREDENTIALS = re.compile(r"(?:^|/)[^\s/:@]+:[^@]*@")


def _redact_params(text: str) -> str:
    return _SECRET_PARAM.sub(r"\1***", _SECRET_QUERY.sub(r"\1***", text))


def redact_url(url: str) -> str:
    """Replace user:password (and secret-looking query or path parameter values) with ``***``.

    Also for strings without ``://`` (``rtsp:/admin:pw@h``, ``rtsp//admin:pw@h``, ``admin:pw@h``).
    """
    url, n = _USERINFO.subn(lambda m: f"{m.group('lead')}{m.group('scheme')}***@", url)
    if not n:
        url = _BARE_USERINFO.sub(lambda m: f"{m.group('lead')}***@", url)
    return _redact_params(url)


def url_scheme(url: str) -> str:
    """``rtsp``, ``rtsps``, ``http``, ``https`` or ``file`` (a bare path); raises ValueError otherwise.

    A bare path that starts like a URL with a mistyped scheme (``rtsp:/h/s``, ``rtsp//h/s``) or holds
    ``user:password@`` is refused: it is a URL that would be opened as a file, its password shown as a path.
    """
    if url != url.strip():
        raise ValueError(f"url {redact_url(url.strip())!r} has leading or trailing whitespace")
    if "://" not in url:
        mistyped = _MISTYPED_SCHEME.match(url)
        if mistyped:
            scheme, rest = mistyped.group("scheme").lower(), mistyped.group("rest")
            meant = f"file:///{rest}" if scheme == "file" else f"{scheme}://{rest}"
            raise ValueError(f"url {redact_url(url)!r} looks like a mistyped scheme; did you mean {redact_url(meant)!r}?")
        if _BARE_CREDENTIALS.search(url):
            raise ValueError(f"url {redact_url(url)!r} holds credentials (user:password@) but no scheme; "
                             "write rtsp://user:password@host/... (a file name may not hold 'name:...@')")
        return "file"
    scheme = urlsplit(url).scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {scheme!r} in {redact_url(url)}; use one of rtsp://, rtsps://, http(s)://, or a file path"
        )
    return scheme


def file_path(url: str) -> Path:
    """The local path of a ``file://`` URL or bare path."""
    return Path(urlsplit(url).path if url.startswith("file://") else url)


_USERINFO_ANYWHERE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s@'\"]*@)+")
# 'user:password@' without '://' in front (a mistyped scheme, or none): 'rtsp:/a:pw@h', 'rtsp//a:pw@h', 'a:pw@h'.
_BARE_USERINFO_ANYWHERE = re.compile(
    r"(?P<lead>\b[A-Za-z][A-Za-z0-9+.-]*(?::/?(?!/)|//))?[^\s/:@'\"]+:(?!//)(?:[^\s@'\"]*@)+")


def redact_text(text: str) -> str:
    """Redact credentials of every URL inside free text (e.g. an FFmpeg error message)."""
    text = _USERINFO_ANYWHERE.sub(lambda m: f"{m.group('scheme')}***@", text)
    text = _BARE_USERINFO_ANYWHERE.sub(lambda m: f"{m.group('lead') or ''}***@", text)
    return _redact_params(text)
