"""Support for the fault tests. Private, restartable services: a single-node KRaft Kafka broker and a redis-server,
each on free ports with its own data, started and stopped by the test itself.

The broker runs from the jars ``scripts/services.sh`` resolved into ``.cache/kafka-<version>/libs``. Unlike
``services.sh``, a restart keeps the data dir (it is formatted once), so what the broker acknowledged before
the stop is still there after it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ingest.rig import free_port
from pipeline.settings import REPO_ROOT
from tests.plugins.services import unavailable

HOST = "127.0.0.1"
PROBE = REPO_ROOT / "scripts" / "kafka_probe.py"


def kafka_libs() -> Path:
    cache = Path(os.environ.get("GUANJIA_CACHE_DIR", REPO_ROOT / ".cache"))
    return cache / f"kafka-{os.environ.get('GUANJIA_KAFKA_VERSION', '3.9.1')}" / "libs"


def find_java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    candidates = [Path(home) / "bin" / "java"] if home else []
    candidates += sorted(Path("/usr/lib/jvm").glob("java-17-openjdk*/bin/java"))
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    found = next((str(c) for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    return found or shutil.which("java")


class PrivateBroker:
    """One combined broker+controller on free ports; :meth:`stop` then :meth:`start` keeps its log data."""

    def __init__(self, root: Path):
        self.root = root
        self.port, self.controller_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.java = find_java()
        if self.java is None or not (kafka_libs() / ".complete").exists():
            unavailable("private Kafka broker", "java or the Kafka jars are missing (bash scripts/services.sh up kafka)")
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _java(self, *args: str) -> list[str]:
        return [self.java, "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.root / 'log4j.properties'}", f"-Dkafka.logs.dir={self.root}",
                "-cp", f"{kafka_libs()}/*", *args]

    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "server.properties").write_text(f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{self.controller_port}
listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{self.port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={self.root / 'data'}
num.partitions=1
num.network.threads=2
num.io.threads=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
""")
        (self.root / "log4j.properties").write_text(f"""log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={self.root / 'server.log'}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
""")

    def start(self, wait_s: float = 120.0) -> float:
        """Start (formatting the storage the first time only); returns the seconds until it answered."""
        began = time.monotonic()
        if not self._formatted:
            self._write_config()
            cluster_id = "-"
            while cluster_id.startswith("-"):  # StorageTool would read a leading '-' as an option (1 id in 64)
                cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                                      "-c", str(self.root / "server.properties")),
                           check=True, capture_output=True, timeout=120)
            self._formatted = True
        with (self.root / "kafka.out").open("ab") as out:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.root / "server.properties")),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.monotonic() - began < wait_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"private broker exited with {self.proc.returncode}: {self.log_tail()}")
            probe = subprocess.run([sys.executable, str(PROBE), self.bootstrap], check=False, capture_output=True, timeout=30)
            if probe.returncode == 0:
                return time.monotonic() - began
            time.sleep(0.5)
        raise RuntimeError(f"private broker did not answer on {self.bootstrap} in {wait_s:.0f}s: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 1500) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""


class PrivateRedis:
    """A redis-server on a free port without persistence: a restart comes back empty."""

    def __init__(self):
        if shutil.which("redis-server") is None:
            unavailable("private Redis", "redis-server is not installed")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, wait_s: float = 20.0) -> None:
        import redis

        self.proc = subprocess.Popen(["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.2)
        raise RuntimeError(f"private redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def read_records(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` from the beginning to its current end (partition by partition, each in order)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from pipeline.assignment import topic_partitions

    async def run() -> list[bytes]:
        tps = [TopicPartition(topic, p) for p in range(await topic_partitions(bootstrap, topic))]
        if not tps:
            return []
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out = []
            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                    out.extend(r.value for r in records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def read_detections(bootstrap: str, topic: str) -> list:
    """Every record of ``topic`` from the beginning to its current end, as :class:`Detection` objects."""
    from detectors.records import Detection

    return [Detection.from_json(value) for value in read_records(bootstrap, topic)]


def wait_for(predicate, timeout_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


class LiveDetections:
    """A background consumer of a detections topic: per camera, (receive time, seq) in offset order."""

    def __init__(self, bootstrap: str, topic: str):
        import threading

        self.bootstrap, self.topic = bootstrap, topic
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> LiveDetections:
        self.thread.start()
        return self

    def _main(self) -> None:
        import asyncio

        asyncio.run(self._run())

    async def _run(self) -> None:
        import asyncio

        from aiokafka import AIOKafkaConsumer

        from detectors.records import Detection
        from pipeline.assignment import topic_partitions

        while not await topic_partitions(self.bootstrap, self.topic):
            if self.stop.is_set():
                return
            await asyncio.sleep(0.5)
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                now = time.monotonic()
                for records in batch.values():
                    for rec in records:
                        det = Detection.from_json(rec.value)
                        self.seen.setdefault(det.camera_id, []).append((now, det.seq))
        finally:
            await consumer.stop()

    def cameras_since(self, t: float) -> set[str]:
        """Cameras with a detection received after monotonic time ``t``."""
        return {cam for cam, rows in list(self.seen.items()) if any(ts > t for ts, _ in rows)}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


GUANJIA = str(Path(sys.executable).with_name("guanjia"))


def write_fire_cameras(config: Path, group_id: str, video: Path, cameras: list[str]) -> Path:
    """A camera-group file: each camera loops ``video`` in real time, fire detector only, 0.3 s interval."""
    config.write_text(yaml.safe_dump({
        "defaults": {"decode_mode": "interval", "analysis_interval_s": 0.3, "detectors": ["fire"],
                     "source": {"loop": True, "realtime": True}},
        "groups": [{"id": group_id, "town": "Humen", "cameras": [
            {"id": cam, "url": str(video), "grid": f"G{i}"} for i, cam in enumerate(cameras)]}],
    }))
    return config


def ingest_env(bootstrap: str, prefix: str, redis_url: str) -> dict[str, str]:
    """This environment, with the worker pointed at ``bootstrap``, topics ``prefix``.*.v1 and ``redis_url``."""
    return {**os.environ, "GUANJIA_KAFKA_BOOTSTRAP": bootstrap, "GUANJIA_TOPIC_PREFIX": prefix,
            "GUANJIA_REDIS_URL": redis_url}


def start_ingest_worker(config: Path, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """``guanjia worker ingest`` with backpressure (every sampled frame analysed, so seqs have no gaps),
    no metrics, no evidence, health every second; output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([GUANJIA, "worker", "ingest", "--config", str(config), "--backpressure",
                                 "--no-metrics", "--evidence-ttl", "0", "--health-interval", "1", *extra],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
