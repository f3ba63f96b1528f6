"""load_model_file: any YAML file against any pydantic model, with positions."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, Schedule, load_model_file


def test_valid_file(write):
    path = write("s.yaml", "start: '06:00'\nend: '22:00'\ndays: [mon, sat]\n")
    assert load_model_file(path, Schedule).days == ["mon", "sat"]


def test_errors_carry_line_column_and_key(write):
    path = write("s.yaml", "start: '6am'\ndays: [mon, funday]\ntimezon: UTC\n")
    with pytest.raises(ConfigError) as info:
        load_model_file(path, Schedule)
    lines = [str(i) for i in info.value.issues]  # sorted by place; a missing key points at its mapping
    assert len(lines) == 4, lines
    assert lines[0] == "s.yaml:1:1: end: missing required key 'end'"
    assert lines[1].startswith("s.yaml:1:8: start: string should match pattern")
    assert lines[2].startswith("s.yaml:2:7: days: unknown day(s) ['funday']")
    assert lines[3] == "s.yaml:3:1: timezon: unknown key 'timezon'; did you mean 'timezone'?"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_model_file(tmp_path / "absent.yaml", Schedule)
