"""``guanjia bench page``: what the risk-map page and the metrics cost at a given fleet size.

Side by side in one run:

- folding one detection into ``LiveState``;
- building and encoding one snapshot (what each SSE push costs, shared by all viewers);
- a Prometheus scrape with per-camera counters kept push-style against one read at scrape time
  from plain dicts;
- the per-frame cost of a push-style ``labels(camera).inc()`` against a plain dict increment, which
  is what ingest pays in scrape-time mode.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import click

from pipeline.metrics import Metrics
from pipeline.web.state import LiveState


def _per_call(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-3 mean seconds per call (the machine is shared: best of 3 tames the noise)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def run(cameras: int, events: int, repeat: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    ids = [f"dg-{i:06d}" for i in range(cameras)]
    state = LiveState(max_events=max(events, 1))
    state.set_cameras(
        {
            "id": cam,
            "name": f"Camera {i}",
            "grid": f"G{i // 4:05d}",
            "town": "T",
            "village": "V",
            "lat": 22.7 + rng.random() * 0.3,
            "lon": 113.5 + rng.random() * 0.4,
            "zones": [{"name": "gate", "crowd_threshold": 30}],
        }
        for i, cam in enumerate(ids)
    )
    now = time.time()
    tick = iter(range(10**9))

    def one_detection() -> None:
        k = next(tick)
        state.apply_detection(
            {
                "camera_id": ids[k % cameras],
                "capture_time": now + k,
                "fire": {"score": 0.1},
                "zones": [{"zone": "*", "count": k % 40}, {"zone": "gate", "count": k % 9}],
            }
        )

    apply_s = _per_call(one_detection, max(repeat * 50, cameras))
    for j in range(events):
        state.apply_event(
            {
                "event_id": f"e{j}",
                "status": "open",
                "rule": "crowding",
                "severity": "high",
                "camera_id": ids[j % cameras],
                "routing": {"unit": "grid", "deadline_at": now + j},
            }
        )
    payload = json.dumps(state.snapshot(300), ensure_ascii=False).encode()
    snapshot_s = _per_call(lambda: json.dumps(state.snapshot(300), ensure_ascii=False), repeat)

    push = Metrics(process=False)
    for cam in ids:
        for family in (
            push.frames_decoded,
            push.frames_analysed,
            push.frames_dropped,
            push.reconnects,
        ):
            family.labels(cam).inc(5)
        push.camera_up.labels(cam).set(1)
        push.camera_last_frame.labels(cam).set(now)
    stats = {
        cam: {
            "camera_id": cam,
            "frames_decoded": 5,
            "frames_analysed": 5,
            "frames_dropped": 5,
            "reconnects": 5,
            "state": "streaming",
            "last_frame_time": now,
        }
        for cam in ids
    }
    pulled = Metrics(camera_stats=lambda: stats.values(), process=False)
    scrape_push_s = _per_call(push.render, repeat)
    scrape_pulled_s = _per_call(pulled.render, repeat)
    counter = push.frames_analysed
    row = stats[ids[0]]
    inc_push_s = _per_call(lambda: counter.labels(ids[0]).inc(), repeat * 1000)

    def plain_inc() -> None:
        row["frames_analysed"] += 1

    inc_plain_s = _per_call(plain_inc, repeat * 1000)
    return {
        "cameras": cameras,
        "open_events": events,
        "apply_detection_us": round(apply_s * 1e6, 2),
        "snapshot_ms": round(snapshot_s * 1e3, 2),
        "snapshot_kb": round(len(payload) / 1024, 1),
        "scrape_push_ms": round(scrape_push_s * 1e3, 2),
        "scrape_at_scrape_time_ms": round(scrape_pulled_s * 1e3, 2),
        "scrape_ratio_scrape_time_vs_push": round(scrape_pulled_s / scrape_push_s, 2),
        "metrics_kb": round(len(pulled.render()) / 1024, 1),
        "per_frame_push_inc_ns": round(inc_push_s * 1e9, 1),
        "per_frame_plain_inc_ns": round(inc_plain_s * 1e9, 1),
        "per_frame_ratio_push_vs_plain": round(inc_push_s / inc_plain_s, 1),
    }


@click.command("page")
@click.option("--cameras", default=1000, show_default=True, help="Cameras in the inventory.")
@click.option("--events", default=2000, show_default=True, help="Open events held.")
@click.option("--repeat", default=10, show_default=True, help="Repetitions per timed step.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_page(cameras: int, events: int, repeat: int, as_json: bool) -> None:
    """Cost of the risk-map snapshot and of a metrics scrape at a fleet size.

    \b
    Example:
      guanjia bench page --cameras 1000 --events 2000 --json
    """
    if cameras < 1 or events < 0 or repeat < 1:
        raise click.BadParameter("--cameras and --repeat must be ≥ 1 and --events ≥ 0")
    figures = run(cameras, events, repeat)
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        click.echo(f"{key:>36}  {value}")
