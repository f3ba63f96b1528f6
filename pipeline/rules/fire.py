"""Fire per camera: P(fire) ≥ threshold in ≥ k of the last n analysed frames; no fire frame for clear_s clears."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.rules.series import accept, insert, prune


@dataclass(frozen=True, slots=True)
class FireRuleParams:
    threshold: float
    k: int
    n: int
    clear_s: float
    lateness_s: float


def step(state: dict, t: float, score: float, rule: FireRuleParams) -> tuple[dict, str | None]:
    """Apply one frame's P(fire); returns (state, transition) with ``on``, ``off``, ``late`` or None.

    State keys: ``frames``, ``max_t``, ``on``, ``started_at``, ``peak``, ``last_fire_t``.
    """
    if not accept(state, t, rule.lateness_s):
        return state, "late"
    frames = state.setdefault("frames", [])
    insert(frames, t, score)
    now = state["max_t"]
    prune(frames, now - rule.lateness_s, keep_last=rule.n)
    window = frames[-rule.n:]
    hits = [ft for ft, s in window if s >= rule.threshold]
    if hits:
        state["last_fire_t"] = max(state.get("last_fire_t") or hits[-1], hits[-1])
    if not state.get("on"):
        if len(hits) >= rule.k:
            state.update(on=True, started_at=hits[0], peak=max(s for _, s in window))
            return state, "on"
        return state, None
    state["peak"] = max(state["peak"], score)
    if len(hits) < rule.k and now - state.get("last_fire_t", now) >= rule.clear_s:
        state["on"] = False
        return state, "off"
    return state, None
