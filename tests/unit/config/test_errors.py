"""Every error class is reported with its file, line, column and key path — all of them at once."""

from __future__ import annotations

from pipeline.config import load_config

from .conftest import issues_of, only

CAMERA = "{id: %s, url: 'rtsp://10.0.0.1/s', grid: G1}"


def test_unknown_keys_are_reported_with_a_did_you_mean(write):
    path = write(
        "city.yaml",
        """
        defaults:
          crowd: {score_treshold: 0.4}
        groups:
          - id: g
            tonw: Humen
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                detector: [crowd]
        """,
    )
    issues = issues_of(path)
    nested = only(issues, "defaults.crowd.score_treshold")
    assert (nested.file, nested.line, nested.col) == ("city.yaml", 2, 11)
    assert "did you mean 'score_threshold'" in nested.message
    group = only(issues, "groups[0].tonw")
    assert (group.line, group.col) == (5, 5) and "did you mean 'town'" in group.message
    camera = only(issues, "groups[0].cameras[0].detector")
    assert camera.line == 10 and "did you mean 'detectors'" in camera.message
    assert len(issues) == 3


def test_wrong_types_and_missing_fields(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            analysis_interval_s: fast
            cameras:
              - id: c1
                grid: G1
                lat: north
        """,
    )
    issues = issues_of(path)
    assert only(issues, "groups[0].analysis_interval_s").line == 3
    assert "valid number" in only(issues, "groups[0].analysis_interval_s").message
    lat = only(issues, "groups[0].cameras[0].lat")
    assert (lat.line, lat.col) == (7, 14)
    missing = only(issues, "groups[0].cameras[0].url")
    assert missing.line == 5 and missing.message == "missing required key 'url'"


def test_bad_url_scheme_is_reported_without_the_password(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            cameras:
              - {id: c1, url: "ftp://admin:hunter2@10.0.0.1/s", grid: G1}
        """,
    )
    issue = only(issues_of(path), "groups[0].cameras[0].url")
    assert issue.line == 4 and "unsupported URL scheme 'ftp'" in issue.message
    assert "hunter2" not in str(issue) and "***" in issue.message


def test_a_mistyped_url_scheme_is_reported_at_its_line_without_the_password(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            cameras:
              - {id: c1, url: "rtsp:/admin:hunter2@10.0.0.2/s", grid: G1}
              - {id: c2, url: "rtsp//admin:hunter2@10.0.0.6/s", grid: G1}
              - {id: c3, url: "rtsp://10.0.0.3/s", grid: G1}
        """,
    )
    issues = issues_of(path)
    first, second = only(issues, "groups[0].cameras[0].url"), only(issues, "groups[0].cameras[1].url")
    assert (first.file, first.line, second.line) == ("city.yaml", 4, 5)
    assert "looks like a mistyped scheme; did you mean 'rtsp://***@10.0.0.2/s'?" in first.message
    assert "did you mean 'rtsp://***@10.0.0.6/s'?" in second.message
    assert len(issues) == 2 and all("hunter2" not in str(issue) for issue in issues)


def test_nan_and_inf_are_refused_where_they_are_written(write):
    path = write(
        "city.yaml",
        """
        defaults:
          crowd: {score_threshold: .nan}
          reconnect: {backoff_cap_s: .inf}
        groups:
          - id: g
            analysis_interval_s: .inf
            cameras:
              - {id: c1, url: "rtsp://10.0.0.1/s", grid: G1, lat: .nan}
        """,
    )
    issues = issues_of(path)
    threshold = only(issues, "defaults.crowd.score_threshold")
    assert (threshold.file, threshold.line) == ("city.yaml", 2) and "finite number" in threshold.message
    assert only(issues, "defaults.reconnect.backoff_cap_s").line == 3
    assert only(issues, "groups[0].analysis_interval_s").line == 6
    assert only(issues, "groups[0].cameras[0].lat").line == 8


def test_an_unknown_sensor_kind_in_the_thresholds_is_refused_with_a_hint(write):
    path = write(
        "city.yaml",
        """
        defaults:
          rules:
            sensors:
              thresholds: {gass: 10, temperature: 60}
        groups:
          - id: g
            cameras:
              - {id: c1, url: "rtsp://10.0.0.1/s", grid: G1}
        """,
    )
    issue = only(issues_of(path), "defaults.rules.sensors.thresholds.gass")
    assert issue.line == 4 and "did you mean 'gas'" in issue.message


def test_polygon_errors(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                zones:
                  - {name: two, polygon: [[0, 0], [1, 1]]}
                  - {name: out, polygon: [[0, 0], [1.5, 0], [1, 1]]}
                  - name: bowtie
                    polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]
                ignore_masks:
                  - [[0, 0], [1, 0]]
        """,
    )
    issues = issues_of(path)
    assert "at least 3 points" in only(issues, "groups[0].cameras[0].zones[0].polygon").message
    outside = only(issues, "groups[0].cameras[0].zones[1].polygon")
    assert outside.line == 9 and "outside [0, 1]" in outside.message
    bowtie = only(issues, "groups[0].cameras[0].zones[2].polygon")
    assert bowtie.line == 11 and "self-intersecting" in bowtie.message
    assert "at least 3 points" in only(issues, "groups[0].cameras[0].ignore_masks").message


def test_unknown_detector_suggests_the_near_one(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            detectors: [crowd, fier]
            cameras: [{}]
        """.format(CAMERA % "c1"),
    )
    issue = only(issues_of(path), "groups[0].detectors[1]")
    assert (issue.line, issue.col) == (3, 24)
    assert "'fier'" in issue.message and "did you mean 'fire'" in issue.message


def test_missing_environment_variable_names_it(write, monkeypatch):
    monkeypatch.delenv("GJ_TEST_PASSWORD", raising=False)
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://admin:${GJ_TEST_PASSWORD}@10.0.0.1/s
                grid: G1
        """,
    )
    issue = only(issues_of(path), "groups[0].cameras[0].url")
    assert (issue.file, issue.line, issue.col) == ("city.yaml", 5, 14)
    assert "GJ_TEST_PASSWORD is not set" in issue.message


def test_unreadable_include_points_at_the_include_line(write):
    path = write(
        "city.yaml",
        """
        include:
          - parts/ok.yaml
          - parts/missing.yaml
        groups: []
        """,
    )
    write("parts/ok.yaml", "groups: []\n")
    issue = only(issues_of(path), "include[1]")
    assert (issue.file, issue.line, issue.col) == ("city.yaml", 3, 5)
    assert "cannot read included file 'parts/missing.yaml'" in issue.message


def test_errors_inside_an_included_file_name_that_file(write):
    path = write("city.yaml", "include: [parts/town.yaml]\n")
    write("parts/town.yaml", "groups:\n  - id: g\n    cameras:\n      - {id: c1, url: 'rtsp://h/s', grid: G1, lat: 91}\n")
    issue = only(issues_of(path), "groups[0].cameras[0].lat")
    assert (issue.file, issue.line) == ("parts/town.yaml", 4)


def test_include_cycle(write):
    path = write("a.yaml", "include: [b.yaml]\n")
    write("b.yaml", "include: [a.yaml]\n")
    issue = only(issues_of(path), "include[0]")
    assert issue.file == "b.yaml" and "cycle" in issue.message


def test_duplicate_camera_ids_name_both_places_across_files(write):
    a = write("a.yaml", "groups:\n  - id: ga\n    cameras:\n      - {}\n".format(CAMERA % "cam-1"))
    b = write("b.yaml", "groups:\n  - id: gb\n    cameras:\n      - {}\n      - {}\n".format(CAMERA % "cam-2", CAMERA % "cam-1"))
    issue = only(issues_of(a, b), "groups[0].cameras[1].id")
    assert (issue.file, issue.line) == ("b.yaml", 5)
    assert "duplicate camera id 'cam-1'" in issue.message and "a.yaml:4" in issue.message


def test_duplicate_group_ids(write):
    path = write("a.yaml", "groups:\n  - id: g\n  - id: g\n")
    issue = only(issues_of(path), "groups[1].id")
    assert issue.line == 3 and "duplicate group id 'g' (first defined at a.yaml:2)" in issue.message


def test_yaml_syntax_and_duplicate_keys(write):
    broken = write("broken.yaml", "groups:\n  - id: g\n    cameras: [\n")
    [syntax] = issues_of(broken)
    assert syntax.file == "broken.yaml" and syntax.line is not None and "YAML syntax" in syntax.message
    dup = write("dup.yaml", "groups: []\ngroups: []\n")
    issue = only(issues_of(dup), "groups")
    assert issue.line == 2 and "duplicate key (first written on line 1)" in issue.message


def test_top_level_must_be_a_mapping(write):
    path = write("list.yaml", "- id: g\n")
    [issue] = issues_of(path)
    assert issue.line == 1 and "top level must be a mapping" in issue.message


def test_cross_field_rule_error_is_reported_where_the_value_was_written(write):
    path = write(
        "city.yaml",
        """
        defaults:
          rules:
            crowding: {threshold: 10, clear_threshold: 8}
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                rules: {crowding: {threshold: 5}}
        """,
    )
    issue = only(issues_of(path), "groups[0].cameras[0].rules.crowding")
    assert issue.line == 10 and "clear_threshold must be <= threshold" in issue.message


def test_every_error_is_reported_not_only_the_first(write):
    path = write(
        "city.yaml",
        """
        defaults: {analysis_interval_s: -1}
        groups:
          - id: g
            cameras:
              - {id: c1, url: "ftp://h/s", grid: G1}
              - {id: c1, url: "rtsp://h/s", grid: ""}
              - {id: "bad id", url: "rtsp://h/s", grid: G1, enabled: maybe}
        """,
    )
    lines = sorted(str(i) for i in issues_of(path))
    assert len(lines) == 6, lines
    assert all(line.startswith("city.yaml:") for line in lines)


def test_a_valid_file_loads(write):
    path = write("ok.yaml", "groups:\n  - id: g\n    cameras: [%s]\n" % (CAMERA % "c1"))
    city = load_config([path])
    assert [c.id for c in city.cameras] == ["c1"] and city.camera("c1").group_id == "g"


def test_a_number_where_text_is_expected_gets_a_quoting_hint(write):
    path = write("city.yaml", "groups:\n  - id: g\n    cameras:\n      - {id: c1, url: 'rtsp://h/s', grid: 2024}\n")
    issue = only(issues_of(path), "groups[0].cameras[0].grid")
    assert issue.col == 43 and "YAML read 2024 as a number: quote it" in issue.message


def test_yaml_anchors_under_x_keys_and_merge_keys(write):
    path = write(
        "city.yaml",
        """
        x-gate: &gate {name: gate, polygon: [[0, 0], [1, 0], [1, 1]]}
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://h/s
                grid: G1
                zones:
                  - <<: *gate
                    crowd_threshold: 4
        """,
    )
    [zone] = load_config([path]).camera("c1").zones
    assert (zone.name, zone.crowd_threshold, len(zone.polygon)) == ("gate", 4, 3)


def test_settings_a_detector_could_not_run_with_are_rejected_where_written(write):
    path = write(
        "city.yaml",
        """
        defaults:
          fire: {confirm_n: 5}
        groups:
          - id: g
            crowd: {tiles: [0, 2]}
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                fire: {confirm_k: 6}
        """,
    )
    issues = issues_of(path)
    tiles = only(issues, "groups[0].crowd.tiles[0]")
    assert tiles.line == 5 and "greater than or equal to 1" in tiles.message
    fire = only(issues, "groups[0].cameras[0].fire")
    assert fire.line == 10 and "confirm_k (6) must not exceed confirm_n (5)" in fire.message
    assert len(issues) == 2


def test_city_wide_rules_set_on_a_group_or_camera_are_rejected_where_written(write):
    path = write(
        "city.yaml",
        """
        defaults:
          rules: {sensors: {thresholds: {gas: 10}}}
        groups:
          - id: g
            rules: {fusion_window_s: 60, update_ratio: 1.5}
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                rules:
                  sensors: {confidence: 0.5}
        """,
    )
    issues = issues_of(path)
    group = only(issues, "groups[0].rules.fusion_window_s")
    assert group.line == 5 and "applies city-wide" in group.message and "defaults.rules" in group.message
    assert only(issues, "groups[0].cameras[0].rules.sensors").line == 11
    assert len(issues) == 2  # update_ratio is a per-camera crowding setting too: allowed


def test_a_crowding_clear_level_of_zero_is_rejected_where_written(write):
    """A crowding event closes on a level below its clear level: at 0 it could never close."""
    path = write(
        "city.yaml",
        """
        defaults:
          rules: {crowding: {clear_threshold: 0}}
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                zones:
                  - {name: gate, polygon: [[0, 0], [1, 0], [1, 1]], crowd_clear_threshold: 0}
        """,
    )
    issues = issues_of(path)
    rule = only(issues, "defaults.rules.crowding.clear_threshold")
    assert (rule.file, rule.line) == ("city.yaml", 2) and "greater than 0" in rule.message
    zone = only(issues, "groups[0].cameras[0].zones[0].crowd_clear_threshold")
    assert zone.line == 10 and "greater than 0" in zone.message
    assert len(issues) == 2
