"""Crowding with hysteresis, per zone: level ≥ threshold for dwell opens, < clear for clear_s closes."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.rules.series import accept, insert, prune, tail_run_start


@dataclass(frozen=True, slots=True)
class ZoneRule:
    threshold: float
    clear_threshold: float
    dwell_s: float
    clear_s: float
    lateness_s: float


def step(state: dict, t: float, level: float, rule: ZoneRule) -> tuple[dict, str | None]:
    """Apply one sample; returns (state, transition) with transition ``open``, ``close``, ``late`` or None.

    State keys: ``samples``, ``max_t``, ``open`` (bool), ``started_at``, ``peak``, ``closed_at``.
    """
    if not accept(state, t, rule.lateness_s):
        return state, "late"
    samples = state.setdefault("samples", [])
    insert(samples, t, level)
    now = state["max_t"]
    horizon = max(rule.dwell_s, rule.clear_s) + rule.lateness_s
    prune(samples, now - horizon, keep_last=2)
    if not state.get("open"):
        start = tail_run_start(samples, lambda v: v >= rule.threshold, after=state.get("closed_at"))
        if start is not None and now - start >= rule.dwell_s:
            state.update(open=True, started_at=start, peak=max(v for ts, v in samples if ts >= start))
            return state, "open"
        return state, None
    if t >= state["started_at"]:
        state["peak"] = max(state["peak"], level)
    start = tail_run_start(samples, lambda v: v < rule.clear_threshold, after=state["started_at"])
    if start is not None and now - start >= rule.clear_s:
        state.update(open=False, closed_at=now)
        return state, "close"
    return state, None
