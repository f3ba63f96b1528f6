"""Freed decoder and frame memory goes back to the kernel; idle cameras keep no decoder state."""

from __future__ import annotations

import ctypes
import time

import psutil
import pytest

from ingest import pool as pool_module
from ingest.pool import IngestPool, trim_malloc, tune_malloc
from ingest.settings import SourceSettings
from ingest.source import CameraSource

MB = 2**20


def test_trim_malloc_hands_freed_heap_pages_back(clip):
    if not trim_malloc():
        pytest.skip("not glibc")
    tune_malloc()  # as the pool does: 1 MB blocks come from the heap, and freeing them keeps the pages
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    proc = psutil.Process()
    base = proc.memory_info().rss
    blocks = [libc.malloc(MB) for _ in range(48)]
    for block in blocks:
        ctypes.memset(block, 1, MB)
    for block in blocks:
        libc.free(block)
    kept = proc.memory_info().rss
    trim_malloc()
    trimmed = proc.memory_info().rss
    assert kept - base > 40 * MB, (kept - base) / MB
    assert kept - trimmed > 40 * MB, (kept - trimmed) / MB


def test_pool_trims_after_decoders_are_freed_not_on_a_timer(clip, monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(pool_module, "trim_malloc", lambda: calls.append(time.monotonic()) or True)
    monkeypatch.setattr(pool_module, "TRIM_DELAY_S", 0.1)
    path = str(clip(seconds=2, gop=25))
    paced = SourceSettings(loop=True, realtime=True)
    # an active camera keeps its decoder: one trim after the open (its probe decoder), then none
    with IngestPool([CameraSource("a", path, source=paced, analysis_interval_s=0.5)], threads=1,
                    trim_interval_s=0.2) as pool:
        assert pool.take(timeout=5)
        time.sleep(1.5)
        assert len(calls) == 1
    # one that frees its decoder after every keyframe (1 s apart) is trimmed after each
    calls.clear()
    with IngestPool([CameraSource("r", path, source=paced, analysis_interval_s=0.5, release_decoder=True)],
                    threads=1, trim_interval_s=0.2) as pool:
        assert pool.take(timeout=5)
        time.sleep(2.2)
        running = list(calls)
    assert len(running) >= 3 and len(calls) == len(running) + 1  # and once more on stop
    assert all(b - a >= 0.19 for a, b in zip(running, running[1:]))
    calls.clear()
    with IngestPool([CameraSource("n", path, source=paced, release_decoder=True)], threads=1,
                    trim_interval_s=None) as pool:
        assert pool.take(timeout=5)
        time.sleep(0.5)
    assert calls == []


def test_released_decoder_keeps_no_decoder_or_scaler_between_frames(clip):
    cam = CameraSource("idle", str(clip(seconds=4, gop=25)), source=SourceSettings(loop=True),
                       analysis_interval_s=3600.0)
    assert cam.releases_decoder
    with IngestPool([cam], threads=1) as pool:
        frame = pool.take(timeout=5)[0]
        assert frame.image.shape == (240, 320, 3)
        reader = pool._threads[0].readers[0]
        assert reader._reformatter is None and not reader._codec.is_open
