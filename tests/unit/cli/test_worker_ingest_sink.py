"""KafkaSink of `guanjia worker ingest` against a scripted producer: a full send buffer (broker away
longer than request_timeout_ms) back-pressures instead of dropping; real refusals stay failures; a stop
never hangs and what was not delivered is counted as lost, with exit code 1."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from pipeline.cli.worker_ingest import KafkaSink, delivery_summary, exit_code
from pipeline.settings import Settings


class ScriptedProducer:
    """``send`` as aiokafka's: awaits room in the buffer (KafkaTimeoutError after ``timeout_s`` while
    ``full``), then returns the delivery future; ``deliver()`` resolves those futures (the broker is back)."""

    def __init__(self, *, full: bool = False, timeout_s: float = 0.05, too_large: frozenset[bytes] = frozenset()):
        self.full = full
        self.timeout_s = timeout_s
        self.too_large = too_large
        self.accepted: list[bytes] = []
        self.pending: list[asyncio.Future] = []
        self.timeouts = 0
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        if value in self.too_large:
            raise MessageSizeTooLargeError()
        if self.full:
            await asyncio.sleep(self.timeout_s)
            self.timeouts += 1
            raise KafkaTimeoutError()
        self.accepted.append(value)
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def deliver(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)

    async def stop(self) -> None:
        self.stopped = True


def started_sink(producer: ScriptedProducer, **kwargs) -> KafkaSink:
    sink = KafkaSink(Settings(kafka_bootstrap="127.0.0.1:1"), **kwargs)

    async def connect():
        return producer

    sink._connect = connect
    return sink.start()


def on_loop(sink: KafkaSink, fn) -> None:
    sink.loop.call_soon_threadsafe(fn)


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_full_buffer_waits_and_retries_instead_of_dropping_records_in_order() -> None:
    producer = ScriptedProducer(full=True)
    sink = started_sink(producer)
    try:
        for i in range(20):
            assert sink.send("t", "cam", b"%d" % i)
        assert wait_until(lambda: producer.timeouts >= 5)  # several request timeouts pass: the broker is away
        assert sink.failed == 0 and sink.in_flight == 20
        producer.full = False  # the broker is back, the buffer drains
        assert wait_until(lambda: len(producer.accepted) == 20)
        on_loop(sink, producer.deliver)
        assert wait_until(lambda: sink.sent == 20)
    finally:
        sink.close(timeout=2)
    assert producer.accepted == [b"%d" % i for i in range(20)]  # one sender: the order is kept
    assert (sink.sent, sink.failed, sink.lost) == (20, 0, 0) and exit_code(sink) == 0
    assert producer.stopped


def test_a_record_the_client_refuses_is_a_failure_and_the_others_go_on() -> None:
    producer = ScriptedProducer(too_large=frozenset({b"big"}))
    sink = started_sink(producer)
    try:
        for value in (b"a", b"big", b"b"):
            sink.send("t", "cam", value)
        assert wait_until(lambda: len(producer.accepted) == 2 and sink.failed == 1)
        on_loop(sink, producer.deliver)
        assert wait_until(lambda: sink.sent == 2)
    finally:
        sink.close(timeout=2)
    assert (sink.sent, sink.failed, sink.lost) == (2, 1, 0) and exit_code(sink) == 1


def test_all_slots_taken_back_pressures_and_a_stop_frees_the_sender_counting_the_rest_as_lost() -> None:
    stop = threading.Event()
    producer = ScriptedProducer()  # accepts records, the broker never confirms them (an outage)
    sink = started_sink(producer, max_in_flight=5, stopping=stop)
    returned = []
    sender = threading.Thread(target=lambda: returned.extend(sink.send("t", "cam", b"%d" % i) for i in range(20)))
    try:
        sender.start()
        assert wait_until(lambda: sink.in_flight == 5)
        time.sleep(0.5)
        assert sender.is_alive() and sink.in_flight == 5 and returned == [True] * 5  # the 6th waits: so does the detector
        stopped_at = time.monotonic()
        stop.set()  # SIGTERM
        sender.join(5)
        assert not sender.is_alive(), "send() still blocked after the stop"
        assert time.monotonic() - stopped_at < 1.5
        assert returned == [True] * 5 + [False] * 15 and sink.lost == 15
        assert sink.send("t", "cam", b"late") is False and sink.lost == 16  # stopping, no slot: not queued
    finally:
        began = time.monotonic()
        sink.close(timeout=0.3)
        assert time.monotonic() - began < 3
    assert (sink.sent, sink.failed, sink.lost) == (0, 0, 21)  # the 5 in flight at close are lost too
    assert exit_code(sink) == 1
    assert "0 records delivered, 0 failed, 21 lost at shutdown" in delivery_summary(sink, None)


def test_records_in_flight_when_close_gives_up_are_lost_and_the_exit_code_says_so() -> None:
    producer = ScriptedProducer()
    sink = started_sink(producer)
    for i in range(3):
        sink.send("t", "cam", b"%d" % i)
    assert wait_until(lambda: len(producer.accepted) == 3)
    sink.close(timeout=0.2)
    assert (sink.sent, sink.failed, sink.lost) == (0, 0, 3) and exit_code(sink) == 1
    assert sink.send("t", "cam", b"after") is False and sink.lost == 4


@pytest.mark.parametrize("delivered", [True, False])
def test_a_clean_close_delivers_what_is_queued(delivered: bool) -> None:
    producer = ScriptedProducer()
    sink = started_sink(producer)
    for i in range(3):
        sink.send("t", "cam", b"%d" % i)
    assert wait_until(lambda: len(producer.accepted) == 3)
    if delivered:
        on_loop(sink, producer.deliver)
    else:  # delivered while close waits
        threading.Timer(0.2, lambda: on_loop(sink, producer.deliver)).start()
    sink.close(timeout=5)
    assert (sink.sent, sink.failed, sink.lost) == (3, 0, 0) and exit_code(sink) == 0 and producer.stopped
