#!/usr/bin/env python3
"""Ask a Kafka broker for cluster metadata; exit 0 once it lists itself as a live broker.

Standard library only, so ``scripts/services.sh`` can wait for Kafka before any virtualenv exists.
Speaks Metadata v4: the oldest version Kafka 4 still serves (KIP-896), understood since Kafka 1.0.

usage: kafka_probe.py HOST:PORT [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys

METADATA_API_KEY = 3
METADATA_VERSION = 4
CORRELATION_ID = 0x6A6A


def _request(client_id: bytes = b"guanjia-probe") -> bytes:
    header = struct.pack(
        ">hhih", METADATA_API_KEY, METADATA_VERSION, CORRELATION_ID, len(client_id)
    )
    # null topic array (every topic, and always the broker list); allow_auto_topic_creation=false
    body = struct.pack(">ib", -1, 0)
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        value = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return value


def probe(host: str, port: int, timeout: float) -> dict:
    """Return ``{"brokers": [...], "cluster_id": str, "controller_id": int}`` from one Metadata round trip."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_request())
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != CORRELATION_ID:
        raise ValueError("response correlation id does not match the request")
    reader.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.take(">i")):
        node_id, broker_host, broker_port = reader.take(">i"), reader.string(), reader.take(">i")
        reader.string()  # rack
        brokers.append({"node_id": node_id, "host": broker_host, "port": broker_port})
    cluster_id = reader.string()
    return {"brokers": brokers, "cluster_id": cluster_id, "controller_id": reader.take(">i")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the broker")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    try:
        result = probe(host or "127.0.0.1", int(port), args.timeout)
    except (OSError, ValueError, struct.error) as exc:
        print(f"kafka probe {args.address}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0 if result["brokers"] and result["controller_id"] >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
