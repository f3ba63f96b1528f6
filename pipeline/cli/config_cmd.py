"""``guanjia config validate|show``: check camera-group files and print the expanded result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from ingest.urls import redact_url
from pipeline.config.errors import ConfigError
from pipeline.config.kinds import file_kind, validate_files
from pipeline.config.loader import load_config
from pipeline.config.models import CityConfig, ResolvedCamera

_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))


@click.group()
def config() -> None:
    """Camera-group configuration (YAML + inventory CSV).

    \b
    Examples:
      guanjia config validate configs/*.yaml
      guanjia config show configs/demo.yaml --camera demo-street --json
    """


@config.command()
@_FILES
def validate(files: tuple[Path, ...]) -> None:
    """Check FILES; print a one-line summary, or every error as file:line:col: key.path: message.

    \b
    Example:
      guanjia config validate configs/*.yaml
    """
    result = validate_files(list(files))
    for file, why in result.skipped.items():
        click.echo(f"{file}: not validated: {why}", err=True)
    if result.issues:
        for issue in result.issues:
            click.echo(str(issue))
        click.echo(f"{len(result.issues)} error(s)", err=True)
        sys.exit(1)
    parts = []
    if result.city is not None:
        s = result.city.summary()
        parts.append(
            f"{len(result.city.source_files)} file(s): {s['groups']} groups, {s['cameras']} cameras "
            f"({s['enabled']} enabled), {s['zones']} zones, {s['grid_cells']} grid cells, {s['towns']} towns"
        )
    parts += [f"{file}: valid {kind}" for file, kind in result.others.items()]
    click.echo("ok: " + "; ".join(parts))


@config.command()
@_FILES
@click.option("--camera", "camera_id", help="Show only this camera.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(files: tuple[Path, ...], camera_id: str | None, as_json: bool) -> None:
    """Print the fully expanded configuration (defaults → group → camera merged; URLs redacted).

    Files of other kinds (e.g. catalog.yaml) among FILES are skipped.

    \b
    Example:
      guanjia config show configs/demo.yaml --camera demo-street
    """
    try:
        city = load_config([f for f in files if not f.is_file() or file_kind(f) is None])
    except ConfigError as exc:
        click.echo(str(exc))
        sys.exit(1)
    if camera_id is not None:
        try:
            payload: object = expanded_camera(city.camera(camera_id))
        except KeyError:
            raise click.ClickException(f"no camera {camera_id!r} in {', '.join(map(str, files))}") from None
    else:
        payload = expanded_city(city)
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        click.echo(yaml.safe_dump(payload, allow_unicode=True, sort_keys=False), nl=False)


def expanded_camera(cam: ResolvedCamera) -> dict:
    """A camera as plain data, with its URL redacted."""
    data = cam.model_dump(mode="json")
    data["url"] = redact_url(cam.url)
    return data


def expanded_city(city: CityConfig) -> dict:
    """Groups (without their cameras) and every resolved camera, URLs redacted."""
    return {
        "source_files": city.source_files,
        "groups": [g.model_dump(mode="json", exclude={"cameras"}) for g in city.groups],
        "cameras": [expanded_camera(c) for c in city.cameras],
    }
