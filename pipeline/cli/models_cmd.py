"""``guanjia models``: list, verify and fetch the ONNX models of ``models/models.yaml``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import click

from pipeline.cli import LazyGroup

# further model subcommands owned by other modules: name -> "module:attr" (listed only when importable)
EXTRA_COMMANDS: dict[str, str] = {
    "train-crowd": "pipeline.cli.train_cmd:train_crowd",
    "train-fire": "pipeline.cli.train_fire_cmd:train_fire",
}


def _extra() -> dict[str, str]:
    return {n: t for n, t in EXTRA_COMMANDS.items() if importlib.util.find_spec(t.split(":")[0]) is not None}


def _registry(models_dir: Path | None, *, trust_verified: bool = True):
    from detectors.registry import ModelError, ModelRegistry

    try:
        return ModelRegistry.load(models_dir=models_dir, trust_verified=trust_verified)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


models_dir_option = click.option(
    "--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder searched first (default: GUANJIA_MODELS_DIR, then .cache/models, then ../shared/models).",
)


@click.group(cls=LazyGroup, lazy=_extra())
def models() -> None:
    """The detector models: where they are and whether they are intact.

    \b
    Example:
      guanjia models verify
      guanjia models fetch yolox_nano_coco_416
    """


@models.command("list")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_(models_dir: Path | None, as_json: bool) -> None:
    """Registered models with task, licence and the file found (not hashed: see verify).

    \b
    Example:
      guanjia models list --json
    """
    registry = _registry(models_dir)
    rows = []
    for name in registry.names:
        spec = registry.spec(name)
        found = next((str(p) for p in registry.candidates(name) if p.is_file()), None)
        rows.append({"name": name, "task": spec.task, "file": spec.file, "size": spec.size,
                     "sha256": spec.sha256, "licence": spec.licence, "found": found})
    if as_json:
        click.echo(json.dumps({"search_dirs": [str(d) for d in registry.search_dirs], "models": rows}))
        return
    for row in rows:
        click.echo(f"{row['name']:28} {row['task']:16} {row['licence']:11} {row['size']:>9} B  {row['found'] or 'NOT FOUND'}")
    click.echo("searched: " + ", ".join(str(d) for d in registry.search_dirs))


@models.command()
@models_dir_option
@click.argument("names", nargs=-1)
def verify(models_dir: Path | None, names: tuple[str, ...]) -> None:
    """Hash each model file and check its size and sha256; exit 1 if one is missing or corrupt.

    \b
    Example:
      guanjia models verify yolox_nano_coco_416
    """
    from detectors.registry import ModelError

    registry = _registry(models_dir, trust_verified=False)
    failed = 0
    for name in names or registry.names:
        try:
            path = registry.locate(name)
            click.echo(f"ok       {name:28} {path}")
        except ModelError as exc:
            failed += 1
            click.echo(f"FAILED   {exc}", err=True)
    if failed:
        sys.exit(1)


@models.command()
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to download into (default: the project cache, .cache/models).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per download.")
@models_dir_option
@click.argument("names", nargs=-1)
def fetch(dest: Path | None, timeout: float, models_dir: Path | None, names: tuple[str, ...]) -> None:
    """Download models that are not already present and intact; check sha256 before keeping a file.

    \b
    Example:
      guanjia models fetch            # every missing model into .cache/models
    """
    from detectors.registry import ModelError, cache_dir, sha256_file

    registry = _registry(models_dir)
    dest = dest or cache_dir() / "models"
    failed = 0
    for name in names or registry.names:
        try:
            spec = registry.spec(name)
        except ModelError as exc:
            failed += 1
            click.echo(f"FAILED   {exc}", err=True)
            continue
        try:
            click.echo(f"present  {name:28} {registry.locate(name)}")
            continue
        except ModelError:
            pass
        hint = f"place {spec.file} (sha256 {spec.sha256}, {spec.size} bytes) in {dest}"
        if not spec.url:
            failed += 1
            click.echo(f"MANUAL   {name}: no download URL; {hint} (source: {spec.source})", err=True)
            continue
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest, suffix=".part", delete=False) as tmp:
            part = Path(tmp.name)
            try:
                with urllib.request.urlopen(spec.url, timeout=timeout) as response:
                    shutil.copyfileobj(response, tmp)
            except (urllib.error.URLError, OSError) as exc:
                failed += 1
                part.unlink(missing_ok=True)
                reason = getattr(exc, "reason", exc)
                click.echo(f"OFFLINE  {name}: download failed ({reason}); {hint}", err=True)
                continue
        actual = sha256_file(part)
        if actual != spec.sha256:
            failed += 1
            part.unlink(missing_ok=True)
            click.echo(f"CORRUPT  {name}: downloaded sha256 {actual} != {spec.sha256}; {hint}", err=True)
            continue
        part.replace(dest / spec.file)
        click.echo(f"fetched  {name:28} {dest / spec.file}")
    if failed:
        sys.exit(1)
