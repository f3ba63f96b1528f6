"""``guanjia plan``: the hardware a fleet needs, from the figures the benchmarks recorded."""

from __future__ import annotations

import json
from pathlib import Path

import click

LABELS = {
    "analysed_frames_per_s": "analysed frames (detections) per s",
    "ingest_cpu_s_per_camera_hour": "ingest CPU-s per camera-hour",
    "ingest_cores": "ingest cores",
    "ingest_workers": "ingest workers",
    "cameras_per_ingest_worker": "cameras per ingest worker",
    "ingest_memory_gb": "ingest memory (GB, all workers)",
    "ingest_fds_per_worker": "file descriptors per ingest worker",
    "detector_cores_cpu_only": "detector cores (CPU only)",
    "gpus": "GPUs",
    "event_workers": "event workers",
    "event_cores": "event cores",
    "kafka_partitions_cameras": "Kafka partitions, guanjia.cameras.v1",
    "kafka_partitions_detections": "Kafka partitions, guanjia.detections.v1",
    "kafka_detections_mb_per_s": "Kafka detections MB/s",
    "kafka_detections_tb_per_day_replicated": "Kafka detections TB per day kept (replicated)",
    "kafka_cameras_topic_mb": "Kafka cameras topic MB",
    "redis_memory_mb": "Redis memory MB (camera health)",
    "redis_down_query_ms_measured": "Redis 'down > 5 min' query ms (measured)",
    "camera_ingress_gbit_s": "camera streams in, Gbit/s",
    "ingress_mbit_s_per_ingest_worker": "camera streams in per ingest worker, Mbit/s",
    "cores_without_detectors": "cores: ingest + events",
    "cores_total_cpu_only": "cores: ingest + events + CPU detectors",
}


def _option(field: str) -> str:
    """The option a PlanInputs field comes from (``interval_s`` → ``--interval``), for error messages."""
    for param in plan.params:
        if param.name == field and param.opts:
            return max(param.opts, key=len)
    return f"--{field.replace('_', '-')}"


@click.command()
@click.option("--cameras", default=450_000, show_default=True, help="Cameras in the fleet.")
@click.option("--interval", "interval_s", default=2.0, show_default=True, help="Seconds between analysed frames per camera.")
@click.option("--resolution", default="1080p", show_default=True, help="480p, 576p, 720p, 1080p, 1440p or 4k.")
@click.option("--gop", default=50, show_default=True, help="Frames between keyframes.")
@click.option("--fps", default=25.0, show_default=True, help="Stream frame rate.")
@click.option("--bitrate-mbps", default=4.0, show_default=True, help="Camera stream bitrate (assumption).")
@click.option("--headroom", default=0.7, show_default=True, help="Fraction of measured throughput a machine is planned to use.")
@click.option("--growth", default=2.0, show_default=True, help="Kafka partitions = workers × growth.")
@click.option("--replication", default=3, show_default=True, help="Kafka replication factor.")
@click.option("--results", "results_path", type=click.Path(path_type=Path), default=None,
              help="Results file of measured figures [default: docs/bench-results.json].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(cameras: int, interval_s: float, resolution: str, gop: int, fps: float, bitrate_mbps: float, headroom: float,
         growth: float, replication: int, results_path: Path | None, as_json: bool) -> None:
    """Cores, GPUs, ingest and event workers, Kafka partitions, Redis memory and bandwidth for a fleet,
    computed from the figures `guanjia bench` recorded (docs/bench-results.json).

    \b
    Example:
      guanjia plan --cameras 450000 --interval 2 --resolution 1080p --gop 50
    """
    from pydantic import ValidationError

    from pipeline.plan import RESULTS_FILE, PlanInputs, load_results, make_plan

    path = results_path or RESULTS_FILE
    try:
        results = load_results(path)
        inputs = PlanInputs(cameras=cameras, interval_s=interval_s, resolution=resolution, gop=gop, fps=fps,
                            bitrate_mbps=bitrate_mbps, headroom=headroom, growth=growth, replication=replication)
        out = make_plan(inputs, results)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise click.ClickException(f"{_option(str(err['loc'][0]))}: {err['msg']}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not results.figures:
        raise click.ClickException(f"no measured figures in {path}; run `guanjia bench scale --record` first")
    out["results_file"] = str(path)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"Plan for {cameras:,} cameras, one frame per {interval_s:g} s, {resolution}, GOP {gop} at {fps:g} fps "
               f"(headroom {headroom:g}, from {path})")
    for key, value in out["plan"].items():
        shown = "—" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.2f}".rstrip("0").rstrip(".")
        click.echo(f"  {LABELS.get(key, key):<46} {shown}")
    click.echo("Measured figures used:")
    for key, fig in out["figures_used"].items():
        click.echo(f"  {key} = {fig['value']:g} {fig['unit']}  ← {fig['source']} ({fig['measured_at']})")
    for note in out["notes"]:
        click.echo(f"Note: {note}")
    for key, how in out["missing"].items():
        click.echo(f"Missing: {key} (record it with `{how}`)")
    click.echo(f"Assumed: camera bitrate {bitrate_mbps:g} Mbit/s, Kafka replication {replication}, partitions = workers × {growth:g}")
