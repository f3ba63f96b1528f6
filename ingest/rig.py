"""A local RTSP rig for tests and benchmarks: test clips, GstRtspServer, ffmpeg feeders.

Needs ``ffmpeg`` and the system ``/usr/bin/python3`` with GStreamer's RTSP server bindings
(Debian: ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{good,bad,ugly} ffmpeg``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = REPO_ROOT / "scripts" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def cache_dir() -> Path:
    path = Path(os.environ.get("GUANJIA_CACHE_DIR", REPO_ROOT / ".cache")) / "clips"
    path.mkdir(parents=True, exist_ok=True)
    return path


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


@lru_cache(maxsize=1)
def missing_rtsp_tools() -> str | None:
    """None when ffmpeg and the GStreamer RTSP server can run here, else what is missing."""
    if not have_ffmpeg():
        return "ffmpeg is not installed"
    if not Path(SYSTEM_PYTHON).exists() or not SERVER_SCRIPT.exists():
        return f"{SYSTEM_PYTHON} or {SERVER_SCRIPT} is missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
        capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        return "GStreamer RTSP server bindings missing (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)"
    return None


def make_clip(seconds: float = 10.0, size: str = "320x240", fps: int = 25, gop: int = 25,
              fmt: str = "mpegts", bitrate: str | None = None) -> Path:
    """An H.264 test clip (libx264, fixed GOP, in-band SPS/PPS for MPEG-TS), cached by parameters."""
    ext = {"mpegts": "ts", "mp4": "mp4"}[fmt]
    key = hashlib.sha1(f"{seconds}-{size}-{fps}-{gop}-{fmt}-{bitrate}-v1".encode()).hexdigest()[:10]
    path = cache_dir() / f"clip-{size}-{fps}fps-gop{gop}-{seconds:g}s-{key}.{ext}"
    if path.exists():
        return path
    tmp = path.with_name(path.stem + ".part." + ext)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    if bitrate:
        cmd += ["-b:v", bitrate]
    cmd += ["-f", fmt, str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 right now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class RtspRig:
    """An RTSP server with ``n`` mounts, each fed by its own looping ffmpeg feeder.

    The server can be killed and restarted on the same port while the feeders keep sending,
    like a camera whose RTSP service restarts.
    """

    def __init__(self, clip: Path, n: int = 1, port: int | None = None):
        self.clip = Path(clip)
        self.port = port or free_port()
        self.udp_ports = [free_port(socket.SOCK_DGRAM) for _ in range(n)]
        self.server: subprocess.Popen | None = None
        self.feeders: list[subprocess.Popen] = []

    @property
    def urls(self) -> list[str]:
        return [f"rtsp://127.0.0.1:{self.port}/cam{i}" for i in range(len(self.udp_ports))]

    def start(self) -> Self:
        self.start_server()
        for udp in self.udp_ports:
            self.feeders.append(subprocess.Popen(
                ["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                 "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{udp}?pkt_size=1316"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        return self

    def start_server(self, wait_s: float = 15.0) -> None:
        """Start (or restart) the server on :attr:`port`; returns once it listens."""
        mounts = [f"--mount=cam{i}={udp}" for i, udp in enumerate(self.udp_ports)]
        deadline = time.monotonic() + wait_s
        while True:
            self.server = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), *mounts],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            line = self.server.stdout.readline()
            if line.startswith("ready"):
                return
            self.server.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start on port {self.port}")
            time.sleep(0.2)  # the port may still be in TIME_WAIT after a kill

    def kill_server(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crashing camera would."""
        _stop(self.server, signal.SIGKILL)
        self.server = None

    def pause_server(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is sent, like a hung camera."""
        self.server.send_signal(signal.SIGSTOP)

    def resume_server(self) -> None:
        self.server.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGCONT)
        self.kill_server()
        for feeder in self.feeders:
            _stop(feeder)
        self.feeders = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
