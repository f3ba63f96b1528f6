"""Process-wide settings: each declared once, with its environment variable and a doc.

Secrets (passwords inside URLs) come only from the environment and are never printed:
use ``redacted()`` for display.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.urls import redact_url

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANJIA_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (GUANJIA_KAFKA_BOOTSTRAP).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL, redis:// or rediss:// (GUANJIA_REDIS_URL).")
    topic_prefix: str = Field("guanjia", description="Prefix of every Kafka topic (GUANJIA_TOPIC_PREFIX).")
    topic_partitions: int = Field(8, ge=1, description="Partitions for topics the project creates (GUANJIA_TOPIC_PARTITIONS).")
    models_dir: Path | None = Field(None, description="Folder searched first for model files (GUANJIA_MODELS_DIR).")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Project cache: downloaded models, Kafka jars, clips (GUANJIA_CACHE_DIR).")
    shared_dir: Path = Field(REPO_ROOT.parent / "shared", description="Shared models and data (GUANJIA_SHARED_DIR).")
    out_dir: Path = Field(Path("out"), description="Where demo events and evidence are written (GUANJIA_OUT_DIR).")

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("detections")`` → ``guanjia.detections.v1``."""
        return f"{self.topic_prefix}.{name}.v1"

    def redacted(self) -> dict[str, str]:
        return {k: redact_url(str(v)) for k, v in self.model_dump().items()}


def get_settings() -> Settings:
    return Settings()
