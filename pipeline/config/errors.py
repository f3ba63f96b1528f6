"""Configuration problems with their place: ``file:line:col: key.path: message``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in one file. ``col`` is None for CSV rows (``file.csv:ROW: column: message``)."""

    file: str
    line: int | None
    col: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, not only the first."""

    def __init__(self, issues: Iterable[ConfigIssue]):
        self.issues: list[ConfigIssue] = sorted(set(issues), key=_order)
        super().__init__("\n".join(str(i) for i in self.issues))


def _order(issue: ConfigIssue) -> tuple:
    return (issue.file, issue.line or 0, issue.col or 0, issue.key_path, issue.message)


def format_key_path(path: Iterable[str | int]) -> str:
    """``("groups", 0, "cameras", 1, "url")`` → ``groups[0].cameras[1].url``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_error(exc: Exception) -> str:
    """Why a file could not be read, in words (``No such file or directory``, ``not UTF-8 text …``)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def whole_file_decode_error(path: Path, exc: UnicodeDecodeError) -> UnicodeDecodeError:
    """The error of decoding all of ``path`` at once: its offset counts from the file's start, where a streamed
    read's counts from the chunk it read (``exc``, returned if the file cannot be read again)."""
    try:
        path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as whole:
        return whole
    except OSError:
        pass
    return exc


def decode_position(exc: UnicodeDecodeError) -> tuple[int, int]:
    """1-based ``(line, col)`` of the first byte that is not UTF-8, for a decode of a whole file
    (the column counts the characters before it on its line, as an editor shows them)."""
    data = bytes(exc.object)
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    before = data[line_start:exc.start].decode("utf-8", errors="replace")
    return data.count(b"\n", 0, exc.start) + 1, len(before) + 1
