"""What one Faust worker costs per detection before the rules: the floor under ``guanjia bench events``.

Runs ``guanjia worker events`` on a backlog of the bench's detections twice per round, once with the
rule engine switched off (``RuleEngine.on_detection`` returns the state untouched: Faust's consume
path, the detection decode and the table bookkeeping remain) and once as shipped, and prints
detections/s (wall) and detections per CPU-second of the worker process for each.

    .venv/bin/python scripts/faust_floor.py [--detections 40000] [--rounds 2]

Needs the broker of ``scripts/services.sh up``. A research tool: the worker is patched in its own
process, nothing in the product changes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def worker() -> None:
    """Child process: the events worker, with the rule engine timed (and, for ``off``, bypassed)."""
    from pipeline.cli import main
    from pipeline.rules import engine

    total, mode, out = int(os.environ["FLOOR_N"]), os.environ["FLOOR_MODE"], Path(os.environ["FLOOR_OUT"])
    shipped = engine.RuleEngine.on_detection
    seen = {"n": 0, "wall": 0.0, "cpu": 0.0}

    def on_detection(self, state, det):
        if seen["n"] == 0:
            seen["wall"], seen["cpu"] = time.perf_counter(), time.process_time()
        seen["n"] += 1
        if seen["n"] == total:
            wall, cpu = time.perf_counter() - seen["wall"], time.process_time() - seen["cpu"]
            out.write_text(f"{total / wall:.0f} {total / cpu:.0f}")
        return (state, [], []) if mode == "off" else shipped(self, state, det)

    engine.RuleEngine.on_detection = on_detection
    sys.argv = ["guanjia", "worker", "events", "--config", os.environ["FLOOR_CONFIG"]]
    main()


def one_run(mode: str, detections: int, cameras: int) -> tuple[float, float]:
    from pipeline.bench_events import _produce, _topics, backlog, write_config
    from pipeline.faust_app import DEFAULT_BATCH
    from pipeline.settings import get_settings

    tmp = Path(tempfile.mkdtemp(prefix="guanjia-floor-"))
    config = write_config(tmp / "cameras.yaml", cameras)
    settings = _topics(f"floor{uuid.uuid4().hex[:6]}", 4, get_settings().kafka_bootstrap)
    asyncio.run(_produce(settings, settings.topic("detections"), backlog(cameras, detections // cameras, time.time() - 7200)))
    out = tmp / "result"
    env = {**os.environ, "GUANJIA_TOPIC_PREFIX": settings.topic_prefix, "GUANJIA_TOPIC_PARTITIONS": "4",
           "FLOOR_N": str(detections - DEFAULT_BATCH), "FLOOR_MODE": mode, "FLOOR_OUT": str(out), "FLOOR_CONFIG": str(config)}
    with (tmp / "worker.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120 + detections / 500
        while not out.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.terminate()
        proc.wait(20)
    if not out.exists():
        raise SystemExit(f"{mode}: no result; worker log {tmp / 'worker.log'}")
    wall, per_cpu = (float(x) for x in out.read_text().split())
    return wall, per_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=40_000)
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    for r in range(args.rounds):
        for mode in ("off", "shipped"):
            wall, per_cpu = one_run(mode, args.detections, args.cameras)
            print(f"round {r + 1} rules {mode:7}: {wall:7,.0f} det/s wall  {per_cpu:7,.0f} det per CPU-s  "
                  f"({1e6 / per_cpu:5.1f} µs CPU per detection)  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
