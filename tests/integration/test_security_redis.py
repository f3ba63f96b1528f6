"""Redis with TLS (rediss://) and an ACL user (the secured Redis of scripts/secure_services.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.health import CameraHealth, CameraState, HealthPublisher
from pipeline.security import TransportError, connect_redis, redis_client
from tests.integration.secure_support import Secure

pytestmark = pytest.mark.integration

GUANJIA = str(Path(sys.executable).with_name("guanjia"))


def test_acl_user_over_tls_reads_and_writes(secure: Secure):
    client = connect_redis(secure.settings(), decode_responses=True)
    try:
        client.set("guanjia-test:sec", "ok", ex=30)
        assert client.get("guanjia-test:sec") == "ok"
        assert client.acl_whoami() == "guanjia"
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        client.delete("guanjia-test:sec")
        client.close()


def test_credentials_in_the_url_win(secure: Secure):
    settings = secure.settings(redis_password=SecretStr("wrong"))
    url = f"rediss://guanjia:{secure.password}@127.0.0.1:16380/0"
    with connect_redis(settings, url) as client:
        assert client.ping() is True


def test_wrong_password_names_the_redacted_address(secure: Secure):
    url = f"rediss://guanjia:not-{secure.password}@127.0.0.1:16380/0"
    with pytest.raises(TransportError) as info:
        connect_redis(secure.settings(), url)
    message = str(info.value)
    assert message.startswith("Redis at rediss://***@127.0.0.1:16380/0 refused the credentials"), message
    assert secure.password not in message and "\n" not in message


def test_default_user_is_off(secure: Secure):
    settings = secure.settings(redis_username=None, redis_password=None)
    with pytest.raises(TransportError, match="refused the credentials"):
        connect_redis(settings)


def test_plain_connection_to_the_tls_port_fails_clearly(secure: Secure):
    with pytest.raises(TransportError) as info:
        connect_redis(secure.settings(redis_ca_file=None), "redis://127.0.0.1:16380/0", socket_timeout=2)
    assert "Redis at redis://127.0.0.1:16380/0" in str(info.value)


def test_untrusted_server_certificate_is_refused(secure: Secure):
    with pytest.raises(TransportError, match="TLS handshake failed.*GUANJIA_REDIS_CA_FILE"):
        connect_redis(secure.settings(redis_ca_file=None))


def test_cameras_status_over_tls(secure: Secure):
    """Health records published to the secured Redis are read back by `guanjia cameras status --json`."""
    settings = secure.settings()
    client = redis_client(settings)
    prefix = f"sectest{int(time.time() * 1000)}"
    publisher = HealthPublisher(client, ttl_s=30, prefix=prefix)
    try:
        assert publisher.publish([_health("cam-tls")])
        result = subprocess.run([GUANJIA, "cameras", "status", "--json", "--prefix", prefix],
                                env=secure.process_env(), capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["redis"] == "rediss://127.0.0.1:16380/0" and [c["camera_id"] for c in doc["cameras"]] == ["cam-tls"]
        wrong = subprocess.run([GUANJIA, "cameras", "status"], env=secure.process_env(GUANJIA_REDIS_PASSWORD="x"),
                               capture_output=True, text=True, timeout=60, check=False)
        assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr and "Traceback" not in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def _health(camera_id: str) -> CameraHealth:
    now = time.time()
    return CameraHealth(camera_id=camera_id, state=CameraState.streaming, url="rtsp://***@127.0.0.1:1/x",
                        decode_mode="all", last_frame_time=now, state_since=now, updated_at=now)
