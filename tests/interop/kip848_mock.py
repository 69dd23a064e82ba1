"""librdkafka's mock cluster (3 brokers) through confluent-kafka's bundled librdkafka, which
serves the KIP-848 consumer group protocol (ConsumerGroupHeartbeat v1): prints the
bootstrap address, produces `before-0..N` to topic `kip848` (auto-created: 4 partitions),
then for each line read from stdin (`during N`) produces `during-1..N`; stops, and the
mock with it, when stdin ends.

usage: python3 tests/interop/kip848_mock.py N   (tests/interop/kip848_vs_mock.sh runs it)
"""

import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

TOPIC = "kip848"


def produce(producer, prefix, n, partitions):
    # Round robin: every partition, and so every member, gets records.
    for i in range(1, n + 1):
        producer.produce(TOPIC, value=f"{prefix}-{i}".encode(), partition=i % partitions)
    left = producer.flush(30)
    if left:
        sys.exit(f"kip848_mock: {left} records not delivered")


def main():
    before = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    # The mock lives as long as this handle.
    admin = AdminClient({"test.mock.num.brokers": 3, "log_level": 3})
    brokers = admin.list_topics(timeout=10).brokers.values()
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    # The first record auto-creates the topic (the mock's 4 partitions).
    producer.produce(TOPIC, value=b"before-0")
    producer.flush(30)
    partitions = len(admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
    produce(producer, "before", before, partitions)
    print(bootstrap, flush=True)
    print(f"partitions {partitions}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) == 2 and words[0] == "during":
            produce(producer, "during", int(words[1]), partitions)
            print(f"produced during {words[1]}", flush=True)


if __name__ == "__main__":
    main()
