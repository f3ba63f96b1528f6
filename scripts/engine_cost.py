"""CPU per detection of the rule engine and the desk in process (no Kafka, no Faust), on the events bench's workload.

Runs the bench's backlog (1,000 cameras, one event per four detections) through the path a detection
takes in the events worker: the detection decode, ``RuleEngine.on_detection``, each draft encoded,
decoded at the desk and merged by ``RuleEngine.on_draft``, and each event encoded. Prints µs of CPU per
detection for each round; ``--profile`` adds a cProfile table of the last round.

    .venv/bin/python scripts/engine_cost.py [--cameras 1000] [--steps 20] [--rounds 3] [--profile]

A research tool for the split between the rules and Faust (see ``scripts/faust_floor.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from pipeline.bench_events import backlog, write_config
    from pipeline.catalog import load_catalog
    from pipeline.codec import decode, decode_detection
    from pipeline.config import load_config
    from pipeline.faust_app import DeskTick
    from pipeline.records import Ack, GovernanceEvent
    from pipeline.rules.engine import RuleEngine

    config = write_config(Path(tempfile.mkdtemp(prefix="guanjia-engine-cost-")) / "cameras.yaml", args.cameras)
    city = load_config([config])
    engine = RuleEngine(city.cameras, load_catalog(), city.rules)
    messages = [d.to_json() for d in backlog(args.cameras, args.steps, time.time() - 7200)]

    def one_pass() -> int:
        cameras: dict[str, dict] = {}
        desk: dict[str, dict] = {}
        events = 0
        for raw in messages:
            det = decode_detection(raw)
            state, drafts, _signals = engine.on_detection(cameras.get(det.camera_id) or {}, det)
            cameras[det.camera_id] = state
            for draft in drafts:
                change = decode(draft.to_json(), (GovernanceEvent, Ack, DeskTick))
                desk[change.event_id], out = engine.on_draft(desk.get(change.event_id) or {}, change)
                events += len([e.to_json() for e in out])
        return events

    for r in range(args.rounds):
        start = time.process_time()
        events = one_pass()
        cpu = time.process_time() - start
        print(f"round {r + 1}: {len(messages)} detections, {events} events: "
              f"{cpu / len(messages) * 1e6:.1f} µs CPU per detection ({len(messages) / cpu:,.0f} per CPU-s)", flush=True)
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(one_pass)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
