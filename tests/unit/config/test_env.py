from __future__ import annotations

import pytest

from pipeline.config.env import MissingVariable, interpolate

ENV = {"USER": "admin", "EMPTY": ""}


def test_variables_defaults_and_escapes():
    assert interpolate("rtsp://${USER}@h", ENV) == "rtsp://admin@h"
    assert interpolate("${NOPE:-x}/${EMPTY:-y}/${USER:-z}", ENV) == "x/y/admin"
    assert interpolate("${EMPTY}", ENV) == ""
    assert interpolate("pa$$word ${USER}", ENV) == "pa$word admin"
    assert interpolate("cost $5", ENV) == "cost $5"


def test_missing_variables_are_all_named_and_values_never_shown():
    with pytest.raises(MissingVariable) as info:
        interpolate("rtsp://${A_USER}:${A_PASS}@h", ENV)
    assert info.value.names == ["A_USER", "A_PASS"]
    assert "A_USER, A_PASS is not set" in str(info.value)
