"""``guanjia bench scale``: the 450k-camera control plane, measured.

* ``publish``: N camera configs onto a fresh compacted cameras topic (time, size of its log on
  disk, bytes per camera), then one cold read of the whole topic (what a worker does on start);
* ``redis``: camera health for N cameras in ingest's layout (``{prefix}:camera:{id}`` hash +
  ``{prefix}:cameras:last_seen`` zset): memory per camera, and "cameras down for > 5 min" answered
  by one ZRANGEBYSCORE, side by side with reading every hash's ``last_frame_time``;
* ``pool``: one worker process (a child, so the figures are its own) holding M file-backed
  1080p cameras through ``ingest.pool.IngestPool``: RSS, fds and CPU per camera.

``--record`` merges the figures that ``guanjia plan`` reads into docs/bench-results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

SOURCE = "guanjia bench scale"


def say(msg: str) -> None:
    click.echo(msg, err=True)


# ---- publish -----------------------------------------------------------------------------------------

def fleet(n: int) -> list:
    """N resolved cameras spread over 2,927 grid cells and 33 towns, URLs as ``${VAR}`` templates."""
    from pipeline.config.models import ResolvedCamera

    base = ResolvedCamera(id="c0", url="rtsp://admin:${CAM_PASSWORD}@10.0.0.1:554/Streaming/Channels/101",
                          group_id="g0", grid="G0000")
    out = []
    for i in range(n):
        grid = i % 2927
        out.append(base.model_copy(update={
            "id": f"dg-{i:06d}", "url": f"rtsp://admin:${{CAM_PASSWORD}}@10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:554/Streaming/Channels/101",
            "grid": f"G{grid:04d}", "town": f"town-{grid % 33:02d}", "village": f"v-{grid:04d}", "group_id": f"town-{grid % 33:02d}",
            "lat": 22.7 + (i % 1000) * 1e-4, "lon": 113.6 + (i // 1000 % 1000) * 1e-4}))
    return out


def kafka_log_bytes(topic: str) -> int | None:
    """Bytes of the topic's .log segments in the local broker's data folder (None when not local)."""
    from pipeline.settings import get_settings

    data = get_settings().cache_dir / "services" / "kafka" / "data"
    dirs = list(data.glob(f"{topic}-*")) if data.is_dir() else []
    if not dirs:
        return None
    return sum(f.stat().st_size for d in dirs for f in d.glob("*.log"))


async def _publish(n: int, partitions: int) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    from pipeline.assignment import camera_record, publish_cameras, read_cameras_topic
    from pipeline.security import kafka_security_options
    from pipeline.settings import get_settings

    settings = get_settings()
    security = kafka_security_options(settings)
    topic = f"{settings.topic_prefix}.bench-scale-{uuid.uuid4().hex[:8]}.cameras.v1"
    say(f"publish: building {n:,} camera configs …")
    cams = fleet(n)
    record_bytes = statistics.mean(len(camera_record(c)) for c in cams[:1000])
    say(f"publish: {n:,} configs → {topic} ({partitions} partitions) …")
    t0, c0 = time.perf_counter(), time.process_time()
    result = await publish_cameras(settings.kafka_bootstrap, topic, cams, partitions=partitions, security=security)
    publish_s, publish_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.published == n, result
    await asyncio.sleep(2)  # let the broker write its segments
    size = kafka_log_bytes(topic)
    say("publish: reading the whole topic back (a worker's cold start) …")
    t0 = time.perf_counter()
    state = await read_cameras_topic(settings.kafka_bootstrap, topic, security)
    read_s = time.perf_counter() - t0
    assert len(state) == n, len(state)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **security)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    out = {"publish_cameras": n, "publish_s": round(publish_s, 2), "publish_cpu_s": round(publish_cpu, 2),
           "publish_cameras_per_s": round(n / publish_s), "camera_record_bytes": round(record_bytes),
           "read_topic_s": round(read_s, 2), "read_cameras_per_s": round(n / read_s)}
    if size is not None:
        out["topic_mb_on_disk"] = round(size / 1e6, 1)
        out["topic_bytes_per_camera"] = round(size / n, 1)
    return out


def detection_record_bytes(topic: str | None = None, sample: int = 5000) -> dict[str, Any]:
    """Mean size of real Detection records on a detections topic, when earlier runs left some."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from pipeline.assignment import topic_partitions
    from pipeline.security import kafka_security_options
    from pipeline.settings import get_settings

    settings = get_settings()
    security = kafka_security_options(settings)
    topic = topic or settings.topic("detections")

    async def run() -> list[int]:
        count = await topic_partitions(settings.kafka_bootstrap, topic, security)
        if not count:
            return []
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                    **security)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(count)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            sizes: list[int] = []
            for _ in range(10):
                batch = await consumer.getmany(timeout_ms=1000, max_records=sample)
                sizes += [len(r.value) for recs in batch.values() for r in recs if r.value]
                if len(sizes) >= sample:
                    break
            return sizes[:sample]
        finally:
            await consumer.stop()

    sizes = asyncio.run(run())
    return {"detection_topic": topic, "detection_records_sampled": len(sizes), "detection_record_bytes": round(statistics.mean(sizes)) if sizes else None}


# ---- redis -------------------------------------------------------------------------------------------

def bench_redis(n: int, down_fraction: float = 0.01, rounds: int = 20) -> dict[str, Any]:
    import redis

    from ingest.health import CameraHealth, CameraState, HealthPublisher, down_cameras
    from pipeline.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=60)
    prefix = f"guanjia-bench:{uuid.uuid4().hex[:8]}"
    pub = HealthPublisher(client, ttl_s=3600, prefix=prefix)
    ids = [f"dg-{i:06d}" for i in range(n)]
    rng = random.Random(7)
    down = set(rng.sample(ids, int(n * down_fraction)))
    now = time.time()
    before = client.info("memory")["used_memory"]
    say(f"redis: publishing health for {n:,} cameras under {prefix}: …")
    t0 = time.perf_counter()
    try:
        for start in range(0, n, 5000):
            snaps = []
            for cid in ids[start:start + 5000]:
                last = now - 600 if cid in down else now - rng.uniform(0, 5)
                snaps.append(CameraHealth(camera_id=cid, state=CameraState.streaming, url="rtsp://***@10.1.2.3:554/Streaming/Channels/101",
                                          decode_mode="keyframes", input_fps=25.0, analysed_fps=0.5, frames_in=123456,
                                          frames_analysed=2469, dropped=3, reconnects=1, last_frame_time=last,
                                          state_since=now - 86400, keyframe_interval_s=2.0, updated_at=now))
            if not pub.publish(snaps):
                raise click.ClickException("redis: publishing failed (is Redis up? `bash scripts/services.sh up`)")
        publish_s = time.perf_counter() - t0
        after = client.info("memory")["used_memory"]
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            found = down_cameras(client, stale_after_s=300, prefix=prefix, now=now)
            times.append(time.perf_counter() - t0)
        assert set(found) == down, (len(found), len(down))
        say("redis: baseline — read last_frame_time of every camera hash …")
        t0 = time.perf_counter()
        found_scan = []
        for start in range(0, n, 10000):
            pipe = client.pipeline(transaction=False)
            chunk = ids[start:start + 10000]
            for cid in chunk:
                pipe.hget(pub.camera_key(cid), "last_frame_time")
            found_scan += [cid for cid, v in zip(chunk, pipe.execute()) if v and float(v) < now - 300]
        scan_s = time.perf_counter() - t0
        assert set(found_scan) == down
    finally:
        say("redis: cleaning up …")
        for start in range(0, n, 10000):
            client.unlink(*[pub.camera_key(c) for c in ids[start:start + 10000]])
        client.unlink(pub.last_seen_key)
    p50 = statistics.median(times) * 1000
    return {"redis_cameras": n, "redis_publish_s": round(publish_s, 2), "redis_bytes_per_camera": round((after - before) / n),
            "redis_memory_mb": round((after - before) / 2**20, 1), "redis_down_cameras": len(down),
            "redis_down_query_ms_p50": round(p50, 2), "redis_down_query_ms_max": round(max(times) * 1000, 2),
            "redis_down_by_reading_every_hash_ms": round(scan_s * 1000), "redis_down_speedup": round(scan_s * 1000 / p50, 1)}


# ---- pool (child process) ----------------------------------------------------------------------------

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def pool_child(args: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: M cameras on one IngestPool, frames taken and dropped."""
    import threading

    from ingest.pool import IngestPool
    from ingest.settings import SourceSettings
    from ingest.source import CameraSource

    rss0, fds0 = _rss_mb(), _fds()
    n, seconds, url = args["cameras"], args["seconds"], args["url"]
    settings = SourceSettings(loop=True, realtime=True)
    sources = [CameraSource(f"pool-{i:05d}", url, source=settings, analysis_interval_s=args["interval_s"],
                            release_decoder=args["release_decoder"]) for i in range(n)]
    pool = IngestPool(sources, open_workers=8, seed=1)
    taken = 0
    stop = threading.Event()

    def consume() -> None:
        nonlocal taken
        while not stop.is_set():
            taken += len(pool.take(0.5))

    with pool:
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        deadline = time.monotonic() + args["warmup_max_s"]
        while time.monotonic() < deadline:
            if sum(h.state.value == "streaming" for h in pool.health()) >= 0.98 * n:
                break
            time.sleep(1)
        time.sleep(3)
        h0 = pool.health()
        cpu0, t0, taken0 = time.process_time(), time.monotonic(), taken
        peak_rss, peak_fds = 0.0, 0
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            peak_rss, peak_fds = max(peak_rss, _rss_mb()), max(peak_fds, _fds())
            if peak_rss > args["max_rss_mb"]:
                break
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        h1 = pool.health()
        stop.set()
    frames_in = sum(h.frames_in for h in h1) - sum(h.frames_in for h in h0)
    analysed = sum(h.frames_analysed for h in h1) - sum(h.frames_analysed for h in h0)
    return {"cameras": n, "streaming": sum(h.state.value == "streaming" for h in h1), "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 2), "frames_in": frames_in, "frames_analysed": analysed, "frames_taken": taken - taken0,
            "rss0_mb": round(rss0, 1), "rss_mb": round(peak_rss, 1), "fds0": fds0, "fds": peak_fds,
            "stopped_for_memory": peak_rss > args["max_rss_mb"]}


def bench_pool(n: int, seconds: float, interval_s: float, release_decoder: bool, max_rss_mb: float) -> dict[str, Any]:
    from ingest.rig import have_ffmpeg, make_clip

    if not have_ffmpeg():
        raise click.ClickException("pool: ffmpeg is needed to make the 1080p test clip (apt-get install -y ffmpeg)")
    fps, gop = 25, 50
    clip = make_clip(seconds=20, size="1920x1080", fps=fps, gop=gop, fmt="mp4", bitrate="4M")
    say(f"pool: {n} file-backed 1080p cameras (GOP {gop} at {fps} fps, realtime, looped) in one worker process for {seconds:g}s …")
    args = {"cameras": n, "seconds": seconds, "url": str(clip), "interval_s": interval_s, "release_decoder": release_decoder,
            "warmup_max_s": 120, "max_rss_mb": max_rss_mb}
    env = {**os.environ, "GUANJIA_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-m", "pipeline.bench_scale", json.dumps(args)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise click.ClickException(f"pool child failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    stream_s = r["frames_in"] / fps
    out = {f"pool_{k}": v for k, v in r.items()}
    out.update({
        "pool_resolution": "1920x1080", "pool_gop": gop, "pool_fps": fps, "pool_interval_s": interval_s,
        "pool_release_decoder": release_decoder,
        "pool_rss_mb_per_camera": round((r["rss_mb"] - r["rss0_mb"]) / n, 2),
        "pool_fds_per_camera": round((r["fds"] - r["fds0"]) / n, 2),
        "pool_cpu_percent": round(100 * r["cpu_s"] / r["wall_s"], 1),
        "pool_keep_up": round(stream_s / (n * r["wall_s"]), 3),
        "pool_cpu_s_per_stream_hour": round(r["cpu_s"] / stream_s * 3600, 1) if stream_s else None,
    })
    if out["pool_cpu_s_per_stream_hour"]:
        out["pool_streams_per_core"] = round(3600 / out["pool_cpu_s_per_stream_hour"], 1)
    return out


# ---- recording ---------------------------------------------------------------------------------------

def record(out: dict[str, Any], command: str) -> Path:
    from pipeline.plan import record_results

    figures: dict[str, tuple[float, str]] = {}
    conditions: dict[str, dict[str, Any]] = {}
    if out.get("pool_cpu_s_per_stream_hour"):
        figures["ingest.cpu_s_per_stream_hour"] = (out["pool_cpu_s_per_stream_hour"], "CPU-s per stream-hour")
        conditions["ingest.cpu_s_per_stream_hour"] = {
            "width": 1920, "height": 1080, "gop": out["pool_gop"], "fps": out["pool_fps"], "interval_s": out["pool_interval_s"],
            "decode_mode": "keyframes", "release_decoder": out["pool_release_decoder"], "cameras": out["pool_cameras"]}
        figures["ingest.rss_mb_per_camera"] = (out["pool_rss_mb_per_camera"], "MB RSS per camera")
        figures["ingest.fds_per_camera"] = (out["pool_fds_per_camera"], "fds per camera")
    if "topic_bytes_per_camera" in out:
        figures["kafka.camera_topic_bytes_per_camera"] = (out["topic_bytes_per_camera"], "bytes on disk per camera")
    if "publish_cameras_per_s" in out:
        figures["kafka.publish_cameras_per_s"] = (out["publish_cameras_per_s"], "camera configs per s")
    if out.get("detection_record_bytes"):
        figures["kafka.detection_record_bytes"] = (out["detection_record_bytes"], "bytes per Detection record")
        conditions["kafka.detection_record_bytes"] = {"sampled": out["detection_records_sampled"], "topic": "guanjia.detections.v1"}
    if "redis_bytes_per_camera" in out:
        figures["redis.bytes_per_camera"] = (out["redis_bytes_per_camera"], "bytes per camera")
        figures["redis.down_query_ms"] = (out["redis_down_query_ms_p50"], "ms p50")
        conditions["redis.down_query_ms"] = {"cameras": out["redis_cameras"], "down": out["redis_down_cameras"]}
    return record_results(figures, command, conditions=conditions)


@click.command("scale")
@click.option("--cameras", default=450_000, show_default=True, help="Camera configs to publish and health records in Redis.")
@click.option("--pool-cameras", default=1000, show_default=True, help="File-backed cameras held by one worker process.")
@click.option("--pool-seconds", default=60.0, show_default=True, help="Seconds the pool is measured after its cameras stream.")
@click.option("--interval", "interval_s", default=2.0, show_default=True, help="Seconds between analysed frames (pool).")
@click.option("--keep-decoders", is_flag=True, help="Pool: keep a decoder per camera (more memory) instead of a fresh one per keyframe.")
@click.option("--max-rss-mb", default=8000.0, show_default=True, help="Pool: stop early when the worker's RSS passes this.")
@click.option("--partitions", default=24, show_default=True, help="Partitions of the bench cameras topic.")
@click.option("--detections-topic", default=None,
              help="Topic whose Detection records are sampled for their size [default: guanjia.detections.v1].")
@click.option("--parts", default="publish,redis,pool", show_default=True, help="Comma-separated: publish, redis, pool.")
@click.option("--record", "do_record", is_flag=True, help="Merge the figures `guanjia plan` uses into docs/bench-results.json.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_scale(cameras: int, pool_cameras: int, pool_seconds: float, interval_s: float, keep_decoders: bool, max_rss_mb: float,
                partitions: int, detections_topic: str | None, parts: str, do_record: bool, as_json: bool) -> None:
    """The 450k control plane: publish N camera configs (time, topic size), Redis health for N cameras
    (memory per camera, "down > 5 min" query), one worker holding M file-backed 1080p cameras.

    \b
    Example:
      guanjia bench scale --cameras 450000 --pool-cameras 1000 --record
    """
    import logging

    from aiokafka.errors import KafkaConnectionError

    from pipeline.cli.kafka_errors import kafka_unreachable
    from pipeline.settings import get_settings

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    chosen = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = chosen - {"publish", "redis", "pool"}
    if unknown:
        raise click.BadParameter(f"unknown part(s) {sorted(unknown)}; use publish, redis, pool", param_hint="--parts")
    out: dict[str, Any] = {}
    try:
        if "publish" in chosen:
            out.update(asyncio.run(_publish(cameras, partitions)))
            out.update(detection_record_bytes(detections_topic))
    except (KafkaConnectionError, OSError) as exc:
        raise kafka_unreachable(get_settings().kafka_bootstrap, exc) from None
    if "redis" in chosen:
        out.update(bench_redis(cameras))
    if "pool" in chosen:
        out.update(bench_pool(pool_cameras, pool_seconds, interval_s, not keep_decoders, max_rss_mb))
    if do_record:
        command = (f"{SOURCE} --cameras {cameras} --pool-cameras {pool_cameras} --pool-seconds {pool_seconds:g} "
                   f"--interval {interval_s:g} --parts {parts}" + (" --keep-decoders" if keep_decoders else "")
                   + (f" --detections-topic {detections_topic}" if detections_topic else "") + " --record")
        out["recorded_to"] = str(record(out, command))
    if as_json:
        click.echo(json.dumps(out))
        return
    for key, value in out.items():
        click.echo(f"{key:<42} {value}")


if __name__ == "__main__":
    print(json.dumps(pool_child(json.loads(sys.argv[1]))))
