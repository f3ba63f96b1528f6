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
