"""defaults → group → camera (camera wins), deep merge, includes, shared settings objects."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config
from pipeline.config.merge import deep_merge


def test_deep_merge_is_non_destructive_and_lists_replace():
    base = {"crowd": {"score_threshold": 0.5, "nms_iou": 0.4}, "detectors": ["crowd", "fire"]}
    over = {"crowd": {"score_threshold": 0.3}, "detectors": ["fire"]}
    merged = deep_merge(base, over)
    assert merged == {"crowd": {"score_threshold": 0.3, "nms_iou": 0.4}, "detectors": ["fire"]}
    assert base["crowd"]["score_threshold"] == 0.5  # inputs untouched


def test_merge_order_defaults_group_camera(write):
    path = write(
        "city.yaml",
        """
        defaults:
          analysis_interval_s: 5
          crowd: {score_threshold: 0.6, nms_iou: 0.3}
          rules: {crowding: {threshold: 30, clear_threshold: 20, dwell_s: 45}}
        groups:
          - id: g
            town: Humen
            village: Zhen'an
            analysis_interval_s: 3
            crowd: {score_threshold: 0.4}
            detectors: [crowd]
            cameras:
              - id: plain
                url: rtsp://10.0.0.1/s
                grid: G1
              - id: custom
                url: rtsp://10.0.0.2/s
                grid: G2
                village: Baisha
                analysis_interval_s: 1
                crowd: {tiles: [2, 1]}
                rules: {crowding: {threshold: 25}}
                detectors: [fire]
        """,
    )
    city = load_config([path])
    plain, custom = city.camera("plain"), city.camera("custom")
    assert plain.settings.analysis_interval_s == 3  # group over defaults
    assert plain.settings.crowd.score_threshold == 0.4 and plain.settings.crowd.nms_iou == 0.3
    assert plain.settings.detectors == ["crowd"]
    assert (plain.town, plain.village) == ("Humen", "Zhen'an")
    assert custom.settings.analysis_interval_s == 1  # camera over group
    assert custom.settings.crowd.tiles == (2, 1)
    assert custom.settings.crowd.score_threshold == 0.4  # sibling key kept by the deep merge
    assert custom.settings.rules.crowding.threshold == 25
    assert custom.settings.rules.crowding.dwell_s == 45  # from defaults
    assert custom.settings.detectors == ["fire"]  # lists replace
    assert (custom.town, custom.village) == ("Humen", "Baisha")


def test_cameras_without_overrides_share_their_groups_settings(write):
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            fire: {threshold: 0.7}
            cameras:
              - {id: a, url: "rtsp://h/a", grid: G1}
              - {id: b, url: "rtsp://h/b", grid: G1}
              - {id: c, url: "rtsp://h/c", grid: G1, fire: {threshold: 0.9}}
        """,
    )
    city = load_config([path])
    a, b, c = (city.camera(x) for x in "abc")
    assert a.settings is b.settings and a.settings.fire.threshold == 0.7
    assert c.settings is not a.settings and c.settings.fire.threshold == 0.9


def test_included_file_inherits_then_overrides_the_including_defaults(write):
    path = write(
        "city.yaml",
        """
        defaults: {analysis_interval_s: 4, runtime: {max_batch: 16}}
        include: [towns/humen.yaml]
        groups:
          - id: outer
            cameras: [{id: o, url: "rtsp://h/o", grid: G1}]
        """,
    )
    write(
        "towns/humen.yaml",
        """
        defaults: {runtime: {providers: [CUDAExecutionProvider, CPUExecutionProvider]}}
        groups:
          - id: inner
            cameras: [{id: i, url: "clip.mp4", grid: G2}]
        """,
    )
    city = load_config([path])
    inner, outer = city.camera("i"), city.camera("o")
    assert inner.settings.analysis_interval_s == 4 and inner.settings.runtime.max_batch == 16
    assert inner.settings.runtime.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert outer.settings.runtime.providers == ["CPUExecutionProvider"]  # included defaults stay inside
    assert inner.url == str((Path("towns") / "clip.mp4").resolve())  # relative to the including file
    assert city.source_files == ["city.yaml", "towns/humen.yaml"]


def test_a_file_given_and_also_included_is_loaded_once(write):
    path = write("city.yaml", "include: [part.yaml]\n")
    part = write("part.yaml", "groups:\n  - id: g\n    cameras: [{id: c, url: 'rtsp://h/c', grid: G}]\n")
    city = load_config([part, path])
    assert [c.id for c in city.cameras] == ["c"]


def test_env_interpolation_and_relative_paths(write, monkeypatch, tmp_path):
    monkeypatch.setenv("GJ_PW", "s3cret")
    monkeypatch.delenv("GJ_UNSET", raising=False)
    path = write(
        "conf/city.yaml",
        """
        groups:
          - id: g
            name: ${GJ_UNSET:-Market}
            cameras:
              - {id: a, url: "rtsp://admin:${GJ_PW}@10.0.0.1/s", grid: G1}
              - {id: b, url: "${GJ_UNSET:-../media}/clip.mp4", grid: G1}
              - {id: c, url: "/abs/clip.mp4", grid: G1}
        """,
    )
    city = load_config([path])
    assert city.camera("a").url == "rtsp://admin:s3cret@10.0.0.1/s"
    assert city.camera("b").url == str(tmp_path / "media" / "clip.mp4")
    assert city.camera("c").url == "/abs/clip.mp4"
    assert city.groups[0].name == "Market"
