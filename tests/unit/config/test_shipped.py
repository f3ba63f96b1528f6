"""The shipped configs validate, and the demo points at the shared footage."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.kinds import validate_files
from pipeline.config.loader import load_config
from tests.plugins.shared import REPO_ROOT, shared_path


def test_all_shipped_yaml_files_validate_together():
    result = validate_files(sorted((REPO_ROOT / "configs").glob("*.yaml")))
    assert result.issues == []
    assert result.city is not None and len(result.city.cameras) >= 10
    assert {c.id for c in result.city.cameras} >= {"demo-street", "demo-house-fire", "demo-mall", "hm-0001"}


def test_example_city_uses_every_top_level_feature(monkeypatch):
    monkeypatch.delenv("CAMERA_PASSWORD", raising=False)
    city = load_config([REPO_ROOT / "configs" / "example-city.yaml"])
    assert any(f.endswith(".csv") for f in city.source_files) and len(city.source_files) >= 3
    cams = city.cameras
    assert any(c.schedule for c in cams) and any(c.ignore_masks for c in cams) and any(not c.enabled for c in cams)
    assert any(len(c.zones) > 1 for c in cams if c.group_id == "humen-streets")  # CSV with several zones


def test_demo_files_exist_in_shared(monkeypatch):
    monkeypatch.delenv("GUANJIA_SHARED_DIR", raising=False)
    shared = shared_path("data")
    city = load_config([REPO_ROOT / "configs" / "demo.yaml"])
    for cam in city.cameras:
        path = Path(cam.url)
        assert path.is_file(), cam.id
        assert path.resolve().is_relative_to(shared.resolve())
        assert cam.settings.source.loop is False
