#!/usr/bin/env python3
"""KIP-848 consumers we did not write (confluent-kafka's librdkafka, group.protocol=consumer)
against a broker: run by kip848.sh against `franzy serve`.

Subcommands (each exits non-zero with a FAIL line on the first mismatch):
  topic BOOTSTRAP TOPIC PARTITIONS
        create TOPIC with AdminClient.create_topics and check it has PARTITIONS partitions
  consumers BOOTSTRAP TOPIC PARTITIONS N GROUP
        three consumers with group.protocol=consumer join GROUP; their assignments must be
        disjoint and cover every partition; N records produced are read exactly once, each
        committed synchronously as it is read; then one consumer closes (leaves the group),
        the other two take over its partitions, and the N records produced next are read
        exactly once by them
  mixed BOOTSTRAP TOPIC PARTITIONS N GROUP [STRATEGY]
        a group.protocol=classic consumer forms GROUP, a group.protocol=consumer consumer
        joins it (the broker upgrades the group to a consumer group with its classic member),
        they split the partitions and read N records exactly once; the consumer-protocol
        member leaves (the broker downgrades the group to classic) and the classic one takes
        every partition and reads the N records produced next; STRATEGY is the classic
        consumer's partition.assignment.strategy (default range, eager; cooperative-sticky
        sends the partitions it owns when it rejoins)
  regex BOOTSTRAP PREFIX N GROUP
        a group.protocol=consumer consumer subscribes to the regex ^PREFIX-.* (sent to the
        broker, which resolves it): it gets PREFIX-a's partitions; PREFIX-b, created after it
        joined, is matched too, and N records produced to each topic are read exactly once
  describe BOOTSTRAP TOPIC PARTITIONS GROUP
        two group.protocol=consumer consumers join GROUP; AdminClient.describe_consumer_groups
        must report type CONSUMER, state STABLE, both members with the client ids they used,
        and their assignments (and target assignments) disjoint and covering the topic
"""

import os
import sys
import time

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupType,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = float(os.environ.get("INTEROP_TIMEOUT", "120"))
DEBUG = os.environ.get("KIP848_DEBUG", "")


def fail(message):
    print(f"kip848: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def log(message):
    print(f"kip848: {message}", flush=True)


def consumer(bootstrap, group, name, protocol="consumer", strategy=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "group.protocol": protocol,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }
    if protocol == "classic":
        conf["session.timeout.ms"] = 10000
        conf["heartbeat.interval.ms"] = 500
        if strategy:
            conf["partition.assignment.strategy"] = strategy
    if DEBUG:
        conf["debug"] = DEBUG
    return Consumer(conf)


def produce(bootstrap, topic, partitions, start, n, prefix):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(start, start + n):
        producer.produce(
            topic,
            key=f"{prefix}-key-{i}".encode(),
            value=f"{prefix}-value-{i}".encode(),
            partition=i % partitions,
            on_delivery=delivered,
        )
        producer.poll(0)
    left = producer.flush(TIMEOUT_S)
    if left or errors:
        fail(f"producing {n} records: {left} not delivered, errors {errors[:3]}")
    log(f"produced {prefix}-value-{start}..{start + n - 1}")


def assignments(consumers):
    return {name: {(tp.topic, tp.partition) for tp in c.assignment()} for name, c in consumers.items()}


def wait_for_split(consumers, topic, partitions, what):
    """Polls every consumer until their assignments are disjoint and cover the topic."""
    wanted = {(topic, p) for p in range(partitions)}
    deadline = time.monotonic() + TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        for c in consumers.values():
            msg = c.poll(0.1)
            if msg is not None and msg.error() is None:
                fail(f"{what}: a record arrived before any was produced: {msg.value()}")
        now = assignments(consumers)
        if now != last:
            log(f"{what}: assignments {sorted((n, sorted(p for _, p in a)) for n, a in now.items())}")
            last = now
        union = set().union(*now.values())
        disjoint = sum(len(a) for a in now.values()) == len(union)
        if union == wanted and disjoint and all(now.values()):
            return now
    fail(f"{what}: assignments never split {partitions} partitions among {len(consumers)} consumers: {last}")


def read_exactly(consumers, n, prefix, start, what):
    """Polls the consumers until the N records prefix-value-start.. are read, committing each
    synchronously; fails on a duplicate or a stranger, or when the time is up."""
    wanted = {f"{prefix}-value-{i}" for i in range(start, start + n)}
    seen = {}
    by_consumer = {name: 0 for name in consumers}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < n and time.monotonic() < deadline:
        for name, c in consumers.items():
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error() is not None:
                fail(f"{what}: {name} poll error: {msg.error()}")
            value = msg.value().decode()
            if value not in wanted:
                fail(f"{what}: {name} read {value!r} at {msg.partition()}/{msg.offset()}, not one of this phase's records")
            if value in seen:
                fail(
                    f"{what}: {value} read twice: by {seen[value]} and by {name} "
                    f"(partition {msg.partition()}, offset {msg.offset()})"
                )
            seen[value] = name
            by_consumer[name] += 1
            try:
                c.commit(message=msg, asynchronous=False)
            except KafkaException as e:
                fail(f"{what}: {name} commit at {msg.partition()}/{msg.offset()}: {e}")
    if len(seen) < n:
        missing = sorted(wanted - set(seen))
        fail(f"{what}: read {len(seen)} of {n} records in {TIMEOUT_S}s; missing e.g. {missing[:5]}")
    log(f"{what}: read all {n} records exactly once: {by_consumer}")
    return by_consumer


def close_all(consumers):
    for c in consumers.values():
        c.close()


def cmd_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(TIMEOUT_S)
    except KafkaException as e:
        fail(f"create_topics {topic}: {e}")
    metadata = admin.list_topics(topic, timeout=TIMEOUT_S)
    got = len(metadata.topics[topic].partitions)
    if got != partitions:
        fail(f"{topic} has {got} partitions, not {partitions}")
    log(f"created {topic} with {partitions} partitions")


def cmd_consumers(bootstrap, topic, partitions, n, group):
    members = {f"kip848-{i}": consumer(bootstrap, group, f"kip848-{i}") for i in range(3)}
    for c in members.values():
        c.subscribe([topic])
    wait_for_split(members, topic, partitions, "three consumers")
    produce(bootstrap, topic, partitions, 0, n, "phase1")
    read_exactly(members, n, "phase1", 0, "three consumers")

    leaving = "kip848-0"
    log(f"{leaving} closes (leaves the group)")
    members.pop(leaving).close()
    wait_for_split(members, topic, partitions, "two consumers")
    produce(bootstrap, topic, partitions, n, n, "phase2")
    counts = read_exactly(members, n, "phase2", n, "two consumers")
    if not all(counts.values()):
        fail(f"after the leave a consumer read nothing: {counts}")
    close_all(members)


def group_type(bootstrap, group):
    """The group's type and state as AdminClient.describe_consumer_groups reports them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group])[group].result(TIMEOUT_S)
    except KafkaException as e:
        fail(f"describe_consumer_groups {group}: {e}")
    return description.type, len(description.members)


def expect_type(bootstrap, group, wanted, members, what):
    got = group_type(bootstrap, group)
    if got != (wanted, members):
        fail(f"{what}: {group} is {got[0]} with {got[1]} members, not {wanted} with {members}")
    log(f"{what}: {group} is a {wanted} group with {members} members")


def cmd_mixed(bootstrap, topic, partitions, n, group, strategy):
    log(f"the classic consumer's partition.assignment.strategy: {strategy}")
    classic = consumer(bootstrap, group, "mixed-classic", protocol="classic", strategy=strategy)
    classic.subscribe([topic])
    members = {"mixed-classic": classic}
    wait_for_split(members, topic, partitions, "classic consumer alone")
    expect_type(bootstrap, group, ConsumerGroupType.CLASSIC, 1, "classic consumer alone")

    modern = consumer(bootstrap, group, "mixed-consumer", protocol="consumer")
    modern.subscribe([topic])
    members["mixed-consumer"] = modern
    wait_for_split(members, topic, partitions, "classic + consumer protocol")
    expect_type(bootstrap, group, ConsumerGroupType.CONSUMER, 2, "after the upgrade")
    produce(bootstrap, topic, partitions, 0, n, "mixed1")
    read_exactly(members, n, "mixed1", 0, "classic + consumer protocol")

    log("the consumer-protocol member closes: the group goes back to classic")
    members.pop("mixed-consumer").close()
    wait_for_split(members, topic, partitions, "classic consumer after the downgrade")
    expect_type(bootstrap, group, ConsumerGroupType.CLASSIC, 1, "after the downgrade")
    produce(bootstrap, topic, partitions, n, n, "mixed2")
    read_exactly(members, n, "mixed2", n, "classic consumer after the downgrade")
    close_all(members)


def cmd_regex(bootstrap, prefix, n, group):
    first, later = f"{prefix}-a", f"{prefix}-b"
    cmd_topic(bootstrap, first, 2)
    member = consumer(bootstrap, group, "regex-0")
    member.subscribe([f"^{prefix}-.*"])
    members = {"regex-0": member}
    wait_for_split(members, first, 2, "regex, one topic")
    cmd_topic(bootstrap, later, 3)
    wanted = {(first, p) for p in range(2)} | {(later, p) for p in range(3)}
    deadline = time.monotonic() + TIMEOUT_S
    while assignments(members)["regex-0"] != wanted:
        if time.monotonic() > deadline:
            fail(f"regex: the topic created later was never assigned: {assignments(members)}")
        member.poll(0.1)
    log(f"regex: ^{prefix}-.* resolved on the broker to {sorted(wanted)}")
    produce(bootstrap, first, 2, 0, n, "rx1")
    produce(bootstrap, later, 3, n, n, "rx2")
    wanted_values = {f"rx1-value-{i}" for i in range(n)} | {f"rx2-value-{i}" for i in range(n, 2 * n)}
    seen = set()
    while len(seen) < 2 * n and time.monotonic() < deadline + TIMEOUT_S:
        msg = member.poll(0.1)
        if msg is None:
            continue
        if msg.error() is not None:
            fail(f"regex: poll error: {msg.error()}")
        value = msg.value().decode()
        if value not in wanted_values or value in seen:
            fail(f"regex: unexpected or repeated record {value!r}")
        seen.add(value)
        member.commit(message=msg, asynchronous=False)
    if len(seen) < 2 * n:
        fail(f"regex: read {len(seen)} of {2 * n} records")
    log(f"regex: read all {2 * n} records of both topics exactly once")
    member.close()


def cmd_describe(bootstrap, topic, partitions, group):
    members = {f"describe-{i}": consumer(bootstrap, group, f"describe-{i}") for i in range(2)}
    for c in members.values():
        c.subscribe([topic])
    wait_for_split(members, topic, partitions, "describe")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + TIMEOUT_S
    description = None
    while time.monotonic() < deadline:
        for c in members.values():
            c.poll(0.1)
        try:
            description = admin.describe_consumer_groups([group])[group].result(TIMEOUT_S)
        except KafkaException as e:
            fail(f"describe_consumer_groups {group}: {e}")
        if description.state == ConsumerGroupState.STABLE:
            break
    if description is None:
        fail("describe_consumer_groups returned nothing")
    log(
        f"described {group}: type {description.type}, state {description.state}, "
        f"assignor {description.partition_assignor!r}, {len(description.members)} members"
    )
    if description.type != ConsumerGroupType.CONSUMER:
        fail(f"type {description.type}, not CONSUMER")
    if description.state != ConsumerGroupState.STABLE:
        fail(f"state {description.state}, not STABLE")
    if description.is_simple_consumer_group:
        fail("a KIP-848 group described as a simple consumer group")
    clients = sorted(m.client_id for m in description.members)
    if clients != sorted(members):
        fail(f"members' client ids {clients}, not {sorted(members)}")
    wanted = {(topic, p) for p in range(partitions)}
    for field in ("assignment", "target_assignment"):
        seen = []
        for m in description.members:
            a = getattr(m, field)
            if a is None:
                fail(f"member {m.member_id} has no {field}")
            seen.extend((tp.topic, tp.partition) for tp in a.topic_partitions)
        if len(seen) != len(set(seen)) or set(seen) != wanted:
            fail(f"members' {field}s {sorted(seen)} do not split {sorted(wanted)}")
    live = assignments(members)
    for m in description.members:
        described = {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        if described != live[m.client_id]:
            fail(f"{m.client_id}: described {sorted(described)}, owns {sorted(live[m.client_id])}")
    log("describe_consumer_groups: type, state, members and assignments as the consumers hold them")
    close_all(members)


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "topic":
        cmd_topic(args[0], args[1], int(args[2]))
    elif cmd == "consumers":
        cmd_consumers(args[0], args[1], int(args[2]), int(args[3]), args[4])
    elif cmd == "mixed":
        cmd_mixed(args[0], args[1], int(args[2]), int(args[3]), args[4], args[5] if len(args) > 5 else "range")
    elif cmd == "regex":
        cmd_regex(args[0], args[1], int(args[2]), args[3])
    elif cmd == "describe":
        cmd_describe(args[0], args[1], int(args[2]), args[3])
    else:
        fail(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main(sys.argv)
