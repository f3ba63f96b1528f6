"""Capacity plan for a camera fleet, computed from measured figures (``docs/bench-results.json``).

The results file holds figures that benchmark commands recorded, each with the command that
produced it, when and where; the planner reads only those (a missing figure leaves its part of the
plan out and says which command records it). Policy inputs — headroom, growth, camera bitrate —
are options of ``guanjia plan``, printed with the plan as assumptions.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ingest.settings import StrictModel

RESULTS_FILE = Path(__file__).resolve().parents[1] / "docs" / "bench-results.json"
RESOLUTIONS = {"480p": (854, 480), "576p": (768, 576), "720p": (1280, 720), "1080p": (1920, 1080),
               "1440p": (2560, 1440), "4k": (3840, 2160)}


class Figure(StrictModel):
    """One measured figure."""

    value: float = Field(..., description="The measured value.")
    unit: str = Field(..., description="Unit, e.g. 'CPU-s per stream-hour'.")
    source: str = Field(..., description="The command that measured it.")
    measured_at: str = Field(..., description="UTC time of the measurement.")
    machine: str = Field("", description="Where: host, cores, CPU model.")
    conditions: dict[str, Any] = Field(default_factory=dict, description="What was measured (resolution, GOP, model…).")
    note: str | None = Field(None, description="How to read it.")


class Results(StrictModel):
    """The results file."""

    figures: dict[str, Figure] = Field(default_factory=dict, description="Figure key → figure.")


def machine() -> str:
    """A short description of this machine for the results file."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {os.cpu_count()} cores, {model or platform.machine()}"


def load_results(path: Path | str = RESULTS_FILE) -> Results:
    """The results file (empty when absent)."""
    path = Path(path)
    if not path.is_file():
        return Results()
    try:
        return Results.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a results file ({str(exc).splitlines()[0]})") from None


def record_results(figures: dict[str, tuple[float, str]], source: str, *, path: Path | str = RESULTS_FILE,
                   conditions: dict[str, dict[str, Any]] | None = None, notes: dict[str, str] | None = None,
                   measured_at: str | None = None, host: str | None = None) -> Path:
    """Merge ``{key: (value, unit)}`` into the results file, stamped with ``source``, time and machine."""
    path = Path(path)
    results = load_results(path)
    when = measured_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = host or machine()
    for key, (value, unit) in figures.items():
        results.figures[key] = Figure(value=value, unit=unit, source=source, measured_at=when, machine=host,
                                      conditions=(conditions or {}).get(key, {}), note=(notes or {}).get(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.model_dump(exclude_none=True), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


class PlanInputs(StrictModel):
    """What the fleet looks like and how much margin to plan with."""

    cameras: int = Field(..., gt=0, description="Cameras in the fleet.")
    interval_s: float = Field(2.0, gt=0, description="Seconds between analysed frames per camera.")
    resolution: str = Field("1080p", description="Stream resolution (one of RESOLUTIONS).")
    gop: int = Field(50, gt=0, description="Frames between keyframes.")
    fps: float = Field(25.0, gt=0, description="Stream frame rate.")
    bitrate_mbps: float = Field(4.0, gt=0, description="Camera stream bitrate (assumption: a property of the cameras).")
    headroom: float = Field(0.7, gt=0, le=1, description="Fraction of measured throughput a machine is planned to use.")
    growth: float = Field(2.0, ge=1, description="Kafka partitions = workers × growth (workers can be added without repartitioning).")
    cores_per_ingest_worker: int = Field(1, ge=1, description="Cores per ingest worker process (one per core: see DESIGN.md).")
    replication: int = Field(3, ge=1, description="Kafka replication factor in production.")


def _need(results: Results, key: str, missing: dict[str, str], how: str) -> Figure | None:
    fig = results.figures.get(key)
    if fig is None:
        missing[key] = how
    return fig


def make_plan(inputs: PlanInputs, results: Results) -> dict[str, Any]:
    """The plan: one dict of figures plus what each was computed from and what was missing.

    A ValueError (one line) when the inputs or figures give no finite plan: an input so small or large
    that a count divides by zero or overflows, or a recorded figure of 0.
    """
    try:
        out = _make_plan(inputs, results)
    except (ZeroDivisionError, OverflowError) as exc:
        raise ValueError(f"no plan for these inputs ({type(exc).__name__}: {exc}): an input is too small or too "
                         "large, or a figure in the results file is 0") from None
    bad = [key for key, value in out["plan"].items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise ValueError(f"no plan for these inputs: {', '.join(bad)} would not be a finite number "
                         "(an input is too small or too large)")
    return out


def _make_plan(inputs: PlanInputs, results: Results) -> dict[str, Any]:
    if inputs.resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {inputs.resolution!r}; use one of {', '.join(RESOLUTIONS)}")
    width, height = RESOLUTIONS[inputs.resolution]
    c = inputs.cameras
    frames_per_s = c / inputs.interval_s  # analysed frames (= Detection records) per second, fleet-wide
    keyframe_s = inputs.gop / inputs.fps
    missing: dict[str, str] = {}
    used: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    plan: dict[str, Any] = {"analysed_frames_per_s": round(frames_per_s, 1)}

    def use(key: str, fig: Figure) -> float:
        used[key] = {"value": fig.value, "unit": fig.unit, "source": fig.source, "measured_at": fig.measured_at,
                     "machine": fig.machine, "conditions": fig.conditions}
        return fig.value

    scale_bench = "guanjia bench scale --record"
    # ---- ingest: decode CPU and memory per camera, scaled from the measured stream's conditions
    ingest = _need(results, "ingest.cpu_s_per_stream_hour", missing, scale_bench)
    if ingest is not None:
        cond = ingest.conditions
        pixel_ratio = (width * height) / (cond.get("width", width) * cond.get("height", height))
        # keyframes mode decodes one keyframe per max(interval, keyframe spacing); demuxing is per packet
        decoded_ratio = max(cond.get("interval_s", inputs.interval_s), cond.get("gop", inputs.gop) / cond.get("fps", inputs.fps)) \
            / max(inputs.interval_s, keyframe_s)
        per_cam = use("ingest.cpu_s_per_stream_hour", ingest) * pixel_ratio * decoded_ratio
        if abs(pixel_ratio - 1) > 0.01 or abs(decoded_ratio - 1) > 0.01:
            notes.append(f"ingest CPU scaled ×{pixel_ratio:.2f} for pixels and ×{decoded_ratio:.2f} for decoded frames from "
                         f"the measured {cond.get('width')}x{cond.get('height')}, GOP {cond.get('gop')}, interval {cond.get('interval_s')} s")
        cores = c * per_cam / 3600 / inputs.headroom
        plan["ingest_cpu_s_per_camera_hour"] = round(per_cam, 2)
        plan["ingest_cores"] = math.ceil(cores)
        plan["ingest_workers"] = math.ceil(cores / inputs.cores_per_ingest_worker)
        plan["cameras_per_ingest_worker"] = math.ceil(c / plan["ingest_workers"])
        rss = _need(results, "ingest.rss_mb_per_camera", missing, scale_bench)
        if rss is not None:
            plan["ingest_memory_gb"] = round(c * use("ingest.rss_mb_per_camera", rss) / 1024, 1)
        fds = _need(results, "ingest.fds_per_camera", missing, scale_bench)
        if fds is not None:
            plan["ingest_fds_per_worker"] = math.ceil(plan["cameras_per_ingest_worker"] * use("ingest.fds_per_camera", fds))

    # ---- detectors: CPU images/s per core, GPU images/s per GPU where one was measured
    crowd = _need(results, "detect.crowd_cpu_images_per_core_s", missing, "guanjia bench detect --json")
    fire = _need(results, "detect.fire_cpu_images_per_core_s", missing, "guanjia bench detect --json")
    if crowd is not None and fire is not None:
        per_core = 1 / (1 / use("detect.crowd_cpu_images_per_core_s", crowd) + 1 / use("detect.fire_cpu_images_per_core_s", fire))
        plan["detector_cores_cpu_only"] = math.ceil(frames_per_s / per_core / inputs.headroom)
    gpu = results.figures.get("detect.gpu_images_per_s")
    if gpu is not None:
        plan["gpus"] = math.ceil(frames_per_s / use("detect.gpu_images_per_s", gpu) / inputs.headroom)
    else:
        plan["gpus"] = None
        notes.append("GPUs: no GPU throughput in the results file (record detect.gpu_images_per_s on a GPU machine); "
                     "the plan counts detector CPU cores instead")

    # ---- events: Faust workers by detections/s per worker, cores by detections per CPU-second
    ev = _need(results, "events.det_per_s_per_worker", missing, "guanjia bench events --json")
    if ev is not None:
        plan["event_workers"] = math.ceil(frames_per_s / (use("events.det_per_s_per_worker", ev) * inputs.headroom))
    ev_cpu = _need(results, "events.det_per_cpu_s", missing, "guanjia bench events --json")
    if ev_cpu is not None:
        plan["event_cores"] = math.ceil(frames_per_s / use("events.det_per_cpu_s", ev_cpu) / inputs.headroom)

    # ---- Kafka: partitions so that every worker owns some, with room to add workers
    if "ingest_workers" in plan:
        plan["kafka_partitions_cameras"] = math.ceil(plan["ingest_workers"] * inputs.growth)
    if "event_workers" in plan:
        plan["kafka_partitions_detections"] = math.ceil(plan["event_workers"] * inputs.growth)
    det_bytes = _need(results, "kafka.detection_record_bytes", missing, scale_bench)
    if det_bytes is not None:
        mb_s = frames_per_s * use("kafka.detection_record_bytes", det_bytes) / 1e6
        plan["kafka_detections_mb_per_s"] = round(mb_s, 1)
        plan["kafka_detections_tb_per_day_replicated"] = round(mb_s * 86400 / 1e6 * inputs.replication, 1)
    cam_bytes = _need(results, "kafka.camera_topic_bytes_per_camera", missing, scale_bench)
    if cam_bytes is not None:
        plan["kafka_cameras_topic_mb"] = round(c * use("kafka.camera_topic_bytes_per_camera", cam_bytes) / 1e6, 1)

    # ---- Redis: per-camera health hash + last-seen entry
    redis_b = _need(results, "redis.bytes_per_camera", missing, scale_bench)
    if redis_b is not None:
        plan["redis_memory_mb"] = round(c * use("redis.bytes_per_camera", redis_b) / 2**20, 1)
    down = results.figures.get("redis.down_query_ms")
    if down is not None:
        plan["redis_down_query_ms_measured"] = use("redis.down_query_ms", down)

    # ---- network: camera streams into ingest workers, detections out
    plan["camera_ingress_gbit_s"] = round(c * inputs.bitrate_mbps / 1000, 1)
    if "ingest_workers" in plan:
        plan["ingress_mbit_s_per_ingest_worker"] = round(plan["cameras_per_ingest_worker"] * inputs.bitrate_mbps, 1)

    parts = [plan.get("ingest_cores"), plan.get("event_cores")]
    if all(p is not None for p in parts):
        plan["cores_without_detectors"] = sum(parts)
        if plan["gpus"] is None and "detector_cores_cpu_only" in plan:
            plan["cores_total_cpu_only"] = plan["cores_without_detectors"] + plan["detector_cores_cpu_only"]
    return {"inputs": inputs.model_dump(), "plan": plan, "figures_used": used, "missing": missing, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.plan record KEY VALUE UNIT "SOURCE COMMAND" [--when T] [--note N] [--cond k=v …]``:
    record a figure that another benchmark printed (e.g. ``guanjia bench detect --json``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.plan", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="merge one figure into the results file")
    rec.add_argument("key")
    rec.add_argument("value", type=float)
    rec.add_argument("unit")
    rec.add_argument("source", help="the command that measured it")
    rec.add_argument("--when", help="UTC time of the measurement (default: now)")
    rec.add_argument("--note")
    rec.add_argument("--cond", action="append", default=[], help="condition key=value (repeatable)")
    rec.add_argument("--results", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    cond: dict[str, Any] = {}
    for item in args.cond:
        k, _, v = item.partition("=")
        try:
            cond[k] = json.loads(v)
        except ValueError:
            cond[k] = v
    path = record_results({args.key: (args.value, args.unit)}, args.source, path=args.results, conditions={args.key: cond},
                          notes={args.key: args.note} if args.note else None, measured_at=args.when)
    print(f"{args.key} = {args.value:g} {args.unit} → {path}")


if __name__ == "__main__":
    main()
