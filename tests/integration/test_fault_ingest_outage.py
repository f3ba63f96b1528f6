"""Kafka away for longer than the producer's request timeout, under `guanjia worker ingest`'s KafkaSink and
under a running worker that is stopped meanwhile. Private broker (own ports, own data dir kept across a
restart).

- The partition's send buffer fills (one batch retrying, one full): the sink must wait and retry, holding
  the detector back once ``max_in_flight`` records wait, and deliver every record, in order, once the broker
  returns. Before, each record over the buffer raised KafkaTimeoutError after request_timeout_ms and was
  dropped as ``failed``.
- SIGTERM while the broker is dead: the worker must exit (not hang), count the records it could not
  deliver as lost and exit 1. Before, it printed "0 failed" and exited 0.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli.worker_ingest import KafkaSink
from pipeline.settings import Settings
from tests.integration.fault_support import (
    PrivateBroker,
    ingest_env,
    read_detections,
    read_records,
    start_ingest_worker,
    wait_for,
    write_fire_cameras,
)
from tests.plugins.shared import shared_path

pytestmark = [pytest.mark.integration]

RECORDS = 600
PAD = "x" * 4000  # ~4 KB: a 256 KB batch holds ~60, so the outage fills the partition's buffer at ~120
REQUEST_TIMEOUT_MS = 1500
MAX_IN_FLIGHT = 300


def record(seq: int) -> bytes:
    return json.dumps({"seq": seq, "pad": PAD}).encode()


def test_outage_longer_than_the_request_timeout_back_pressures_and_loses_nothing(tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "kafka")
    topic = f"bp-{uuid.uuid4().hex[:8]}"
    sink = None
    try:
        broker.start()
        sink = KafkaSink(Settings(kafka_bootstrap=broker.bootstrap), request_timeout_ms=REQUEST_TIMEOUT_MS,
                         max_in_flight=MAX_IN_FLIGHT).start()
        sink.send(topic, "k", record(0))  # the topic exists (auto-created, one partition) before the outage
        assert wait_for(lambda: sink.sent == 1, 60, every_s=0.1) is not None
        broker.stop(signal.SIGKILL)
        accepted: list[int] = []

        def detector() -> None:
            for seq in range(1, RECORDS):
                sink.send(topic, "k", record(seq))
                accepted.append(seq)

        thread = threading.Thread(target=detector, daemon=True)
        thread.start()
        time.sleep(4 * REQUEST_TIMEOUT_MS / 1000)  # several request timeouts with a full buffer
        assert sink.failed == 0, f"{sink.failed} records dropped while the broker was away"
        assert thread.is_alive() and sink.in_flight == MAX_IN_FLIGHT, (len(accepted), sink.in_flight)  # back-pressure
        broker.start()
        thread.join(120)
        assert not thread.is_alive()
        sink.close(timeout=60)
        assert (sink.sent, sink.failed, sink.lost) == (RECORDS, 0, 0)
        seqs = [json.loads(v)["seq"] for v in read_records(broker.bootstrap, topic)]
        assert seqs == list(range(RECORDS)), [s for s, n in Counter(seqs).items() if n > 1][:10]  # once each, in order
    finally:
        if sink is not None and sink.thread.is_alive():
            sink.close(timeout=1)
        broker.stop(signal.SIGKILL)


@pytest.mark.shared
def test_stop_while_the_broker_is_dead_exits_1_counting_the_undelivered_as_lost(clip, redis_url: str,
                                                                                tmp_path: Path) -> None:
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    video = clip(seconds=4.0, size="320x240", fps=10, gop=10)
    broker = PrivateBroker(tmp_path / "kafka")
    prefix = f"tlost-{uuid.uuid4().hex[:8]}"
    config = write_fire_cameras(tmp_path / "cams.yaml", "lost", video, ["lost-1", "lost-2"])
    log = tmp_path / "worker.log"
    worker = None
    try:
        broker.start()
        worker = start_ingest_worker(config, ingest_env(broker.bootstrap, prefix, redis_url), log)
        topic = f"{prefix}.detections.v1"
        assert wait_for(lambda: len(read_detections(broker.bootstrap, topic)) >= 10, 150, every_s=1), log.read_text()[-3000:]
        broker.stop(signal.SIGKILL)
        time.sleep(3)  # detections and health reports pile up undelivered
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(90)  # ~30 s trying to deliver, then it gives up
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        broker.stop(signal.SIGKILL)
    text = log.read_text()
    assert code == 1 and "Traceback" not in text, text[-3000:]
    summary = re.search(r"(\d+) records delivered, (\d+) failed, (\d+) lost at shutdown", text)
    assert summary, text[-3000:]
    assert int(summary.group(2)) == 0 and int(summary.group(3)) > 0, summary.group(0)
    assert "not delivered within 30 s of shutdown; they are lost" in text
    assert "Task was destroyed" not in text and "Unclosed AIOKafkaProducer" not in text, text[-3000:]
