"""``guanjia bench config``: generate a fleet-sized inventory CSV, then load and validate it.

The load runs in a fresh child process so that its wall time and peak RSS are its own; its CPU time
is reported too, since wall time on a shared machine mostly measures the neighbours. A naive
baseline (one pydantic validation per camera, settings merged and validated per camera, as a
straightforward loader would do) runs on a sample in the same child for a side-by-side ratio.
"""

from __future__ import annotations

import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

TARGET_LOAD_S = 10.0
TARGET_RSS_MB = 1536.0
# Dongguan's bounding box, roughly
LAT = (22.65, 23.15)
LON = (113.55, 114.25)


def generate(folder: Path, cameras: int, grids: int, towns: int, zone_share: float, seed: int = 7) -> Path:
    """Write ``city.yaml`` + ``inventory.csv`` (cameras spread over grids, grids over towns); return the YAML."""
    rng = random.Random(seed)
    villages_per_town = max(1, grids // towns // 5)
    with (folder / "inventory.csv").open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "url", "grid", "village", "town", "lat", "lon", "zone_name", "zone_polygon", "zone_area_m2"])
        for i in range(cameras):
            g = i % grids
            t = g % towns
            v = (g // towns) % villages_per_town
            zone = rng.random() < zone_share
            out.writerow([
                f"cam-{i:07d}",
                f"rtsp://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:554/Streaming/Channels/101",
                f"G{g:05d}",
                f"T{t:02d}-V{v:03d}",
                f"T{t:02d}",
                f"{rng.uniform(*LAT):.6f}",
                f"{rng.uniform(*LON):.6f}",
                "entrance" if zone else "",
                "0.1 0.5;0.9 0.5;0.95 0.98;0.05 0.98" if zone else "",
                "120" if zone else "",
            ])
    path = folder / "city.yaml"
    path.write_text(
        "defaults:\n  analysis_interval_s: 2\n  rules: {crowding: {threshold: 3, clear_threshold: 2}}\n"
        "groups:\n  - id: fleet\n    name: Generated fleet\n    inventory: inventory.csv\n"
        "    crowd: {score_threshold: 0.45}\n",
        encoding="utf-8",
    )
    return path


def measure(path: Path, baseline_rows: int) -> dict:
    """In the child: load ``path`` and report time and peak RSS, then time the naive baseline."""
    from pipeline.config import load_config

    base_rss = _peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    city = load_config([path])
    load_s, load_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    figures = {"load_s": load_s, "load_cpu_s": load_cpu_s, "peak_rss_mb": _peak_rss_mb(), "import_rss_mb": base_rss, **city.summary()}
    if baseline_rows:  # per-camera CPU time: a fair ratio even when other work shares the cores
        n = min(baseline_rows, len(city.cameras))
        naive_us = _naive(path.parent / "inventory.csv", n) / n * 1e6
        fast_us = load_cpu_s / len(city.cameras) * 1e6
        figures.update(
            baseline_rows=n,
            naive_cpu_us_per_camera=naive_us,
            fast_cpu_us_per_camera=fast_us,
            speedup_vs_naive=naive_us / fast_us,
        )
    return figures


def _naive(csv_path: Path, rows: int) -> float:
    """One model per row, settings merged and validated per camera (the straightforward approach)."""
    from pipeline.config.merge import deep_merge
    from pipeline.config.models import CameraConfig, CameraSettings, ResolvedCamera

    defaults = {"analysis_interval_s": 2, "rules": {"crowding": {"threshold": 3, "clear_threshold": 2}}}
    group = {"crowd": {"score_threshold": 0.45}}
    start = time.process_time()
    with csv_path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh)):
            if n >= rows:
                break
            zones = [{"name": row["zone_name"], "polygon": [p.split() for p in row["zone_polygon"].split(";")],
                      "area_m2": row["zone_area_m2"]}] if row["zone_name"] else []
            cam = CameraConfig.model_validate({k: row[k] for k in ("id", "url", "grid", "village", "town", "lat", "lon")} | {"zones": zones})
            settings = CameraSettings.model_validate(deep_merge(defaults, group))
            ResolvedCamera.model_validate({**cam.model_dump(), "group_id": "fleet", "settings": settings})
    return time.process_time() - start


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@click.command("config")
@click.option("--cameras", default=450_000, show_default=True, help="Cameras in the generated inventory.")
@click.option("--grids", default=2927, show_default=True, help="Grid cells they are spread over.")
@click.option("--towns", default=33, show_default=True, help="Towns the grid cells belong to.")
@click.option("--zone-share", default=0.1, show_default=True, help="Share of cameras with a counting zone.")
@click.option("--baseline-rows", default=20_000, show_default=True, help="Rows timed with the naive per-camera loader (0: skip).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_config(cameras: int, grids: int, towns: int, zone_share: float, baseline_rows: int, as_json: bool) -> None:
    """Generate an inventory CSV, then load and validate it in a fresh process; report time and peak RSS.

    \b
    Example:
      guanjia bench config --cameras 450000 --json
    """
    with tempfile.TemporaryDirectory(prefix="guanjia-bench-config-") as tmp:
        start = time.perf_counter()
        path = generate(Path(tmp), cameras, grids, towns, zone_share)
        generate_s = time.perf_counter() - start
        csv_mb = (Path(tmp) / "inventory.csv").stat().st_size / 2**20
        child = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.bench_config", str(path), str(baseline_rows)],
            check=False,
            capture_output=True,
            text=True,
        )
    if child.returncode != 0:
        raise click.ClickException(f"load failed:\n{child.stderr.strip()[-2000:]}")
    figures = {"cameras_requested": cameras, "generate_s": generate_s, "csv_mb": csv_mb, **json.loads(child.stdout)}
    figures["load_vs_target"] = figures["load_s"] / TARGET_LOAD_S
    figures["rss_vs_target"] = figures["peak_rss_mb"] / TARGET_RSS_MB
    if as_json:
        click.echo(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))
        return
    click.echo(f"generated {cameras:,} cameras over {grids:,} grid cells / {towns} towns: {generate_s:.2f} s ({csv_mb:.0f} MB CSV)")
    click.echo(f"load + validate: {figures['load_s']:.2f} s wall, {figures['load_cpu_s']:.2f} s CPU  "
               f"({figures['load_vs_target']:.2f} × the {TARGET_LOAD_S:.0f} s target)")
    click.echo(f"peak RSS: {figures['peak_rss_mb']:.0f} MB  ({figures['rss_vs_target']:.2f} × the {TARGET_RSS_MB:.0f} MB target; "
               f"{figures['import_rss_mb']:.0f} MB after imports)")
    click.echo(f"loaded: {figures['cameras']:,} cameras, {figures['zones']:,} zones, {figures['grid_cells']:,} grid cells, {figures['towns']} towns")
    if "speedup_vs_naive" in figures:
        click.echo(f"CPU per camera: {figures['fast_cpu_us_per_camera']:.1f} µs vs naive {figures['naive_cpu_us_per_camera']:.1f} µs "
                   f"on {figures['baseline_rows']:,} rows → {figures['speedup_vs_naive']:.1f}× faster")


if __name__ == "__main__":  # the child process: python -m pipeline.cli.bench_config CITY.yaml BASELINE_ROWS
    print(json.dumps(measure(Path(sys.argv[1]), int(sys.argv[2]))))
