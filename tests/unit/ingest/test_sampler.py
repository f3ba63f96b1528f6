"""Sampling decisions and the PTS → wall-clock mapping."""

from __future__ import annotations

import itertools
import random

import pytest

from ingest.backoff import Backoff
from ingest.sampler import Sampler, StreamClock
from ingest.settings import DecodeMode


def run_keyframes(sampler: Sampler, fps: float, gop: int, seconds: float) -> list[float]:
    """Feed a synthetic stream; return the capture times of emitted frames."""
    emitted = []
    for i in range(int(seconds * fps)):
        t = i / fps
        if sampler.wants_packet(i % gop == 0, t) and sampler.wants_frame(t, 1 / fps):
            emitted.append(t)
    return emitted


def test_keyframes_mode_emits_one_keyframe_per_interval():
    emitted = run_keyframes(Sampler(2.0, DecodeMode.keyframes), fps=25, gop=12, seconds=20)
    gaps = [b - a for a, b in itertools.pairwise(emitted)]
    assert len(emitted) == 10
    assert all(abs(g - 2.0) <= 12 / 25 for g in gaps), gaps  # ± one keyframe


def test_keyframes_mode_decodes_only_due_keyframes():
    sampler = Sampler(4.0, DecodeMode.keyframes)
    decoded = [i for i in range(250) if sampler.wants_packet(i % 25 == 0, i / 25) and sampler.wants_frame(i / 25)]
    assert decoded == [0, 100, 200]


def test_gop_equal_to_interval_emits_every_keyframe():
    emitted = run_keyframes(Sampler(2.0, DecodeMode.keyframes), fps=25, gop=50, seconds=20)
    assert emitted == [float(2 * k) for k in range(10)]


def test_sparse_keyframes_fall_back_to_interval_once():
    sampler = Sampler(1.0, DecodeMode.keyframes, fallback_ratio=2.0)
    emitted = run_keyframes(sampler, fps=25, gop=100, seconds=20)  # keyframes 4 s apart
    assert sampler.fell_back and sampler.mode is DecodeMode.interval
    late = [t for t in emitted if t >= 8.0]
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert gaps and all(abs(g - 1.0) < 0.05 for g in gaps), gaps


def test_interval_mode_needs_a_keyframe_first_and_emits_per_interval():
    sampler = Sampler(1.0, DecodeMode.interval)
    assert not sampler.wants_packet(False, 0.0)
    emitted = [i / 25 for i in range(1, 101) if sampler.wants_packet(i % 25 == 1, i / 25) and sampler.wants_frame(i / 25, 0.04)]
    assert emitted == pytest.approx([1 / 25 + k for k in range(4)])


def test_all_mode_emits_everything_after_the_first_keyframe():
    sampler = Sampler(2.0, DecodeMode.all)
    flags = [sampler.wants_packet(i % 10 == 3, i / 25) and sampler.wants_frame(i / 25) for i in range(30)]
    assert flags == [False] * 3 + [True] * 27


def test_clock_maps_pts_to_wall_time_and_stays_monotonic():
    clock = StreamClock(live=True)
    assert clock.capture_time(None, 1000.0) == 1000.0  # first RTSP packet may lack a PTS
    assert clock.capture_time(10.0, 1000.1) == pytest.approx(1000.1)
    assert clock.capture_time(10.04, 1000.5) == pytest.approx(1000.14)
    backwards = clock.capture_time(9.0, 1000.6)  # a PTS jump back (< resync) must not go back in time
    assert backwards > 1000.14
    resynced = clock.capture_time(500.0, 1001.0)  # a far jump re-anchors to the wall clock
    assert resynced == pytest.approx(1001.0)


def test_clock_continues_across_a_file_loop():
    clock = StreamClock(live=False)
    times = [clock.capture_time(i * 0.04, 50.0) for i in range(25)]
    clock.new_session(contiguous=True)
    after = clock.capture_time(0.0, 51.0)
    assert after == pytest.approx(times[-1] + 0.04, abs=1e-3)


def test_backoff_is_full_jitter_capped_and_resets():
    backoff = Backoff(0.5, 4.0, random.Random(7))
    ceilings, delays = [], []
    for _ in range(8):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next_delay())
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings))
    assert len(set(delays)) == len(delays)  # jittered, not fixed steps
    backoff.reset()
    assert backoff.ceiling() == 0.5
