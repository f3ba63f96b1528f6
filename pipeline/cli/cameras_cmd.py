"""``guanjia cameras status``: live per-camera ingest health, read from Redis."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import click


@click.group()
def cameras() -> None:
    """Camera streams as the ingest workers see them.

    \b
    Examples:
      guanjia cameras status
      guanjia cameras status --down --json
    """


def _age(now: float, t: float | None) -> str:
    if not t:
        return "never"
    seconds = max(0.0, now - t)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago" if seconds < 7200 else f"{seconds / 3600:.0f}h ago"


@cameras.command()
@click.option("--down", is_flag=True, help="Only cameras that are not streaming or sent no frame for --stale seconds.")
@click.option("--stale", "stale_s", default=30.0, show_default=True, help="Seconds without a frame that count as down.")
@click.option("--prefix", default="guanjia", show_default=True, help="Redis key prefix the workers publish under.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(down: bool, stale_s: float, prefix: str, as_json: bool) -> None:
    """Per-camera state, input/analysed fps, drops, reconnects, last frame and last error.

    \b
    Example:
      guanjia cameras status --down --stale 60
    """
    import redis

    from ingest.health import CameraState, down_cameras, read_health
    from ingest.urls import redact_url
    from pipeline.security import redis_client, redis_error
    from pipeline.settings import get_settings

    settings = get_settings()
    url = settings.redis_url
    client = redis_client(settings, url)
    try:
        rows = read_health(client, prefix=prefix)
        stale = set(down_cameras(client, stale_after_s=stale_s, prefix=prefix))
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read camera health: {redis_error(url, exc, settings).message}") from None
    now = time.time()
    is_down = {r.camera_id: r.state is not CameraState.streaming or r.camera_id in stale for r in rows}
    if down:
        rows = [r for r in rows if is_down[r.camera_id]]
    rows.sort(key=lambda r: (not is_down[r.camera_id], r.camera_id))
    if as_json:
        click.echo(json.dumps({
            "redis": redact_url(url),
            "cameras": [{**asdict(r), "state": r.state.value, "down": is_down[r.camera_id]} for r in rows],
            "count": len(rows),
            "down": sum(is_down[r.camera_id] for r in rows),
        }))
        return
    from rich.console import Console
    from rich.table import Table

    colour = {"streaming": "green", "connecting": "yellow", "backoff": "red", "error": "red", "ended": "dim", "stopped": "dim"}
    table = Table(title=f"{len(rows)} camera(s){' down' if down else ''} — {redact_url(url)}")
    for col in ("camera", "state", "since", "in fps", "analysed fps", "dropped", "reconnects", "decode errs",
                "last frame", "last error"):
        table.add_column(col, no_wrap=col in ("camera", "state"))
    for r in rows:
        state = r.state.value
        table.add_row(r.camera_id, f"[{colour.get(state, 'white')}]{state}[/]", _age(now, r.state_since),
                      f"{r.input_fps:.1f}", f"{r.analysed_fps:.2f}", str(r.dropped), str(r.reconnects),
                      str(r.decode_errors), _age(now, r.last_frame_time),
                      f"{r.last_error_class}: {r.last_error}" if r.last_error_class else "")
    Console().print(table)
    if not rows:
        click.echo("no camera health in Redis (is an ingest worker running with a health publisher?)", err=True)
        sys.exit(0)


from pipeline.cli.cameras_publish import publish

cameras.add_command(publish)
