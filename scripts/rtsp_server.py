#!/usr/bin/python3
"""A local RTSP server for tests and benchmarks (GStreamer's GstRtspServer).

Run it with the system ``/usr/bin/python3``: the ``gi`` bindings live there, not in the venv.
Each mount relays an MPEG-TS/H.264 feed that arrives on a local UDP port, for example from
``ffmpeg -re -stream_loop -1 -i clip.ts -c copy -f mpegts udp://127.0.0.1:5600``::

    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --mount cam0=5600 --mount cam1=5601

serves ``rtsp://127.0.0.1:8554/cam0`` and ``rtsp://127.0.0.1:8554/cam1``. The media are shared,
so any number of clients read one feed. Prints ``ready <port>`` once it listens.

``tsdemux ignore-pcr=true`` matters: with PCR-based timing the relayed stream came out at about
a ninth of its real rate on a loaded machine (timestamps stretched), and opening took ~6.5 s.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

PIPELINE = (
    '( udpsrc port={udp_port} caps="video/mpegts, systemstream=(boolean)true" buffer-size=2097152 '
    "! tsdemux ignore-pcr=true ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
)


def parse_mount(text: str) -> tuple[str, int]:
    """``name=udp_port`` → (name, port)."""
    name, _, port = text.partition("=")
    if not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"mount must look like cam0=5600, got {text!r}")
    return name, int(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=8554, help="RTSP port.")
    parser.add_argument("--mount", type=parse_mount, action="append", required=True,
                        help="name=udp_port; repeat for more mounts.")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, udp_port in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(PIPELINE.format(udp_port=udp_port))
        factory.set_shared(True)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
