"""YAML features at the edges: merge keys that override, and tags the loader does not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config

from .conftest import issues_of, only


def test_own_keys_override_merged_keys(write):
    path = write(
        "city.yaml",
        """
        x-cam: &cam
          grid: G1
          url: rtsp://h/s
          crowd: {score_threshold: 0.3, nms_iou: 0.5}
        x-night: &night {grid: N1, name: night, enabled: false}
        groups:
          - id: g
            cameras:
              - <<: *cam
                id: c1
                grid: G2
                crowd: {score_threshold: 0.6}
              - <<: [*night, *cam]
                id: c2
              - <<: *cam
                id: c3
        """,
    )
    city = load_config([path])
    c1, c2, c3 = (city.camera(c) for c in ("c1", "c2", "c3"))
    assert (c1.grid, c1.url, c1.settings.crowd.score_threshold) == ("G2", "rtsp://h/s", 0.6)
    assert c1.settings.crowd.nms_iou != 0.5  # YAML merges are shallow: the camera's crowd replaces the anchor's
    assert (c2.grid, c2.name, c2.enabled, c2.url) == ("N1", "night", False, "rtsp://h/s")  # the first mapping wins
    assert c3.grid == "G1"  # the anchor itself is unchanged by c1's override


def test_duplicate_own_keys_next_to_a_merge_key_are_still_errors(write):
    path = write(
        "city.yaml",
        """
        x-cam: &cam {grid: G1, url: rtsp://h/s}
        groups:
          - id: g
            cameras:
              - <<: *cam
                id: c1
                grid: G2
                grid: G3
        """,
    )
    issue = only(issues_of(path), "groups[0].cameras[0].grid")
    assert (issue.line, issue.col) == (8, 9) and "duplicate key (first written on line 7)" in issue.message


def test_errors_in_a_merged_anchor_point_at_the_anchor(write):
    path = write("city.yaml", "x-cam: &cam {grid: G1, url: rtsp://h/s, bogus: 1}\ngroups:\n  - id: g\n"
                              "    cameras:\n      - {<<: *cam, id: c1}\n      - {<<: 5, id: c2}\n")
    issues = issues_of(path)
    assert only(issues, "groups[0].cameras[0].bogus").line == 1
    assert "YAML merge: <<: takes a mapping" in only(issues, "groups[0].cameras[1]").message


@pytest.mark.parametrize(("value", "key", "message"), [
    ("id: !custom g", "id", "unsupported YAML tag '!custom'"),
    ("url: !env CAM_URL", "url", "unsupported YAML tag '!env'"),
    ("id: !!python/object:os.system g", "id", "unsupported YAML tag '!!python/object:os.system'"),
    ("lat: !!float abc", "lat", "value is not valid for YAML tag '!!float'"),
    ("enabled: !!bool maybe", "enabled", "value is not valid for YAML tag '!!bool'"),
    ("!custom name: x", "name", "unsupported YAML tag '!custom'"),
    ("zones: !!set {a, b}", "zones", "unsupported YAML tag '!!set'"),
])
def test_unknown_or_invalid_tags_are_errors_not_tracebacks(write, value, key, message):
    camera = {"id": "id: c1", "url": "url: rtsp://h/s", "grid": "grid: G1"}
    camera[key] = value
    path = write("city.yaml", "groups:\n  - id: g\n    cameras:\n      - " + "\n        ".join(camera.values()) + "\n")
    issues = issues_of(path)
    issue = [i for i in issues if i.key_path == f"groups[0].cameras[0].{key}" and "YAML tag" in i.message]
    assert len(issue) == 1, [str(i) for i in issues]
    assert (issue[0].file, issue[0].line, issue[0].message) == ("city.yaml", 4 + list(camera).index(key), message)


def test_a_bad_tag_under_an_alias_is_reported_each_time_without_a_traceback(write):
    path = write("city.yaml", "x-u: &u !custom rtsp://h/s\ngroups:\n  - id: g\n    cameras:\n"
                              "      - {id: c1, url: *u, grid: G1}\n      - {id: c2, url: *u, grid: G1}\n")
    issues = issues_of(path)
    assert only(issues, "groups[0].cameras[0].url").message == "unsupported YAML tag '!custom'"
    assert only(issues, "groups[0].cameras[1].url").message == "unsupported YAML tag '!custom'"


def test_a_file_that_is_not_utf8_gets_the_line_and_column_of_the_bad_byte(write, tmp_path):
    (tmp_path / "gbk.yaml").write_bytes("groups:\n  - id: g\n    town: 镇".encode() + "安\n".encode("gbk"))
    [issue] = issues_of(Path("gbk.yaml"))
    assert (issue.file, issue.line, issue.col) == ("gbk.yaml", 3, 12)  # after "    town: 镇", counted in characters
    assert "not UTF-8 text (byte 0xb0 at offset 31)" in issue.message and str(issue).startswith("gbk.yaml:3:12: ")
    (tmp_path / "utf16.yaml").write_bytes("groups: []\n".encode("utf-16"))
    [issue] = issues_of(Path("utf16.yaml"))
    assert (issue.line, issue.col) == (1, 1)
