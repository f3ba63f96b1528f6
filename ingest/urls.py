"""Stream URLs: classify them and redact credentials before anything is printed or logged."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
# Cameras accept unencoded '@', '/' and even spaces in passwords, so user info runs to the LAST '@' of the
# URL: a path or query that holds an '@' is redacted too, which errs on the safe side.
_USERINFO = re.compile(r"^(?P<lead>\s*)(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@", re.DOTALL)
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:password|passwd|pass|pwd|pw|passphrase|token|access_token|auth_token|api_?key|key|secret|auth"
    r"|signature|sig|credentials?)=)[^&#;]*")


def redact_url(url: str) -> str:
    """Replace user:password (and secret-looking query values) with ``***``."""
    url = _USERINFO.sub(lambda m: f"{m.group('lead')}{m.group('scheme')}***@", url)
    return _SECRET_QUERY.sub(r"\1***", url)


def url_scheme(url: str) -> str:
    """``rtsp``, ``rtsps``, ``http``, ``https`` or ``file`` (a bare path); raises ValueError otherwise."""
    if url != url.strip():
        raise ValueError(f"URL {redact_url(url.strip())!r} has leading or trailing whitespace")
    if "://" not in url:
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


def redact_text(text: str) -> str:
    """Redact credentials of every URL inside free text (e.g. an FFmpeg error message)."""
    text = _USERINFO_ANYWHERE.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(r"\1***", text)
