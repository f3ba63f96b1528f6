"""Process-wide settings: each declared once, with its environment variable and a doc.

Secrets (passwords inside URLs) come only from the environment and are never printed:
use ``redacted()`` for display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.urls import redact_url

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANJIA_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (GUANJIA_KAFKA_BOOTSTRAP).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False,
                           description="Redis URL, redis:// or rediss:// (GUANJIA_REDIS_URL).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How Kafka clients connect (GUANJIA_KAFKA_SECURITY_PROTOCOL); see docs/security.md.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism for SASL_* protocols (GUANJIA_KAFKA_SASL_MECHANISM).")
    kafka_username: str | None = Field(None, description="Kafka SASL user (GUANJIA_KAFKA_USERNAME).")
    kafka_password: SecretStr | None = Field(None, description="Kafka SASL password (GUANJIA_KAFKA_PASSWORD); never printed.")
    kafka_ca_file: Path | None = Field(None, description="PEM CA bundle that signed the brokers' certificates; default: system CAs (GUANJIA_KAFKA_CA_FILE).")
    kafka_cert_file: Path | None = Field(None, description="PEM client certificate for mutual TLS (GUANJIA_KAFKA_CERT_FILE).")
    kafka_key_file: Path | None = Field(None, description="PEM private key of the client certificate (GUANJIA_KAFKA_KEY_FILE).")
    redis_username: str | None = Field(None, description="Redis ACL user when the URL names none (GUANJIA_REDIS_USERNAME).")
    redis_password: SecretStr | None = Field(None, description="Redis ACL password when the URL has none (GUANJIA_REDIS_PASSWORD); never printed.")
    redis_ca_file: Path | None = Field(None, description="PEM CA bundle for rediss:// servers; default: system CAs (GUANJIA_REDIS_CA_FILE).")
    topic_prefix: str = Field("guanjia", description="Prefix of every Kafka topic (GUANJIA_TOPIC_PREFIX).")
    topic_partitions: int = Field(8, ge=1, description="Partitions for topics the project creates (GUANJIA_TOPIC_PARTITIONS).")
    models_dir: Path | None = Field(None, description="Folder searched first for model files (GUANJIA_MODELS_DIR).")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Project cache: downloaded models, Kafka jars, clips (GUANJIA_CACHE_DIR).")
    shared_dir: Path = Field(REPO_ROOT.parent / "shared", description="Shared models and data (GUANJIA_SHARED_DIR).")
    out_dir: Path = Field(Path("out"), description="Where demo events and evidence are written (GUANJIA_OUT_DIR).")
    max_clock_skew_s: float = Field(
        300.0, gt=0, allow_inf_nan=False,
        description="The events worker dead-letters detections, sensor readings and camera-health reports stamped more "
                    "than this many seconds ahead of its own clock: one future time would make every later input of "
                    "that camera or sensor late, switching its rules off. Detections of cameras whose configured source "
                    "is a file are exempt (read faster than they play) (GUANJIA_MAX_CLOCK_SKEW_S).")

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("detections")`` → ``guanjia.detections.v1``."""
        return f"{self.topic_prefix}.{name}.v1"

    def redacted(self) -> dict[str, str]:
        """Every setting as text for display: URLs redacted, passwords as ``***``."""
        out = {}
        for key, value in self.model_dump().items():
            out[key] = "***" if isinstance(value, SecretStr) else redact_url(str(value))
        return out


class SettingsError(click.ClickException):
    """A GUANJIA_* variable with an unusable value (one line naming it; the value is never shown)."""


def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "GUANJIA_" + "_".join(str(p) for p in err["loc"]).upper()
        raise SettingsError(f"{name}: {err['msg']}") from None
