"""What to pull (:class:`CameraSource`) and how to open it with PyAV (:func:`open_input`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import av

from ingest.settings import DecodeMode, ReconnectPolicy, SourceSettings
from ingest.urls import file_path, redact_url, url_scheme

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})


@dataclass(frozen=True)
class CameraSource:
    """One camera for the ingest pool; independent of the pipeline's config types."""

    camera_id: str
    url: str = field(repr=False)
    source: SourceSettings = field(default_factory=SourceSettings)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    analysis_interval_s: float = 2.0
    decode_mode: DecodeMode = DecodeMode.keyframes
    keyframe_fallback_ratio: float = 2.0
    """In keyframes mode, fall back to interval mode when keyframes are this many intervals apart."""
    release_decoder: bool | None = None
    """Free decoder state between analysed frames. In keyframes mode: a fresh decoder per analysed
    keyframe, freed afterwards (saves its frame pool, ~2.6 MB per 1080p stream, for ~1 ms more CPU
    per analysed frame); in interval mode (set, or fallen back to) the decoder is kept. In every
    mode: a fresh swscale context per analysed frame (saves ~0.3 MB for ~2 ms). None: only when
    ``analysis_interval_s >= 5``."""

    @property
    def releases_decoder(self) -> bool:
        return self.analysis_interval_s >= 5.0 if self.release_decoder is None else self.release_decoder

    def __post_init__(self) -> None:
        url_scheme(self.url)  # raises a clear ValueError for unsupported schemes
        if self.analysis_interval_s <= 0:
            raise ValueError(f"camera {self.camera_id}: analysis_interval_s must be > 0")
        object.__setattr__(self, "decode_mode", DecodeMode(self.decode_mode))

    @property
    def scheme(self) -> str:
        return url_scheme(self.url)

    @property
    def live(self) -> bool:
        """Live sources treat end of stream as a disconnect; files end (or loop)."""
        return self.scheme in LIVE_SCHEMES

    @property
    def display_url(self) -> str:
        """The URL with credentials redacted: the only form that may be logged or published."""
        return redact_url(self.url)


def av_options(src: CameraSource) -> dict[str, str]:
    """FFmpeg options for opening ``src``: fast probing and socket timeouts (in microseconds)."""
    s = src.source
    options = {
        "analyzeduration": str(int(s.analyze_duration_s * 1e6)),
        "probesize": str(s.probe_size),
    }
    scheme = src.scheme
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = s.rtsp_transport
        options["timeout"] = str(int(s.read_timeout_s * 1e6))
    elif scheme in ("http", "https"):
        options["rw_timeout"] = str(int(s.read_timeout_s * 1e6))
    return options


def open_input(src: CameraSource, pyav_read_timeout: bool = False) -> av.container.InputContainer:
    """Open ``src`` with explicit open and read timeouts; raises the PyAV/OS error on failure.

    The open is bounded by PyAV's interrupt timeout; reads are bounded by FFmpeg's own socket
    timeouts (``timeout``/``rw_timeout`` above). PyAV's read timeout is off by default because its
    interrupt callback takes the GIL on every FFmpeg I/O call, which with many streams per process
    turns into GIL ping-pong (see docs/benchmarks.md#ingest).
    """
    target = str(file_path(src.url)) if src.scheme == "file" else src.url
    read_timeout = src.source.read_timeout_s if pyav_read_timeout or src.scheme == "file" else None
    started = time.monotonic()
    try:
        return av.open(
            target,
            mode="r",
            options=av_options(src),
            timeout=(src.source.open_timeout_s, read_timeout),
        )
    except av.error.FFmpegError as exc:
        # FFmpeg reports a server that never answers as invalid data or an I/O error; the socket
        # timeout (the read timeout) also bounds the open, so either limit can be the one that hit
        waited = time.monotonic() - started
        limit = min(src.source.open_timeout_s, src.source.read_timeout_s)
        if src.live and waited >= 0.9 * limit:
            raise TimeoutError(f"no answer within {waited:.1f} s ({type(exc).__name__}: {exc})") from exc
        raise
