"""Evidence in the real Redis, with a TTL."""

import numpy as np
import pytest
import redis

from pipeline.evidence import RedisStore, write_snapshot
from tests.unit.pipeline.helpers import det

pytestmark = pytest.mark.integration


def test_snapshot_in_redis_expires(redis_url):
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, ttl_s=60, prefix="guanjia:test5:")
    key = write_snapshot(store, np.zeros((48, 64, 3), np.uint8), det(0, 3))
    try:
        data = client.get("guanjia:test5:" + key)
        assert data[:2] == b"\xff\xd8" and 0 < client.ttl("guanjia:test5:" + key) <= 60
    finally:
        client.delete("guanjia:test5:" + key)
