#!/usr/bin/env python3
"""The kafka-python side of the golden-byte capture (see capture_golden.sh).

Produces RECORDS (three keyed records with headers, one batch) to one partition with an
idempotent acks=all producer, then reads them back with a consumer that assigns that
partition and seeks to the beginning. Fails unless all three come back unchanged.

usage: kafka_python_golden.py BOOTSTRAP TOPIC PARTITION
"""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

CLIENT_ID = "franzy-golden"
RECORDS = [
    (b"k1", b"v1", [("trace", b"abc"), ("source", b"kafka-python")]),
    (b"k2", b"v2", [("trace", b"abc"), ("source", b"kafka-python")]),
    (b"k3", b"v3", [("trace", b"abc"), ("source", b"kafka-python")]),
]
TIMEOUT_S = 20
# kafka-python 3 opens with ApiVersions v4. librdkafka 2.0's mock cluster answers versions it
# does not support (above v2) with a body that is neither v0 nor flexible (see the
# librdkafka_api_versions_v3_unsupported_response.bin fixture), which kafka-python cannot
# decode, so it never falls back and never connects. Telling it the broker is Kafka 2.3 makes
# it open with ApiVersions v2; request versions are then negotiated from the mock's answer.
API_VERSION = (2, 3)


def main():
    bootstrap, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id=CLIENT_ID,
        acks="all",
        linger_ms=200,  # all three records in one batch
        compression_type=None,
        max_block_ms=TIMEOUT_S * 1000,
        api_version=API_VERSION,
        request_timeout_ms=TIMEOUT_S * 1000,
    )
    futures = [
        producer.send(topic, key=k, value=v, headers=h, partition=partition)
        for k, v, h in RECORDS
    ]
    producer.flush(timeout=TIMEOUT_S)
    for f in futures:
        f.get(timeout=TIMEOUT_S)
    producer.close(timeout=TIMEOUT_S)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        api_version=API_VERSION,
        request_timeout_ms=TIMEOUT_S * 1000 + 1000,
    )
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < len(RECORDS) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.key, r.value, list(r.headers)) for r in records)
    consumer.close()
    want = [(k, v, h) for k, v, h in RECORDS]
    if got != want:
        print(f"kafka_python_golden: read back {got!r}, want {want!r}", file=sys.stderr)
        return 1
    print(f"kafka_python_golden: produced and consumed {len(got)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
