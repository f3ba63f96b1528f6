"""Helpers for config tests: write files into tmp_path and collect the loader's issues."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.config import ConfigError, ConfigIssue, load_config


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``write("a.yaml", text)`` → path; runs the test in tmp_path so issue file names are short."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return Path(name)

    return _write


def issues_of(*paths: Path) -> list[ConfigIssue]:
    """Every issue load_config raises for ``paths`` (fails the test if it loads cleanly)."""
    with pytest.raises(ConfigError) as info:
        load_config(list(paths))
    return info.value.issues


def only(issues: list[ConfigIssue], key_path: str) -> ConfigIssue:
    """The single issue at ``key_path``."""
    found = [i for i in issues if i.key_path == key_path]
    assert len(found) == 1, f"expected one issue at {key_path!r}, got: {[str(i) for i in issues]}"
    return found[0]
