"""Parts of the Faust worker that can be checked without Kafka."""

import uuid

from aiokafka.partitioner import DefaultPartitioner

from pipeline.faust_app import KeyPartitioner


def test_key_partitioner_puts_every_key_where_kafkas_default_does():
    mine, default = KeyPartitioner(remember=64), DefaultPartitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(2000)] + [b"", b"c1", "摄像头".encode()]
    for parts in ([0], [0, 1, 2, 3], list(range(12))):
        for key in keys + keys[:100]:  # the second pass comes from the cache
            assert mine(key, parts, parts) == default(key, parts, parts)
    assert mine(None, [0, 1, 2, 3], [2]) == 2
