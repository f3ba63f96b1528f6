"""The secured Kafka and Redis of ``scripts/secure_services.sh``, started once per test session.

Import the fixture into a test module (``from tests.integration.secure_support import secure  # noqa: F401``):
pytest keys session fixtures by their definition, so every module shares one start-up and one stop.
The password of the SCRAM user, the PLAIN user and the Redis ACL user is :data:`MARKER`, a string unique to
this session, so the secret-leak test can grep everything the pipeline writes for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT, Settings
from tests.plugins.services import unavailable

SCRIPT = REPO_ROOT / "scripts" / "secure_services.sh"
MARKER = f"Mk{uuid.uuid4().hex}Zq"


@dataclass(frozen=True)
class Secure:
    """What a client needs: the GUANJIA_* variables (``env``) and the same as :class:`Settings`."""

    env: dict[str, str]
    tls_dir: Path
    password: str

    def settings(self, **changes) -> Settings:
        values = {key.removeprefix("GUANJIA_").lower(): value for key, value in self.env.items()}
        return Settings(**{**values, **changes})

    def process_env(self, **changes: str) -> dict[str, str]:
        """``os.environ`` with the secured settings (for ``guanjia`` subprocesses)."""
        return {**os.environ, **self.env, **changes}


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
    return env


def _script(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="session")
def secure() -> Iterator[Secure]:
    """Secured Kafka (SASL_SSL :19094, mutual-TLS SSL :19095) and Redis (rediss:// :16380), fresh certificates."""
    for tool in ("openssl", "redis-server", "java"):
        if shutil.which(tool) is None and not (tool == "java" and Path("/usr/lib/jvm").is_dir()):
            unavailable("secured services", f"{tool} is not installed")
    env = {**os.environ, "GUANJIA_SECURE_PASSWORD": MARKER}
    _script("down", env)  # a previous run's services of this checkout: their password is not this session's
    started = _script("up", env)
    if started.returncode != 0:
        _script("down", env)
        unavailable("secured services", (started.stderr or started.stdout).replace(MARKER, "***")[-600:])
    cache = Path(os.environ.get("GUANJIA_CACHE_DIR", REPO_ROOT / ".cache"))
    folder = Path(os.environ.get("GUANJIA_SECURE_DIR", cache / "services-secure"))
    try:
        yield Secure(env=_read_env(folder / "credentials.env"), tls_dir=folder / "tls", password=MARKER)
    finally:
        _script("down", env)
