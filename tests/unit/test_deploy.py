"""deploy/: the files parse, and every `guanjia …` they run names a command and options that exist."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from pipeline.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def resolve(argv: list[str]) -> click.Command:
    """The click command that ``guanjia argv…`` runs; fails on an unknown subcommand or option."""
    assert argv and argv[0] in COMMANDS, f"`guanjia {argv[0] if argv else ''}` is not in pipeline.cli.COMMANDS"
    cmd: click.Command = cli
    ctx = click.Context(cli)
    rest = list(argv)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"`{name}` is not a subcommand of `{cmd.name}`"
        cmd, ctx = sub, click.Context(sub, parent=ctx)
    assert not isinstance(cmd, click.Group), f"`guanjia {' '.join(argv)}` stops at a group"
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for token in rest:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"`guanjia {' '.join(argv)}`: no option {token} on `{cmd.name}`"
    return cmd


def guanjia_calls(text: str) -> list[list[str]]:
    """Every ``guanjia …`` command line in a unit line, shell string or script."""
    calls = []
    for m in re.finditer(r"(?:^|[\s/\"'])guanjia\"?\s+([a-z][^\n;|&)]*)", text):
        line = m.group(1).replace('"$', "$").strip()
        try:
            tokens = shlex.split(line)
        except ValueError:
            tokens = line.split()
        calls.append([t for t in tokens if t not in ("\\",)])
    return calls


def read_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    with path.open(encoding="utf-8") as f:
        parser.read_file(f, source=str(path))
    return parser


def test_there_is_something_to_deploy() -> None:
    assert {p.name for p in UNITS} >= {"guanjia-ingest@.service", "guanjia-events@.service"}
    assert MANIFESTS and (DEPLOY / "kafka" / "create-topics.sh").is_file()


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_parse_and_run_existing_commands(unit: Path) -> None:
    parsed = read_unit(unit)
    assert {"Unit", "Service", "Install"} <= set(parsed.sections())
    exec_start = parsed.get("Service", "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/guanjia"), exec_start
    resolve(argv[1:])
    assert parsed.get("Service", "Restart") == "always"
    assert parsed.get("Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_parse_and_run_existing_commands(manifest: Path) -> None:
    docs = [d for d in yaml.safe_load_all(manifest.read_text(encoding="utf-8")) if d]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["name"] for d in workloads} >= {"guanjia-ingest", "guanjia-events"}
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    for w in workloads:
        spec = w["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        for c in spec["template"]["spec"]["containers"]:
            argv = [*c.get("command", []), *c.get("args", [])]
            if argv[:2] == ["sh", "-c"]:
                calls = guanjia_calls(" ".join(argv[2:]))
                assert calls, argv
                for call in calls:
                    resolve(call)
            else:
                assert argv[0] == "guanjia", argv
                resolve(argv[1:])


def test_the_kafka_script_takes_partitions_from_the_planner() -> None:
    script = DEPLOY / "kafka" / "create-topics.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    guanjia = Path(sys.executable).with_name("guanjia")
    env = {**os.environ, "DRY_RUN": "1", "CAMERAS": "450000", "GUANJIA": str(guanjia), "REPLICATION": "3"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    plan = json.loads(subprocess.run([str(guanjia), "plan", "--cameras", "450000", "--json"], capture_output=True,
                                     text=True, check=True).stdout)["plan"]
    cameras_line = next(line for line in out.stdout.splitlines() if ".cameras.v1" in line)
    assert f"--partitions {plan['kafka_partitions_cameras']} " in cameras_line
    assert "cleanup.policy=compact" in cameras_line and "--replication-factor 3" in cameras_line
    detections = next(line for line in out.stdout.splitlines() if ".detections.v1" in line)
    assert f"--partitions {plan['kafka_partitions_detections']} " in detections


def test_resolve_rejects_what_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="not a subcommand"):
        resolve(["worker", "nosuch"])
    with pytest.raises(AssertionError, match="no option --nosuch"):
        resolve(["worker", "ingest", "--nosuch", "1"])
    with pytest.raises(AssertionError, match="not in pipeline.cli.COMMANDS"):
        resolve(["nosuch"])


def test_the_kubernetes_replicas_are_the_documented_plans_workers():
    from pipeline.plan import PlanInputs, load_results, make_plan

    plan = make_plan(PlanInputs(cameras=450_000, interval_s=2, resolution="1080p", gop=50), load_results())["plan"]
    docs = {d["metadata"]["name"]: d for m in MANIFESTS for d in yaml.safe_load_all(m.read_text()) if d and d.get("kind") == "Deployment"}
    assert docs["guanjia-ingest"]["spec"]["replicas"] == plan["ingest_workers"]
    assert docs["guanjia-events"]["spec"]["replicas"] == plan["event_workers"]
