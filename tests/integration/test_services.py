"""Produce/consume through the real Kafka (aiokafka, as faust-streaming uses it) and read/write the real Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.settings import REPO_ROOT

pytestmark = pytest.mark.integration

PARTITIONS = 3
KEYS = [f"cam-{i:03d}" for i in range(7)]


def _load_probe():
    spec = importlib.util.spec_from_file_location(
        "kafka_probe", REPO_ROOT / "scripts" / "kafka_probe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        pending = [await producer.send(topic, value=v.encode(), key=k.encode()) for k, v in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, group: str, expected: int, timeout_s: float = 30.0):
    """Read ``expected`` records as member of ``group``, commit, and return them with the committed offsets."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        # one more short poll: nothing beyond what was produced may arrive
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(batch)
        await consumer.commit()
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: await consumer.committed(tp) for tp in partitions}
        end = await consumer.end_offsets(partitions)
        return records, committed, {tp.partition: off for tp, off in end.items()}
    finally:
        await consumer.stop()


def test_probe_sees_the_broker(kafka_bootstrap: str) -> None:
    host, _, port = kafka_bootstrap.split(",")[0].rpartition(":")
    metadata = _load_probe().probe(host, int(port), timeout=5)
    assert metadata["controller_id"] >= 0
    assert len(metadata["cluster_id"]) == 22  # services.sh formats storage with a base64url 16-byte id
    assert {"host": host, "port": int(port)}.items() <= metadata["brokers"][0].items()


def test_keyed_messages_keep_per_key_order_and_group_resumes_from_commit(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    async def scenario() -> None:
        await _create_topic(kafka_bootstrap, kafka_topic, PARTITIONS)
        first = [(KEYS[i % len(KEYS)], f"{KEYS[i % len(KEYS)]}/{i}") for i in range(60)]
        await _produce(kafka_bootstrap, kafka_topic, first)
        group = f"{kafka_topic}.group"

        records, committed, end = await _consume(kafka_bootstrap, kafka_topic, group, len(first))
        assert sorted((r.key.decode(), r.value.decode()) for r in records) == sorted(first)
        partitions_by_key: dict[str, set[int]] = defaultdict(set)
        seq_by_key: dict[str, list[int]] = defaultdict(list)
        offsets_by_partition: dict[int, list[int]] = defaultdict(list)
        for r in records:
            key = r.key.decode()
            partitions_by_key[key].add(r.partition)
            seq_by_key[key].append(int(r.value.decode().split("/")[1]))
            offsets_by_partition[r.partition].append(r.offset)
        assert all(len(p) == 1 for p in partitions_by_key.values()), partitions_by_key
        assert len({p for ps in partitions_by_key.values() for p in ps}) > 1, (
            "keys should spread over partitions"
        )
        for key, seqs in seq_by_key.items():
            assert seqs == sorted(seqs), f"{key} out of order: {seqs}"
        for offsets in offsets_by_partition.values():
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert committed == end
        assert sum(end.values()) == len(first)

        second = [(key, f"{key}/{100 + i}") for i, key in enumerate(KEYS)]
        await _produce(kafka_bootstrap, kafka_topic, second)
        resumed, committed, end = await _consume(kafka_bootstrap, kafka_topic, group, len(second))
        assert sorted((r.key.decode(), r.value.decode()) for r in resumed) == sorted(second)
        assert committed == end
        assert sum(end.values()) == len(first) + len(second)

    asyncio.run(scenario())


def test_redis_hash_with_ttl(redis_client, redis_key_prefix: str) -> None:
    key = f"{redis_key_prefix}camera:cam-001"
    redis_client.hset(key, mapping={"town": "Humen", "grid": "G0042", "count": 17})
    assert redis_client.expire(key, 60)
    assert 0 < redis_client.ttl(key) <= 60
    assert redis_client.hgetall(key) == {"town": "Humen", "grid": "G0042", "count": "17"}
    assert redis_client.hincrby(key, "count", 3) == 20

    short = f"{redis_key_prefix}camera:short"
    redis_client.hset(short, "state", "alarm")
    redis_client.pexpire(short, 100)
    deadline = time.monotonic() + 5
    while redis_client.exists(short) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not redis_client.exists(short)
    assert redis_client.exists(key)


def test_redis_sorted_set_ranking_and_window(redis_client, redis_key_prefix: str) -> None:
    key = f"{redis_key_prefix}risk"
    redis_client.zadd(key, {"G0001": 0.2, "G0002": 0.9, "G0003": 0.5, "G0004": 0.05})
    redis_client.zincrby(key, 0.6, "G0001")
    assert redis_client.zrevrange(key, 0, 1, withscores=True) == [
        ("G0002", 0.9),
        ("G0001", pytest.approx(0.8)),
    ]
    assert redis_client.zrangebyscore(key, 0.4, 0.85) == ["G0003", "G0001"]
    assert redis_client.zremrangebyscore(key, "-inf", 0.1) == 1
    assert redis_client.zcard(key) == 3
    assert redis_client.zscore(key, "G0004") is None


def test_ensure_topics_creates_compacted_changelogs_before_the_worker_starts(kafka_bootstrap):
    import uuid

    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from pipeline.settings import Settings
    from pipeline.topics import ensure_topics, topic_names

    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"ct{uuid.uuid4().hex[:6]}", topic_partitions=3)
    changelog = f"{settings.topic_prefix}-events-desk-changelog"

    async def run():
        created = await ensure_topics(settings, compacted=[changelog])
        again = await ensure_topics(settings, compacted=[changelog])
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([changelog])
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
        finally:
            await admin.close()
        return created, again, described, configs

    created, again, described, configs = asyncio.run(run())
    assert set(created) == {*topic_names(settings).values(), changelog} and again == []
    assert len(described[0]["partitions"]) == 3
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    assert entries["cleanup.policy"] == "compact"
