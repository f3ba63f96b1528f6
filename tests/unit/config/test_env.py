from __future__ import annotations

from contextlib import nullcontext

import pytest

from pipeline.config.env import (
    ForbiddenVariable,
    MalformedTemplate,
    MissingVariable,
    interpolate,
    keep_templates,
)

from .conftest import issues_of, only

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


@pytest.mark.parametrize(("text", "fragment", "why"), [
    ("rtsp://u:${CAM_PW@host/s", "'${CAM_PW'", "no closing }"),
    ("rtsp://u:${CAM-PW}@host/s", "'${CAM'", "letters, digits and _"),
    ("rtsp://u:${ X }@host/s", "'${'", "a variable name must follow ${"),
    ("rtsp://u:${CAM_PW:?required}@host/s", "'${CAM_PW:?'", "only ${NAME:-default} is supported"),
    ("rtsp://u:${A:-${B}}@host/s", "'${A'", "a default cannot hold another"),
    ("rtsp://u:${1PW}@host/s", "'${1PW'", "starts with a letter or _"),
])
def test_malformed_templates_are_errors_naming_only_the_template(text, fragment, why):
    for secret_field in (False, True):
        with pytest.raises(MalformedTemplate) as info:
            interpolate(text, {"CAM_PW": "hunter2", "A": "", "B": "b"}, secret_field=secret_field)
        assert f"malformed template {fragment}: " in str(info.value) and why in str(info.value)
        assert "host" not in str(info.value) and "hunter2" not in str(info.value)


def test_a_bare_dollar_name_is_an_error_in_urls_only():
    with pytest.raises(MalformedTemplate, match=r"a \$NAME without braces is not filled") as info:
        interpolate("rtsp://admin:$CAM_PW@h/s", ENV, secret_field=True)
    assert "CAM_PW" not in str(info.value)  # it may be part of a literal password: not echoed
    assert interpolate("rtsp://admin:$$CAM_PW@h/s", ENV, secret_field=True) == "rtsp://admin:$CAM_PW@h/s"
    assert interpolate("rtsp://admin:pa$word$1@h/s", ENV, secret_field=True) == "rtsp://admin:pa$word$1@h/s"
    assert interpolate("price $CAM_PW", ENV) == "price $CAM_PW"  # other text keeps a bare $ as before
    assert interpolate("$${X} $$", ENV) == "${X} $"


def test_keep_templates_still_checks_templates_but_does_not_fill_them():
    with keep_templates():
        assert interpolate("rtsp://u:${UNSET_PW}@h/s", {}, secret_field=True) == "rtsp://u:${UNSET_PW}@h/s"
        with pytest.raises(ForbiddenVariable, match="GUANJIA_KAFKA_PASSWORD"):
            interpolate("rtsp://u:${GUANJIA_KAFKA_PASSWORD}@h/s", {}, secret_field=True)
        with pytest.raises(MalformedTemplate, match=r"'\${CAM_PW:\?'"):
            interpolate("rtsp://u:${CAM_PW:?required}@h/s", {}, secret_field=True)
        with pytest.raises(MalformedTemplate, match="no closing"):
            interpolate("rtsp://u:${CAM_PW@h/s", {}, secret_field=True)
        with pytest.raises(MalformedTemplate, match=r"\$NAME"):
            interpolate("rtsp://u:$CAM_PW@h/s", {}, secret_field=True)


def test_malformed_templates_are_reported_at_the_yaml_key_and_csv_cell(write):
    write("cams.csv", "id,url,grid\nk1,rtsp://op:${CAM_PW@10.0.0.2/s1,G2\n")
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            name: "Gate ${ X }"
            inventory: cams.csv
            cameras:
              - id: c1
                url: rtsp://admin:${CAM-PW}@10.0.0.1/s
                grid: G1
        """,
    )
    for keep in (False, True):  # `guanjia cameras publish` loads with keep_templates and checks them too
        with keep_templates() if keep else nullcontext():
            issues = issues_of(path)
        url = only(issues, "groups[0].cameras[0].url")
        assert (url.file, url.line, url.col) == ("city.yaml", 7, 14) and "malformed template '${CAM'" in url.message
        assert only(issues, "groups[0].name").line == 3
        cell = only(issues, "url")
        assert (cell.file, cell.line) == ("cams.csv", 2) and "malformed template '${CAM_PW': no closing }" in cell.message
        assert all("10.0.0" not in str(i) for i in issues)


def test_publish_loading_rejects_the_workers_own_credentials(write, monkeypatch):
    monkeypatch.setenv("GUANJIA_KAFKA_PASSWORD", "kafka-SECRET")
    write("cams.csv", "id,url,grid\nk1,rtsp://op:${GUANJIA_REDIS_PASSWORD}@10.0.0.2/s1,G2\n")
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            inventory: cams.csv
            cameras:
              - {id: c1, url: "rtsp://u:${GUANJIA_KAFKA_PASSWORD}@10.0.0.1/s", grid: G1}
        """,
    )
    with keep_templates():
        issues = issues_of(path)
    assert "GUANJIA_KAFKA_PASSWORD holds this process's own credentials" in only(issues, "groups[0].cameras[0].url").message
    assert "GUANJIA_REDIS_PASSWORD holds this process's own credentials" in only(issues, "url").message
    assert all("SECRET" not in str(i) for i in issues)
