"""Every registered command answers ``--help`` with an example, and bad arguments give one line and exit 2."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import COMMANDS, _available, cli


def walk(group: click.Group, ctx: click.Context, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    out = [path]
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if isinstance(sub, click.Group):
            out += walk(sub, click.Context(sub, parent=ctx, info_name=name), path + (name,))
        elif sub is not None:
            out.append(path + (name,))
    return out


def all_commands() -> list[tuple[str, ...]]:
    ctx = click.Context(cli, info_name="guanjia")
    return walk(cli, ctx, ())


def test_every_registered_module_is_importable():
    for name, target in _available().items():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), click.Command), name


def test_the_walk_reaches_nested_commands():
    paths = {" ".join(p) for p in all_commands()}
    assert {"demo", "worker ingest", "worker events", "bench all", "events tail"} <= paths
    assert set(_available()) <= {p.split(" ")[0] for p in paths if p}


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "guanjia")
def test_help_has_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="guanjia")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`guanjia {' '.join(path)} --help` has no example:\n{result.output}"


@pytest.mark.parametrize("path", [p for p in all_commands() if p], ids=lambda p: " ".join(p))
def test_an_unknown_option_is_one_clear_line_and_exit_2(path):
    result = CliRunner().invoke(cli, [*path, "--no-such-option"], prog_name="guanjia")
    assert result.exit_code == 2
    assert "No such option: --no-such-option" in result.output
    assert "Traceback" not in result.output


def test_commands_table_only_names_modules_that_exist_or_are_planned():
    missing = set(COMMANDS) - set(_available())
    assert missing <= {"plan"}, missing
