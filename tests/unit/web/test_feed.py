"""Decoding Kafka message values for the risk map (the Kafka path itself is in tests/integration)."""

from __future__ import annotations

import json

import pytest

from pipeline.settings import Settings
from pipeline.web import LiveState
from pipeline.web.feed import apply_message, page_topics


@pytest.mark.parametrize("value", [None, b"", b"\xff\xfe", b"{nope", b"[1, 2]", b'"text"', b"null"])
def test_undecodable_values_are_skipped(value: bytes | None) -> None:
    state = LiveState()
    assert apply_message(state, "detection", value) is False
    assert state.version == 0


def test_oversized_values_are_skipped_before_parsing() -> None:
    state = LiveState()
    value = json.dumps({"camera_id": "c1", "pad": "x" * 5000}).encode()
    assert apply_message(state, "health", value, max_bytes=4096) is False
    assert apply_message(state, "health", value, max_bytes=8192) is True
    assert [c["id"] for c in state.snapshot()["cameras"]] == ["c1"]


def test_each_kind_reaches_its_fold() -> None:
    state = LiveState()
    assert apply_message(
        state, "detection", b'{"camera_id": "c1", "zones": [{"zone": "*", "count": 3}]}'
    )
    assert apply_message(state, "health", b'{"camera_id": "c2", "state": "error"}')
    assert apply_message(
        state, "event", b'{"event_id": "e1", "status": "open", "severity": "high"}'
    )
    snap = state.snapshot()
    assert {c["id"]: c["state"] for c in snap["cameras"]} == {"c1": "ok", "c2": "down"}
    assert [e["event_id"] for e in snap["events"]] == ["e1"]


def test_page_topics_follow_the_settings_prefix() -> None:
    topics = page_topics(Settings(topic_prefix="city").topic)
    assert topics == {
        "city.detections.v1": "detection",
        "city.governance-events.v1": "event",
        "city.camera-health.v1": "health",
    }
