"""Loading for ``guanjia cameras publish`` (keep_templates): what a worker fills in is what a direct load gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.assignment import camera_record, parse_camera_record
from pipeline.config.env import keep_templates
from pipeline.config.loader import load_config

REPO_ROOT = Path(__file__).resolve().parents[3]


def published(paths: list[Path], environ: dict[str, str]) -> dict[str, str]:
    """Camera id → URL as a worker with ``environ`` gets it from the published records."""
    with keep_templates():
        city = load_config(paths)
    return {cam.id: parse_camera_record(cam.id, camera_record(cam), environ=environ).url for cam in city.cameras}


def test_demo_file_paths_reach_the_worker_as_a_direct_load_resolves_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUANJIA_SHARED_DIR", raising=False)
    demo = [REPO_ROOT / "configs" / "demo.yaml"]
    direct = {cam.id: cam.url for cam in load_config(demo).cameras}
    assert direct["demo-street"] == str(REPO_ROOT.parent / "shared" / "data" / "video" / "vtest.avi")
    assert published(demo, environ={}) == direct
    with keep_templates():
        street = load_config(demo).camera("demo-street")
    assert street.url == "${GUANJIA_SHARED_DIR:-../../shared}/data/video/vtest.avi"  # shipped as written
    worker = published(demo, environ={"GUANJIA_SHARED_DIR": "/srv/shared"})
    assert worker["demo-street"] == "/srv/shared/data/video/vtest.avi"


def test_templated_paths_in_yaml_and_csv_resolve_after_filling(write, tmp_path: Path) -> None:
    write("site/cams.csv", "id,url,grid\nk1,${CLIPS:-clips}/k1.mp4,G1\nk2,rtsp://u:${CAM_PW}@h/s,G1\n")
    path = write(
        "site/city.yaml",
        """
        groups:
          - id: g
            inventory: cams.csv
            cameras:
              - {id: abs, url: "${SHARED}/data/video/vtest.avi", grid: G1}
              - {id: rel, url: "${SHARED:-../shared}/a.mp4", grid: G1}
              - {id: plain, url: "clips/b$$1.mp4", grid: G1}
        """,
    )
    site = tmp_path / "site"
    urls = published([path], environ={"SHARED": "/work/shared", "CAM_PW": "pw"})
    assert urls["abs"] == "/work/shared/data/video/vtest.avi"  # not <config dir>//work/shared/...
    assert urls["rel"] == "/work/shared/a.mp4"
    assert urls["plain"] == str(site / "clips" / "b$1.mp4")
    assert urls["k1"] == str(site / "clips" / "k1.mp4")
    assert urls["k2"] == "rtsp://u:pw@h/s"
    urls = published([path], environ={"SHARED": "", "CAM_PW": "pw"})
    assert urls["rel"] == str(tmp_path / "shared" / "a.mp4")


def test_only_templated_relative_paths_carry_the_config_folder(write) -> None:
    path = write(
        "city.yaml",
        """
        groups:
          - id: g
            cameras:
              - {id: rtsp, url: "rtsp://u:${CAM_PW}@h/s", grid: G1}
              - {id: file, url: "clips/a.mp4", grid: G1}
              - {id: templated, url: "${CLIPS:-clips}/a.mp4", grid: G1}
        """,
    )
    with keep_templates():
        city = load_config([path])
    assert [b"base_dir" in camera_record(cam) for cam in city.cameras] == [False, False, True]
