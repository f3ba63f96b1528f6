"""``guanjia demo`` cut short by a signal says so in its exit code: SIGINT 130, SIGTERM 143 (128 + the
signal, as a shell reports it), never 0, which a supervisor would read as a completed run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.fault_support import GUANJIA, wait_for, write_fire_cameras
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_demo_stopped_by_a_signal_exits_128_plus_the_signal(clip, tmp_path: Path, sig: int, code: int) -> None:
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    video = clip(seconds=4.0, size="320x240", fps=10, gop=10)
    config = write_fire_cameras(tmp_path / "cams.yaml", "sig", video, ["sig-1"])  # loops: never ends by itself
    out = tmp_path / "out"
    log = tmp_path / "demo.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([GUANJIA, "demo", "--config", str(config), "--out", str(out)],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        # events.jsonl is opened once the signal handlers are in place and the loop is about to start
        assert wait_for(lambda: (out / "events.jsonl").exists(), 120, every_s=0.2) is not None, log.read_text()[-3000:]
        time.sleep(2.0)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(sig)
        assert proc.wait(60) == code, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "(interrupted)" in text and "Traceback" not in text, text[-3000:]
