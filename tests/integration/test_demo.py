"""``guanjia demo`` end to end on the shared footage: events, evidence JPEGs and the summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.records import GovernanceEvent
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

GUANJIA = str(Path(sys.executable).with_name("guanjia"))
SAMPLED_FRAMES = 80 + 30 + 200  # vtest 79.5 s at 1 s, house6 30 s at 1 s, mall 400 s at 2 s


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    for part in ("data/video/vtest.avi", "data/fire/furg/house6.mp4", "data/crowd/mall_train/mall_train_2fps.mp4",
                 "models/yolox_nano_coco_416.onnx", "models/shufflenetv2_onfire_224.onnx"):
        shared_path(*part.split("/"))
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([GUANJIA, "demo", "--out", str(out), "--max-seconds", "150"],
                          capture_output=True, text=True, timeout=280, check=False)
    return proc, out


def test_demo_exits_cleanly(demo_run):
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_demo_writes_a_crowding_and_a_fire_event(demo_run):
    _proc, out = demo_run
    events = [GovernanceEvent.from_json(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    opened = [e for e in events if e.action.value == "opened"]
    crowd = [e for e in opened if e.rule == "crowding" and e.camera_id == "demo-street"]
    fire = [e for e in opened if e.rule == "fire" and e.camera_id == "demo-house-fire"]
    assert crowd and fire, [(e.rule, e.camera_id, e.action.value) for e in events]
    assert crowd[0].town == "Guancheng" and crowd[0].grid_id == "GC-XC-001" and crowd[0].value >= 5
    assert fire[0].town == "Humen" and fire[0].grid_id == "HM-ZA-014" and fire[0].value >= 0.5
    # revisions of one event share its id and count up from 0
    for eid in {e.event_id for e in events}:
        revs = [e.revision for e in events if e.event_id == eid]
        assert revs == sorted(revs) and revs[0] == 0


def test_every_opened_event_has_its_annotated_jpeg(demo_run):
    _, out = demo_run
    events = [GovernanceEvent.from_json(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    keys = {e.evidence_key for e in events if e.action.value == "opened" and e.rule in ("crowding", "fire")}
    assert keys and None not in keys
    for key in keys:
        data = (out / key).read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and len(data) > 5000, key


def test_summary_table_and_every_sampled_frame_analysed(demo_run):
    proc, out = demo_run
    assert "events by type, town and grid cell" in proc.stdout
    assert re.search(r"crowding\s*│\s*Guancheng\s*│\s*GC-XC-001", proc.stdout), proc.stdout
    assert re.search(r"fire\s*│\s*Humen\s*│\s*HM-ZA-014", proc.stdout), proc.stdout
    assert str(out / "events.jsonl") in proc.stdout.replace("\n", "")
    if "(stopped at --max-seconds" not in proc.stdout:
        # backpressure: the files are read faster than analysed, yet no sampled frame is skipped
        assert f"{SAMPLED_FRAMES} frames analysed" in proc.stdout, proc.stdout
