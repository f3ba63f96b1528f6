"""Event-time sample series kept in rule state: sorted ``[t, value]`` pairs, JSON-friendly."""

from __future__ import annotations

import bisect


def accept(state: dict, t: float, lateness_s: float) -> bool:
    """True when ``t`` is within the allowed lateness of the newest time seen (and advance it)."""
    newest = state.get("max_t")
    if newest is not None and t < newest - lateness_s:
        return False
    if newest is None or t > newest:
        state["max_t"] = t
    return True


def insert(samples: list[list[float]], t: float, value: float) -> None:
    """Insert in time order; a sample at an existing time replaces it (re-processing is idempotent)."""
    if not samples or t > samples[-1][0]:  # in order: the usual case
        samples.append([t, value])
        return
    i = bisect.bisect_left(samples, [t])
    if i < len(samples) and samples[i][0] == t:
        samples[i][1] = value
    else:
        samples.insert(i, [t, value])


def prune(samples: list[list[float]], before: float, keep_last: int = 0) -> None:
    """Drop samples older than ``before`` but always keep the newest ``keep_last``."""
    if not samples or samples[0][0] >= before:  # nothing old enough: the usual case between two samples
        return
    cut = bisect.bisect_left(samples, [before])
    cut = min(cut, max(len(samples) - keep_last, 0))
    if cut:
        del samples[:cut]


def tail_run_start(samples: list[list[float]], pred, after: float | None = None) -> float | None:
    """Start time of the newest unbroken run of samples satisfying ``pred`` (only samples after ``after``)."""
    start = None
    for t, v in reversed(samples):
        if (after is not None and t <= after) or not pred(v):
            break
        start = t
    return start
