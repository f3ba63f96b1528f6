from __future__ import annotations

from pipeline.config.reference import COMMAND, reference, replace_section
from tests.plugins.shared import REPO_ROOT


def test_docs_config_reference_is_in_sync_with_the_models():
    text = (REPO_ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert replace_section(text, reference()) == text, f"docs/config.md is stale: run `{COMMAND}`"


def test_reference_covers_every_settings_section():
    ref = reference()
    for heading in ("`rules.crowding`", "`source`", "`reconnect`", "`runtime`", "Inventory CSV"):
        assert heading in ref
    assert "| `score_threshold` | float (≥ 0, ≤ 1) | `0.5` |" in ref
