"""Parts of the Faust worker that can be checked without Kafka."""

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.faust_app import KeyPartitioner, check_conductor


def test_key_partitioner_puts_every_key_where_kafkas_default_does():
    mine, default = KeyPartitioner(remember=64), DefaultPartitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(2000)] + [b"", b"c1", "摄像头".encode()]
    for parts in ([0], [0, 1, 2, 3], list(range(12))):
        for key in keys + keys[:100]:  # the second pass comes from the cache
            assert mine(key, parts, parts) == default(key, parts, parts)
    assert mine(None, [0, 1, 2, 3], [2]) == 2


def test_conductor_check_passes_on_this_faust_and_names_what_an_upgrade_lost():
    check_conductor()  # the installed faust-streaming declares both privates

    class Renamed:
        _tp_to_callback: dict

    with pytest.raises(ImportError, match="private _tp_to_callback_lock, which"):
        check_conductor(Renamed)


def test_memory_store_remembers_the_partition_of_each_key_read_back_from_a_changelog():
    """The silent-camera sweep reads ``_key_partition`` to check only the recovered states of its own partitions."""
    from types import SimpleNamespace

    import faust

    app = faust.App("parts-test", store="memory://", autodiscover=False)
    table = app.Table("health", default=None)
    events = [SimpleNamespace(key=key, value={"max_t": 1.0}, message=SimpleNamespace(partition=p, value=b"{}"))
              for key, p in (("c1", 0), ("c2", 3))]
    table.data.apply_changelog_batch(events, to_key=lambda k: k, to_value=lambda v: v)
    assert dict(table.data.items()) == {"c1": {"max_t": 1.0}, "c2": {"max_t": 1.0}}
    assert table.data._key_partition == {"c1": 0, "c2": 3}


def test_consumer_lag_is_the_high_watermark_minus_the_committed_offset_of_each_held_input():
    """Committed offset where Faust has one, the position where the group has committed none; inputs only."""
    import asyncio
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP

    from pipeline.faust_app import FastConsumer

    held = {TP("in", 0), TP("in", 1), TP("in", 2), TP("other", 0), TP("in-changelog", 0)}

    async def highwaters(*tps):
        assert set(tps) == {TP("in", 0), TP("in", 1), TP("in", 2)}  # only the inputs are asked about
        return {TP("in", 0): 120, TP("in", 1): 7}  # partition 2: no answer yet

    async def position(tp):
        return {TP("in", 1): 3}[tp]

    committed = defaultdict(lambda: None, {TP("in", 0): 100})
    fake = SimpleNamespace(assignment=lambda: held, highwaters=highwaters, position=position,
                           _committed_offset=committed)
    assert asyncio.run(FastConsumer.lag(fake, {"in"})) == {("in", 0): 20, ("in", 1): 4}
    assert TP("in", 1) not in committed  # read without adding keys to Faust's defaultdict
    assert asyncio.run(FastConsumer.lag(SimpleNamespace(assignment=set), {"in"})) == {}


def test_faust_still_keeps_the_committed_offsets_the_lag_reads():
    from faust.transport.consumer import Consumer

    assert "_committed_offset" in Consumer.__annotations__
