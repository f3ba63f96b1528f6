"""pipeline.security: settings → Kafka/Faust/Redis options, and their one-line errors (no servers needed)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from aiokafka.errors import KafkaConnectionError
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.security import (
    SecurityConfigError,
    faust_security_settings,
    kafka_client_options,
    kafka_error,
    kafka_hosts,
    redis_client,
    redis_error,
)
from pipeline.settings import Settings

SECRET = "s3cr3t-Pw"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA and a client certificate, made with openssl."""
    folder = tmp_path_factory.mktemp("pki")
    run = lambda *args: subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key", "-out", "client.csr")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-out", "client.pem")
    return folder


def test_plaintext_is_the_default():
    options = kafka_client_options(Settings(kafka_bootstrap="k:9092"))
    assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert faust_security_settings(Settings()) == {}


def test_sasl_ssl_with_ca_and_client_certificate(pki: Path):
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_username="u", kafka_password=SECRET,
                        kafka_ca_file=pki / "ca.pem", kafka_cert_file=pki / "client.pem", kafka_key_file=pki / "client.key")
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("u", SECRET)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ca"),),)]
    credentials = faust_security_settings(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials) and credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512" and SECRET not in repr(credentials)


def test_ssl_only_gives_faust_ssl_credentials(pki: Path):
    settings = Settings(kafka_security_protocol="SSL", kafka_ca_file=pki / "ca.pem")
    assert "sasl_mechanism" not in kafka_client_options(settings)
    assert isinstance(faust_security_settings(settings)["broker_credentials"], faust.SSLCredentials)


def test_sasl_plaintext_plain_mechanism():
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                        kafka_username="u", kafka_password=SECRET)
    options = kafka_client_options(settings)
    assert options["sasl_mechanism"] == "PLAIN" and "ssl_context" not in options


@pytest.mark.parametrize(("changes", "needle"), [
    ({"kafka_security_protocol": "SASL_SSL"}, "needs GUANJIA_KAFKA_USERNAME and GUANJIA_KAFKA_PASSWORD"),
    ({"kafka_security_protocol": "SSL", "kafka_cert_file": "/x.pem"}, "go together"),
    ({"kafka_security_protocol": "SSL", "kafka_ca_file": "/nonexistent/ca.pem"}, "cannot load the Kafka TLS files"),
    ({"kafka_ca_file": "/ca.pem"}, "use SSL or SASL_SSL"),
])
def test_inconsistent_settings_are_one_line(changes, needle):
    with pytest.raises(SecurityConfigError, match=needle) as info:
        kafka_client_options(Settings(**changes))
    assert "\n" not in str(info.value)


def test_kafka_errors_name_the_cause_never_the_password():
    settings = Settings(kafka_bootstrap=f"u:{SECRET}@k1:9094", kafka_security_protocol="SASL_SSL",
                        kafka_username="u", kafka_password=SECRET)
    refused = kafka_error(settings, KafkaConnectionError("Unable to bootstrap"),
                          ['Unable connect to "k1:9094": [Error 58] SaslAuthenticationFailed: Authentication failed'])
    assert str(refused).startswith("Kafka at k1:9094 (SASL_SSL) refused the credentials of user 'u'")
    tls = kafka_error(settings, KafkaConnectionError("x"), ["[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"])
    assert "TLS handshake failed" in str(tls)
    down = kafka_error(settings, KafkaConnectionError("x"), ["Connect call failed ('127.0.0.1', 9094)"])
    assert str(down).startswith("cannot reach Kafka at k1:9094")
    assert all(SECRET not in str(e) for e in (refused, tls, down))


def test_redis_client_uses_env_credentials_and_ca(pki: Path):
    settings = Settings(redis_url="rediss://r:6380/1", redis_username="acl", redis_password=SECRET,
                        redis_ca_file=pki / "ca.pem")
    kwargs = redis_client(settings).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("acl", SECRET, str(pki / "ca.pem"))
    assert kwargs["ssl_cert_reqs"] == "required" and kwargs["db"] == 1
    in_url = redis_client(settings, "rediss://me:other@r:6380/0").connection_pool.connection_kwargs
    assert (in_url["username"], in_url["password"]) == ("me", "other")


def test_redis_ca_without_tls_is_refused(pki: Path):
    with pytest.raises(SecurityConfigError, match="not rediss://"):
        redis_client(Settings(redis_url="redis://r:6379/0", redis_ca_file=pki / "ca.pem"))


def test_redis_errors_redact_the_address():
    import redis

    url = f"rediss://acl:{SECRET}@r:6380/0"
    refused = redis_error(url, redis.AuthenticationError("WRONGPASS invalid username-password pair"))
    assert str(refused).startswith("Redis at rediss://***@r:6380/0 refused the credentials")
    down = redis_error(url, redis.ConnectionError(f"Error 111 connecting to {url}"))
    assert SECRET not in str(down) and SECRET not in str(refused)


def test_bad_env_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("GUANJIA_KAFKA_SECURITY_PROTOCOL", "TLS")
    result = CliRunner().invoke(cli, ["events", "tail"])
    assert result.exit_code == 1
    assert "GUANJIA_KAFKA_SECURITY_PROTOCOL: Input should be" in result.output


def test_redacted_settings_hide_passwords():
    shown = Settings(kafka_password=SECRET, redis_password=SECRET, redis_url=f"redis://:{SECRET}@r:6379/0").redacted()
    assert shown["kafka_password"] == shown["redis_password"] == "***" and SECRET not in str(shown)


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:SE CRET@h/s", "rtsp://***@h/s"),             # a space in the password
    ("rtsp://h/s?pass=SECRET&ch=1", "rtsp://h/s?pass=***&ch=1"),
    ("rtsp://h/s?pw=SECRET", "rtsp://h/s?pw=***"),
    ("https://h/live.m3u8?api_key=SECRET", "https://h/live.m3u8?api_key=***"),
])
def test_url_redaction_covers_spaces_and_more_query_names(url, shown):
    from ingest.urls import redact_url

    assert redact_url(url) == shown


def test_a_url_with_surrounding_whitespace_is_refused_without_its_password():
    from ingest.source import CameraSource

    with pytest.raises(ValueError, match="leading or trailing whitespace") as err:
        CameraSource("c", " rtsp://admin:SECRET@h/s")
    assert "SECRET" not in str(err.value)


def test_a_short_redis_password_does_not_garble_the_error():
    error = redis_error("redis://127.0.0.1:6379/0", ConnectionError("Error connecting to 127.0.0.1:6379"),
                        Settings(redis_password="o"))
    assert "Error connecting to 127.0.0.1:6379" in error.message


def test_settings_and_cameras_keep_credentials_out_of_their_repr():
    from pipeline.config.models import ResolvedCamera

    assert SECRET not in repr(Settings(redis_url=f"redis://:{SECRET}@r:6379/0"))
    assert SECRET not in repr(ResolvedCamera(id="c", url=f"rtsp://a:{SECRET}@h/s", group_id="g", grid="G"))


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis:/user:{SECRET}@127.0.0.1/0", "<unparseable redis URL, {n} chars>: "),
    (f"redis//user:{SECRET}@127.0.0.1/0", "<unparseable redis URL, {n} chars>: "),
    (SECRET, "<unparseable, {n} chars>: "),
    (f"redis://user:ab/{SECRET}@127.0.0.1/0", "<unparseable redis URL, {n} chars>: Port could not"),
])
def test_an_unparseable_redis_url_is_never_echoed(url, shown):
    with pytest.raises(SecurityConfigError) as info:
        redis_client(Settings(redis_url=url))
    assert str(info.value).startswith("GUANJIA_REDIS_URL " + shown.format(n=len(url))) and "\n" not in str(info.value)
    assert SECRET not in str(info.value) and "ab/" not in str(info.value)


def test_an_unparseable_redis_url_is_never_echoed_by_the_cli(monkeypatch):
    monkeypatch.setenv("GUANJIA_REDIS_URL", SECRET)
    result = CliRunner().invoke(cli, ["cameras", "status"])
    assert result.exit_code == 1 and SECRET not in result.output
    assert f"GUANJIA_REDIS_URL <unparseable, {len(SECRET)} chars>" in result.output


def test_redis_ca_file_error_does_not_echo_an_unparseable_url():
    with pytest.raises(SecurityConfigError, match="GUANJIA_REDIS_CA_FILE is set but <unparseable, 9 chars>") as info:
        redis_client(Settings(redis_url=SECRET, redis_ca_file="/ca.pem"))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("bootstrap", [f"127.0.0.1:{SECRET}", f"u:{SECRET}@k1:9094", f"k1:9094,{SECRET} x",
                                       f"[{SECRET}"])
def test_a_bootstrap_that_is_not_host_port_is_one_line_without_its_text(bootstrap):
    with pytest.raises(SecurityConfigError, match=r"GUANJIA_KAFKA_BOOTSTRAP: entry \d of \d \(<unparseable, \d+ chars>\) "
                                                  "is not host:port") as info:
        kafka_client_options(Settings(kafka_bootstrap=bootstrap))
    assert SECRET not in str(info.value) and "\n" not in str(info.value)
    assert SECRET not in kafka_hosts(bootstrap)


@pytest.mark.parametrize("bootstrap", ["k:9092", "k1:9092, k2:9093", "10.0.0.1", "[::1]:9092", "::1", "k:9092,"])
def test_host_port_bootstraps_are_accepted(bootstrap):
    assert kafka_client_options(Settings(kafka_bootstrap=bootstrap))["bootstrap_servers"] == bootstrap
