"""Freed decoder and frame memory goes back to the kernel; idle cameras keep no decoder state."""

from __future__ import annotations

import ctypes
import threading
import time

import psutil
import pytest
from av.video.reformatter import VideoReformatter

from ingest import camera as camera_module
from ingest import pool as pool_module
from ingest.lanes import Lanes
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


def _trimmed_at(pool: IngestPool, trims: list, start: float, end: float, free_every_turn: bool = False) -> list[float]:
    """Housekeep every 0.25 s from start to end on an explicit clock; the times at which a trim ran."""
    out = []
    for now in [start + 0.25 * i for i in range(int((end - start) / 0.25) + 1)]:
        if free_every_turn:
            pool._memory_freed()
        before = len(trims)
        pool._housekeep(now)
        pool._lanes.local.submit(lambda: None).result()  # one worker: a trim submitted before has run
        if len(trims) > before:
            out.append(now)
    return out


@pytest.mark.parametrize("interval", [5.0, None])
def test_trims_follow_frees_at_most_every_interval_never_on_a_timer(monkeypatch, interval):
    """TRIM_DELAY_S (1 s) after a free, then at least trim_interval_s apart, on the local lane."""
    trims: list[str] = []
    monkeypatch.setattr(pool_module, "trim_malloc", lambda: trims.append(threading.current_thread().name) or True)
    pool = IngestPool(trim_interval_s=interval)
    pool._lanes = Lanes(1)
    try:
        assert _trimmed_at(pool, trims, 0.0, 30.0) == []  # nothing freed: no trim however long
        if interval is None:
            assert _trimmed_at(pool, trims, 30.0, 60.0, free_every_turn=True) == []
            return
        pool._memory_freed()
        assert pool._housekeep(30.0) == 31.0  # woken when the trim is due
        assert _trimmed_at(pool, trims, 30.25, 31.0) == [31.0]
        pool._memory_freed()  # freed again just after a trim: waits for the interval
        assert _trimmed_at(pool, trims, 31.25, 40.0) == [36.0]
        assert _trimmed_at(pool, trims, 40.0, 52.0, free_every_turn=True) == [41.0, 46.0, 51.0]
        assert set(trims) == {"ingest-local_0"}  # never on the reader thread that housekeeps, nor behind opens
    finally:
        pool._lanes.shutdown(time.monotonic() + 5)


def _released(path: str, release: bool) -> CameraSource:
    files = SourceSettings(backpressure=True)  # the reader waits for each frame to be taken: no EOF here
    return CameraSource("c", path, source=files, analysis_interval_s=0.5, release_decoder=release)


def test_pool_trims_on_its_local_lane_after_released_decoders(clip, monkeypatch):
    trims: list[str] = []
    monkeypatch.setattr(pool_module, "trim_malloc", lambda: trims.append(threading.current_thread().name) or True)
    monkeypatch.setattr(pool_module, "TRIM_DELAY_S", 0.0)
    path = str(clip(seconds=8, gop=25))
    with IngestPool([_released(path, True)], threads=1, trim_interval_s=0.01) as pool:
        for _ in range(3):
            assert pool.take(timeout=5)
        deadline = time.monotonic() + 10
        while not trims and time.monotonic() < deadline:
            time.sleep(0.05)
        running = list(trims)
    assert running and all(name.startswith("ingest-local") for name in running), running
    assert trims[-1] == threading.current_thread().name  # and once more by stop() itself
    trims.clear()
    with IngestPool([_released(path, True)], threads=1, trim_interval_s=None) as pool:
        for _ in range(3):
            assert pool.take(timeout=5)
    assert trims == []


@pytest.mark.parametrize("release", [True, False])
def test_decoder_and_scaler_are_freed_per_frame_only_when_released(clip, monkeypatch, release):
    scalers: list[int] = []
    frees: list[int] = []
    monkeypatch.setattr(camera_module, "VideoReformatter", lambda: scalers.append(1) or VideoReformatter())
    monkeypatch.setattr(IngestPool, "_memory_freed", lambda self: frees.append(1))
    path = str(clip(seconds=8, gop=25))
    with IngestPool([_released(path, release)], threads=1, trim_interval_s=None) as pool:
        frames = [pool.take(timeout=5)[0] for _ in range(3)]
        reader = pool._threads[0].readers[0]
        analysed = reader.frames_analysed  # first: the counts below only grow
        made, freed, codec_open = len(scalers), len(frees), reader._codec.is_open
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    if release:  # a swscale context and a decoder per analysed frame, both freed; the stream's own never opens
        assert analysed >= 3 and made >= analysed and freed >= 1 + analysed and not codec_open
    else:  # one kept swscale context and decoder; only the open's probe decoder was freed
        assert made == 1 and freed == 1 and codec_open


def test_release_decoder_defaults_to_sparse_analysis(clip):
    path = str(clip(seconds=2, gop=25))
    assert CameraSource("idle", path, analysis_interval_s=3600.0).releases_decoder
    assert CameraSource("edge", path, analysis_interval_s=5.0).releases_decoder
    assert not CameraSource("busy", path, analysis_interval_s=1.0).releases_decoder
    assert not CameraSource("kept", path, analysis_interval_s=3600.0, release_decoder=False).releases_decoder
