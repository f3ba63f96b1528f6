"""``guanjia bench ingest``: CPU per stream-hour of naive OpenCV vs Guanjia vs a bare PyAV loop.

Every variant runs in its own subprocess and is charged that process's CPU time (user + system,
all threads), so the figures are side by side on the same machine in the same run. ``file``
variants read N copies of a 1080p25 H.264 (GOP 50) clip as fast as possible; ``rtsp`` variants
read N live streams from the local GstRtspServer for S seconds (server and feeders run in other
processes and are not charged). One frame is analysed every 2 s of video.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import click

INTERVAL_S = 2.0
IDLE_SETTLE_S = 8.0
"""Idle streams are measured this long after their first frame: past one of the pool's
``malloc_trim`` passes (1 s after a decoder is freed, at most every 5 s), as in an operator's process."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _switches() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use_mb() -> float | None:
    """Bytes malloc has handed out and not got back (glibc ``mallinfo2``), None elsewhere."""
    from ingest.pool import _libc

    mallinfo2 = getattr(_libc(), "mallinfo2", None)  # glibc >= 2.33
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


# ---- variants (run inside the worker subprocess) --------------------------------------------
def naive_opencv(url: str, stop: threading.Event, deadline: float | None, out: dict) -> None:
    """What most NVR scripts do: read (decode + convert) every frame, keep one per interval."""
    import cv2

    for _ in range(40):  # the local server sometimes refuses a burst of simultaneous opens
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        if cap.isOpened():
            break
        time.sleep(0.5)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    every = max(1, round(INTERVAL_S * fps))
    n = kept = 0
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        ok, _image = cap.read()
        if not ok:
            break
        if n % every == 0:
            kept += 1
            out.setdefault("first", time.monotonic())
        n += 1
        out["pkts"] = n
    cap.release()
    out["frames"] = out.get("frames", 0) + kept
    out["video_s"] = out.get("video_s", 0.0) + n / fps


def bare_pyav(url: str, stop: threading.Event, deadline: float | None, out: dict, options: dict | None = None) -> None:
    """The ceiling: a plain PyAV loop that decodes keyframes only, no framework around it."""
    import av
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()  # one swscale context per stream, as Guanjia does
    for attempt in range(40):  # the local server sometimes refuses a burst of simultaneous opens
        try:
            container = av.open(url, options={"rtsp_transport": "tcp"} if url.startswith("rtsp") else {})
            break
        except av.FFmpegError:
            if attempt == 39:
                raise
            time.sleep(0.5)
    stream = container.streams.video[0]
    codec = stream.codec_context
    codec.options = dict(options or {})
    codec.skip_frame = "NONKEY"
    codec.thread_count = 1
    tb = float(stream.time_base)
    next_due = None
    first = last = None
    kept = 0
    for packet in container.demux(stream):
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            break
        out["pkts"] = out.get("pkts", 0) + 1
        if packet.pts is not None:
            t = packet.pts * tb
            first = t if first is None else first
            last = t
        if not packet.is_keyframe or packet.size == 0:
            continue
        for frame in codec.decode(packet):
            if next_due is None or (frame.pts or 0) * tb >= next_due - 0.5:
                reformatter.reformat(frame, format="bgr24").to_ndarray()
                kept += 1
                next_due = (frame.pts or 0) * tb + INTERVAL_S
                out.setdefault("first", time.monotonic())
    if deadline is None:  # a file: frames still held for B-frame reordering
        kept += len(codec.decode(None))
    container.close()
    out["frames"] = out.get("frames", 0) + kept
    out["video_s"] = out.get("video_s", 0.0) + ((last - first) if first is not None else 0.0)


def bare_demux(url: str, stop: threading.Event, deadline: float | None, out: dict) -> None:
    """Demux only, one thread per stream: what reading a live stream costs before any decoding."""
    import av

    for attempt in range(40):
        try:
            container = av.open(url, options={"rtsp_transport": "tcp"})
            break
        except av.FFmpegError:
            if attempt == 39:
                raise
            time.sleep(0.5)
    for _packet in container.demux(container.streams.video[0]):
        out["pkts"] = out.get("pkts", 0) + 1
        out.setdefault("first", time.monotonic())
        if stop.is_set() or time.monotonic() > deadline:
            break
    container.close()


def guanjia_pool(urls: list[str], seconds: float | None, live: bool, threads: int | None, malloc: bool,
                 interval: float = INTERVAL_S, trim: bool = True) -> dict:
    from ingest.health import CameraState
    from ingest.pool import IngestPool
    from ingest.source import CameraSource

    cams = [CameraSource(f"b{i}", url, analysis_interval_s=interval) for i, url in enumerate(urls)]
    rss_before, heap_before = _rss_mb(), _malloc_in_use_mb()
    pool = IngestPool(cams, threads=threads, malloc_tuning=malloc, trim_interval_s=5.0 if trim else None).start()
    out: dict = {"frames": 0}
    try:
        if live:  # charge only the steady state: from every camera's first frame on
            seen: set[str] = set()
            limit = time.monotonic() + 30
            while len(seen) < len(urls) and time.monotonic() < limit:
                seen.update(f.camera_id for f in pool.take(timeout=0.5))
            out["streams_seen"] = len(seen)
            cpu0, t0, sw0 = _cpu(), time.monotonic(), _switches()
            in0, rc0 = sum(h.frames_in for h in pool.health()), sum(h.reconnects for h in pool.health())
            while time.monotonic() - t0 < seconds:
                out["frames"] += len(pool.take(timeout=0.5))
            elapsed = time.monotonic() - t0
            cpu1, in1 = _cpu(), sum(h.frames_in for h in pool.health())
            heap = _malloc_in_use_mb()
            # a reconnect inside the window charges a whole open (the probe decodes up to 7 frames)
            out["reconnects"] = sum(h.reconnects for h in pool.health()) - rc0
            out.update(cpu_s=cpu1 - cpu0, video_s=(in1 - in0) / 25.0, rss_mb=_rss_mb(), rss0_mb=rss_before,
                       heap_mb=heap - heap_before if heap is not None else None,
                       switches_per_s=round((_switches() - sw0) / elapsed))
        else:
            cpu0 = _cpu()
            while not all(h.state in (CameraState.ended, CameraState.error) for h in pool.health()):
                out["frames"] += len(pool.take(timeout=0.05))
            out["frames"] += len(pool.take(timeout=0))
            out.update(cpu_s=_cpu() - cpu0, video_s=sum(h.frames_in for h in pool.health()) / 25.0)
    finally:
        pool.stop()
    return out


def run_threads(fn, urls: list[str], seconds: float | None, **kw) -> dict:
    """One thread per stream (the usual shape of naive and bare loops)."""
    stop = threading.Event()
    outs: list[dict] = [{} for _ in urls]
    live = seconds is not None
    cpu0 = _cpu()
    deadline = time.monotonic() + 30 + seconds if live else None
    threads = [threading.Thread(target=fn, args=(u, stop, deadline, o), kwargs=kw, daemon=True) for u, o in zip(urls, outs)]
    for t in threads:
        t.start()
    if live:  # steady state: from the moment every stream delivered a frame
        limit = time.monotonic() + 30
        while time.monotonic() < limit and not all("first" in o for o in outs):
            time.sleep(0.05)
        cpu0, p0 = _cpu(), sum(o.get("pkts", 0) for o in outs)
        time.sleep(seconds)
        cpu1, p1 = _cpu(), sum(o.get("pkts", 0) for o in outs)
        stop.set()
        for t in threads:
            t.join(10)
        # video seconds actually received (frames / 25 fps): a reader that falls behind and a
        # server that bursts after a stall would both distort a wall-clock normalisation
        return {"cpu_s": cpu1 - cpu0, "video_s": (p1 - p0) / 25.0, "frames": sum(o.get("frames", 0) for o in outs),
                "rss_mb": _rss_mb()}
    for t in threads:
        t.join()
    return {"cpu_s": _cpu() - cpu0, "video_s": sum(o.get("video_s", 0.0) for o in outs),
            "frames": sum(o.get("frames", 0) for o in outs)}


def worker_main(argv: list[str]) -> None:
    """Entry of the subprocess: ``python -m ingest.bench VARIANT JSON-ARGS``."""
    variant, args = argv[0], json.loads(argv[1])
    urls, seconds = args["urls"], args.get("seconds")
    if variant == "naive":
        result = run_threads(naive_opencv, urls, seconds)
    elif variant == "bare":
        result = run_threads(bare_pyav, urls, seconds)
    elif variant == "bare_demux":
        result = run_threads(bare_demux, urls, seconds)
    elif variant == "bare_skip_loop_filter":
        result = run_threads(bare_pyav, urls, seconds, options={"skip_loop_filter": "all"})
    elif variant == "guanjia":
        result = guanjia_pool(urls, seconds, seconds is not None, args.get("threads"), args.get("malloc", True),
                              trim=args.get("trim", True))
    elif variant == "idle":
        result = guanjia_pool(urls, seconds, True, None, args.get("malloc", True), interval=3600.0)
    else:
        raise SystemExit(f"unknown variant {variant}")
    print(json.dumps(result))


def run_variant(variant: str, urls: list[str], seconds: float | None, **extra) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ingest.bench", variant, json.dumps({"urls": urls, "seconds": seconds, **extra})],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise click.ClickException(f"bench variant {variant} failed: {proc.stderr.strip()[-500:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    per_hour = result["cpu_s"] / max(result["video_s"], 1e-9) * 3600.0
    result["cpu_s_per_stream_hour"] = round(per_hour, 2)
    result["streams_per_core"] = round(3600.0 / per_hour, 1) if per_hour > 0 else None
    return result


def idle_figures(urls: list[str], repeats: int) -> dict:
    """Marginal memory of an open idle stream (one analysed frame per hour, i.e. the
    ``release_decoder`` path): N and 5N streams in separate processes, so threads, malloc arenas
    and libraries cancel out; the median over ``repeats`` pairs. ``heap_mb_per_idle_stream`` is
    what malloc has handed out and not got back (no free pages, no fragmentation)."""
    n, per = len(urls), {"rss": [], "heap": [], "fixed": []}
    for _ in range(repeats):
        few = run_variant("idle", urls, IDLE_SETTLE_S)
        many = run_variant("idle", urls * 5, IDLE_SETTLE_S)
        if few["streams_seen"] < n or many["streams_seen"] < 5 * n:
            raise click.ClickException(f"idle run: only {few['streams_seen']}/{n} and {many['streams_seen']}/{5 * n} streams opened")
        per["rss"].append(((many["rss_mb"] - many["rss0_mb"]) - (few["rss_mb"] - few["rss0_mb"])) / (4 * n))
        if few["heap_mb"] is not None:
            per["heap"].append((many["heap_mb"] - few["heap_mb"]) / (4 * n))
        per["fixed"].append((few["rss_mb"] - few["rss0_mb"]) - n * per["rss"][-1])
    out = {"rss_mb_per_idle_stream": round(statistics.median(per["rss"]), 2),
           "rss_mb_per_idle_stream_runs": [round(v, 2) for v in per["rss"]],
           "rss_mb_fixed_pool_overhead": round(statistics.median(per["fixed"]), 1),
           "idle_streams_compared": [n, 5 * n]}
    if per["heap"]:
        out["heap_mb_per_idle_stream"] = round(statistics.median(per["heap"]), 2)
    return out


def _figures(prefix: str, results: dict[str, dict], out: dict) -> None:
    for name, r in results.items():
        out[f"{prefix}_{name}_cpu_s_per_stream_hour"] = r["cpu_s_per_stream_hour"]
        out[f"{prefix}_{name}_streams_per_core"] = r["streams_per_core"]
        out[f"{prefix}_{name}_frames"] = r["frames"]
        if "reconnects" in r:
            out[f"{prefix}_{name}_reconnects"] = r["reconnects"]
    a, b, c = (results[k]["cpu_s_per_stream_hour"] for k in ("naive", "guanjia", "bare"))
    out[f"{prefix}_speedup_vs_naive"] = round(a / b, 1)
    out[f"{prefix}_fraction_of_bare"] = round(c / b, 2)


@click.command("ingest")
@click.option("--streams", default=4, show_default=True, help="Streams per variant.")
@click.option("--seconds", default=8.0, show_default=True, help="Seconds of live RTSP per variant.")
@click.option("--rtsp/--no-rtsp", default=True, show_default=True, help="Also measure over the local RTSP server.")
@click.option("--extras", is_flag=True,
              help="Also measure skip_loop_filter, thread-per-camera, no malloc tuning, no malloc trim and demux-only CPU.")
@click.option("--threads-study", "study", default=0, show_default=True,
              help="Also compare thread-per-camera with the multiplexing pool on this many 360p RTSP streams.")
@click.option("--idle-repeats", default=3, show_default=True,
              help="Pairs of idle runs (N vs 5N streams) whose median is the RSS per idle stream.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_ingest(streams: int, seconds: float, rtsp: bool, extras: bool, study: int, idle_repeats: int,
                 as_json: bool) -> None:
    """Naive OpenCV (a) vs Guanjia keyframes (b) vs bare PyAV keyframes (c), 1080p25 GOP 50.

    \b
    Targets: (b) >= 10x cheaper than (a), (b) >= 0.9 of (c), <= 5 MB RSS per open idle stream.
    Example:
      guanjia bench ingest --streams 4 --seconds 8 --json
    """
    from ingest.rig import RtspRig, make_clip, missing_rtsp_tools

    say = (lambda *a: None) if as_json else click.echo
    say("making the 1080p25 GOP 50 clip (cached)…")
    clip = make_clip(seconds=10, size="1920x1080", fps=25, gop=50, bitrate="4M")
    out: dict = {"streams": streams, "seconds": seconds, "clip": "1080p25 H.264 GOP 50 4 Mb/s",
                 "interval_s": INTERVAL_S, "cores": os.cpu_count()}
    files = [str(clip)] * streams
    file_results = {}
    for name in ("naive", "guanjia", "bare"):
        say(f"file  {name}…")
        file_results[name] = run_variant(name, files, None)
    if extras:
        file_results_extra = {"bare_skip_loop_filter": run_variant("bare_skip_loop_filter", files, None),
                              "guanjia_no_malloc_tuning": run_variant("guanjia", files, None, malloc=False),
                              "guanjia_no_malloc_trim": run_variant("guanjia", files, None, trim=False)}
        for name, r in file_results_extra.items():
            out[f"file_{name}_cpu_s_per_stream_hour"] = r["cpu_s_per_stream_hour"]
    _figures("file", file_results, out)

    missing = missing_rtsp_tools() if rtsp else "disabled (--no-rtsp)"
    if missing:
        out["rtsp_skipped"] = missing
    else:
        with RtspRig(clip, streams) as rig:
            time.sleep(1.0)
            rtsp_results = {}
            for name in ("naive", "guanjia", "bare"):
                say(f"rtsp  {name}…")
                rtsp_results[name] = run_variant(name, rig.urls, seconds)
            say(f"rtsp  idle streams (RSS), {idle_repeats} × ({streams} vs {5 * streams} streams)…")
            out.update(idle_figures(rig.urls, idle_repeats))
            if extras:  # demux only: bare threads vs the pool with nothing due (µs of CPU per packet)
                for name, variant in (("bare", "bare_demux"), ("guanjia", "idle")):
                    say(f"rtsp  demux only, {name}…")
                    r = run_variant(variant, rig.urls, seconds)
                    out[f"rtsp_demux_{name}_us_per_packet"] = round(r["cpu_s"] / max(r["video_s"] * 25, 1) * 1e6)
                    if "reconnects" in r:
                        out["rtsp_demux_guanjia_reconnects"] = r["reconnects"]
                for name, kw in (("guanjia_thread_per_camera", {"threads": streams}),
                                 ("guanjia_no_malloc_tuning", {"malloc": False}),
                                 ("guanjia_no_malloc_trim", {"trim": False}),
                                 ("bare_skip_loop_filter", {})):
                    say(f"rtsp  {name}…")
                    variant = "bare_skip_loop_filter" if name.startswith("bare") else "guanjia"
                    out[f"rtsp_{name}_cpu_s_per_stream_hour"] = run_variant(variant, rig.urls, seconds, **kw)["cpu_s_per_stream_hour"]
        _figures("rtsp", rtsp_results, out)

    if study and not missing:
        say(f"threads study: {study} streams of 360p…")
        small = make_clip(seconds=10, size="640x360", fps=25, gop=50)
        with RtspRig(small, 4) as rig:
            time.sleep(1.0)
            urls = [rig.urls[i % 4] for i in range(study)]
            for name, threads in (("pool", None), ("thread_per_camera", study)):
                r = run_variant("guanjia", urls, seconds, threads=threads)
                out[f"study_{name}_ms_per_stream_s"] = round(r["cpu_s"] / r["video_s"] * 1000, 2)
                out[f"study_{name}_switches_per_s"] = r["switches_per_s"]
        out["study_streams"] = study

    if as_json:
        click.echo(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest: {streams} streams, 1080p25 GOP 50, one frame per {INTERVAL_S:g} s")
    for col in ("source", "variant", "CPU-s / stream-hour", "streams / core", "frames"):
        table.add_column(col)
    for src in ("file", "rtsp"):
        for name in ("naive", "guanjia", "bare"):
            key = f"{src}_{name}"
            if f"{key}_cpu_s_per_stream_hour" in out:
                table.add_row(src, {"naive": "(a) OpenCV every frame", "guanjia": "(b) Guanjia keyframes",
                                    "bare": "(c) bare PyAV keyframes"}[name],
                              f"{out[key + '_cpu_s_per_stream_hour']:.1f}", f"{out[key + '_streams_per_core']}",
                              str(out[key + "_frames"]))
    Console().print(table)
    for key, value in out.items():
        if "speedup" in key or "fraction" in key or "rss" in key or "heap" in key or "idle" in key or "skipped" in key or "malloc" in key or "reconnects" in key or "demux" in key \
                or "skip_loop" in key or "per_camera" in key or key.startswith("study"):
            click.echo(f"{key}: {value}")


if __name__ == "__main__":
    worker_main(sys.argv[1:])
