"""``guanjia``: the single command-line entry point.

Subcommand groups live in their own modules and are imported only when used, so ``guanjia --help``
stays fast and a broken optional dependency only breaks its own command.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "config": "pipeline.cli.config_cmd:config",
    "services": "pipeline.cli.services_cmd:services",
    "bench": "pipeline.cli.bench_cmd:bench",
    "eval": "pipeline.cli.eval_cmd:eval_",
    "models": "pipeline.cli.models_cmd:models",
    "cameras": "pipeline.cli.cameras_cmd:cameras",
    "worker": "pipeline.cli.worker_cmd:worker",
    "events": "pipeline.cli.events_cmd:events",
    "sensors": "pipeline.cli.sensors_cmd:sensors",
    "demo": "pipeline.cli.demo_cmd:demo",
    "plan": "pipeline.cli.plan_cmd:plan",
    "page": "pipeline.web.cli:page",
}


def _available() -> dict[str, str]:
    return {
        name: target
        for name, target in COMMANDS.items()
        if importlib.util.find_spec(target.split(":")[0]) is not None
    }


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy:
            module_name, attr = self._lazy[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=_available(), context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guanjia")
def cli() -> None:
    """Guanjia: camera streams → crowd and fire detections → routed governance events.

    \b
    Example:
      guanjia config validate configs/*.yaml
    """


def main() -> None:
    cli(prog_name="guanjia")


if __name__ == "__main__":
    sys.exit(main())
