"""Helpers for the events integration tests: a real `guanjia worker events` subprocess and Kafka I/O."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.settings import Settings
from pipeline.topics import ensure_topics

GUANJIA = str(Path(sys.executable).with_name("guanjia"))


def unique_prefix(tag: str) -> str:
    return f"t5{tag}-{uuid.uuid4().hex[:8]}"


def write_config(path: Path, cameras: list[dict], rules: dict) -> Path:
    doc = {"defaults": {"rules": rules}, "groups": [{"id": "test", "town": "T1", "village": "V1", "cameras": cameras}]}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


class Worker:
    """One `guanjia worker events` process with its own topic prefix.

    Its /metrics is on a free port (`--metrics-port 0`), so workers running side by side never clash
    on the default 9109; :meth:`metrics_url` reads the address from the start-up line.
    """

    def __init__(self, settings: Settings, config: Path, catalog: Path | None, log: Path):
        self.settings, self.config, self.catalog, self.log = settings, config, catalog, log
        self.proc: subprocess.Popen | None = None
        self._log_start = 0

    def start(self) -> None:
        env = {**os.environ, "GUANJIA_TOPIC_PREFIX": self.settings.topic_prefix,
               "GUANJIA_TOPIC_PARTITIONS": str(self.settings.topic_partitions),
               "GUANJIA_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap}
        cmd = [GUANJIA, "worker", "events", "--config", str(self.config), "--tick", "0.5", "--loglevel", "warning",
               "--metrics-port", "0"]
        if self.catalog:
            cmd += ["--catalog", str(self.catalog)]
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def metrics_url(self, timeout_s: float = 60.0) -> str:
        """The /metrics address this run of the worker printed at start-up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.log.open("rb") as f:
                f.seek(self._log_start)
                found = re.search(rb"metrics (http://\S+/metrics)", f.read())
            if found:
                return found.group(1).decode()
            if not self.alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no metrics address in the worker log: {self.log.read_text(errors='replace')[-2000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def create_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))


def produce(settings: Settings, short: str, items: list[tuple[str | bytes, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            for key, value in items:
                await producer.send(settings.topic(short), value, key=key if isinstance(key, bytes) else key.encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def read_until(settings: Settings, short: str, done, timeout_s: float = 60.0) -> list[dict]:
    """Every JSON message of a topic from the beginning, read until ``done(messages)`` or the timeout."""
    return read_topic(settings, settings.topic(short), done, timeout_s)


def read_topic(settings: Settings, topic: str, done, timeout_s: float = 60.0, *, part: str = "value",
               wait_for_topic: bool = False) -> list:
    """The JSON ``part`` (value or key) of every message of ``topic`` from the beginning, read until
    ``done(parts)`` or the timeout. ``wait_for_topic``: read only once something made the topic (a
    consumer asking for a missing topic would have the broker create it with one partition)."""

    async def run() -> list:
        deadline = time.monotonic() + timeout_s
        if wait_for_topic:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
            await admin.start()
            try:
                while topic not in await admin.list_topics():
                    if time.monotonic() > deadline:
                        return []
                    await asyncio.sleep(0.5)
            finally:
                await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list = []
            while time.monotonic() < deadline:
                for msgs in (await consumer.getmany(timeout_ms=300)).values():
                    out += [json.loads(getattr(m, part)) for m in msgs]
                if done(out):
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())
