"""``guanjia services``: start, stop and inspect the local Kafka and Redis (runs scripts/services.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from pipeline.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "services.sh"
TARGETS = click.Choice(["all", "kafka", "redis"])


def run_script(action: str, target: str, script: Path = SCRIPT) -> int:
    """Run ``services.sh ACTION TARGET`` with this terminal's output; return its exit code."""
    if not script.is_file():
        raise click.ClickException(
            f"{script} is missing: `guanjia services` needs a source checkout"
        )
    return subprocess.call(["bash", str(script), action, target])


@click.group()
def services() -> None:
    """Local Kafka (KRaft, single node) and Redis on 127.0.0.1 for the pipeline and the tests.

    \b
    Example:
      guanjia services up          # resolves the Kafka jars with mvn on first use
      guanjia services status
      guanjia services down kafka
    """


@services.command()
@click.argument("target", type=TARGETS, default="all")
def up(target: str) -> None:
    """Start TARGET (idempotent) and wait until it answers.

    \b
    Example:
      guanjia services up kafka
    """
    raise SystemExit(run_script("up", target))


@services.command()
@click.argument("target", type=TARGETS, default="all")
def down(target: str) -> None:
    """Stop TARGET if this checkout started it.

    \b
    Example:
      guanjia services down
    """
    raise SystemExit(run_script("down", target))


@services.command()
@click.argument("target", type=TARGETS, default="all")
def status(target: str) -> None:
    """Show each service up/down with its address; exit 3 if any is down.

    \b
    Example:
      guanjia services status
    """
    raise SystemExit(run_script("status", target))
