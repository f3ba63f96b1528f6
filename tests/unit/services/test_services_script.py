"""scripts/services.sh argument handling and failure messages, and the `guanjia services` wrapper.

None of these start a service: they point the script at an empty cache folder and unused ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "services.sh"
PROBE = REPO_ROOT / "scripts" / "kafka_probe.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose cache folder is empty and whose ports nothing listens on."""
    return {
        **os.environ,
        "GUANJIA_CACHE_DIR": str(tmp_path / "cache"),
        "GUANJIA_KAFKA_PORT": str(_free_port()),
        "GUANJIA_REDIS_PORT": str(_free_port()),
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args", [[], ["start"], ["up", "postgres"], ["status", "all", "extra"], ["--bogus"]]
)
def test_bad_arguments_exit_2_with_usage(args: list[str], isolated_env: dict[str, str]) -> None:
    result = _run(args, isolated_env)
    assert result.returncode == 2
    assert "usage: services.sh up|down|status [kafka|redis|all]" in result.stderr


def test_status_reports_each_service_down_with_its_address(isolated_env: dict[str, str]) -> None:
    result = _run(["status"], isolated_env)
    assert result.returncode == 3
    assert f"redis   down  127.0.0.1:{isolated_env['GUANJIA_REDIS_PORT']}" in result.stdout
    assert f"kafka   down  127.0.0.1:{isolated_env['GUANJIA_KAFKA_PORT']}" in result.stdout


def test_down_when_nothing_runs_is_a_no_op(isolated_env: dict[str, str]) -> None:
    result = _run(["down"], isolated_env)
    assert result.returncode == 0
    assert "kafka is not running" in result.stdout and "redis is not running" in result.stdout


def test_missing_redis_server_names_the_apt_package(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir", "flock", "cat", "tac"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = _run(["up", "redis"], {**isolated_env, "PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "redis-server is missing: apt-get install -y redis-server" in result.stderr


def test_probe_fails_cleanly_when_no_broker_listens() -> None:
    result = subprocess.run(
        [sys.executable, str(PROBE), f"127.0.0.1:{_free_port()}", "--timeout", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "kafka probe 127.0.0.1:" in result.stderr


def test_cli_passes_the_script_exit_code(isolated_env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["services", "status", "redis"], env=isolated_env).exit_code == 3
    assert runner.invoke(cli, ["services", "down", "kafka"], env=isolated_env).exit_code == 0
    rejected = runner.invoke(cli, ["services", "up", "postgres"], env=isolated_env)
    assert rejected.exit_code == 2 and "postgres" in rejected.output


def test_cluster_ids_never_start_with_a_dash() -> None:
    # base64url of random bytes starts with '-' once in 64 ids; the storage tool read that as an option
    function = "".join(SCRIPT.read_text().partition("random_cluster_id() {")[1:])
    function = function[: function.index("\n}\n") + 3]
    out = subprocess.run(["bash", "-c", function + 'for i in $(seq 1 640); do random_cluster_id; echo; done'],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 640 and len(set(out)) == 640
    assert all(len(i) == 22 and not i.startswith("-") for i in out)
    assert set("".join(out)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
