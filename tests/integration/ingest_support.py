"""Helpers shared by the ingest integration tests."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; return it (or None at timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None
