#!/usr/bin/env python3
"""Checks for the interoperability suite (run.sh): real Kafka clients against a broker.

Subcommands:
  kcat-input N PREFIX            write N "key:value" lines for `kcat -P -K:` to stdout
  kcat-metadata FILE BROKERS TOPIC PARTITIONS
                                 check `kcat -L -J` output
  kcat-consumed FILE N PREFIX    check `kcat -C -f '%p\\t%o\\t%k\\t%s\\t%h\\n'` output against
                                 what kcat-input N PREFIX produced
  kafka-python BOOTSTRAP TOPIC PARTITIONS BROKERS N PREFIX --other N PREFIX
                                 with kafka-python: list metadata, produce N keyed records
                                 with headers (acks=all), then read the whole topic back by
                                 manual assignment and check it, including the --other
                                 records that kcat wrote before
  kafka-python-txn BOOTSTRAP TOPIC N
                                 with kafka-python's transactional producer: commit N records,
                                 abort N, commit N (record i: key txn-key-(i mod 1000), value
                                 txn-value-i); then read the topic back with a read_committed
                                 consumer and check it holds exactly the 2N committed records
  txn-consumed FILE N WHICH      check `kcat -C -f '%p\t%o\t%k\t%s\n'` output of the topic
                                 kafka-python-txn N wrote: WHICH is "committed" (exactly the
                                 2N committed records, read_committed) or "all" (all 3N,
                                 read_uncommitted); kcat never shows the markers
  kafka-python-group BOOTSTRAP TOPIC PARTITIONS N GROUP
                                 with kafka-python: produce N records to TOPIC, read them with
                                 three consumers of group GROUP (the broker's group
                                 coordinator assigns the partitions, offsets are committed),
                                 check none is lost, then check that a new member of the
                                 group reads nothing again and the committed offsets are the
                                 end offsets
  kcat-group-consumed FILE N PREFIX
                                 check `kcat -G ... -f '%p\t%o\t%s\n'` output: N values of
                                 kafka-python-group's run with PREFIX, each at least once

  kafka-python-admin BOOTSTRAP BROKERS PREFIX
                                 with kafka-python's KafkaAdminClient: create topics (and a
                                 batch where one name is invalid and one exists: per-topic
                                 errors), list and describe them, describe topic and broker
                                 configs, create partitions (and refuse a shrink), list and
                                 describe a group a kafka-python consumer joined and
                                 committed, list its offsets, delete records, delete the
                                 topics; every answer checked against what was done

Every check prints what it found and exits non-zero with a message on the first mismatch.
Record i of a run with prefix P has key P-key-(i mod 1000) and value P-value-i, so that each
key is sent 10 or more times and must land on one partition every time.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict

KEYS = 1000
KCAT_HEADERS = [("h1", "v1"), ("h2", "v2")]
TIMEOUT_S = float(os.environ.get("INTEROP_TIMEOUT", "120"))
# Set by run.sh when the broker is librdkafka's mock cluster, to step around its bugs.
MOCK_QUIRKS = os.environ.get("INTEROP_MOCK_QUIRKS") == "1"
# kafka-python's producer is idempotent (InitProducerId, sequenced batches), as kafka-python 3
# makes it by default; INTEROP_IDEMPOTENT=0 turns that off.
IDEMPOTENT = os.environ.get("INTEROP_IDEMPOTENT", "1") != "0"


class Mismatch(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def key_of(prefix, i):
    return f"{prefix}-key-{i % KEYS}"


def value_of(prefix, i):
    return f"{prefix}-value-{i}"


def kcat_input(args):
    out = sys.stdout
    for i in range(args.n):
        out.write(f"{key_of(args.prefix, i)}:{value_of(args.prefix, i)}\n")
    return 0


def kcat_metadata(args):
    with open(args.file) as f:
        meta = json.load(f)
    brokers = sorted(b["id"] for b in meta.get("brokers", []))
    check(len(brokers) == args.brokers, f"kcat -L: {len(brokers)} brokers {brokers}, want {args.brokers}")
    topics = {t["topic"]: t for t in meta.get("topics", [])}
    check(args.topic in topics, f"kcat -L: topic {args.topic} missing from {sorted(topics)}")
    topic = topics[args.topic]
    check("error" not in topic, f"kcat -L: topic {args.topic} error {topic.get('error')}")
    partitions = sorted(p["partition"] for p in topic["partitions"])
    check(
        partitions == list(range(args.partitions)),
        f"kcat -L: topic {args.topic} partitions {partitions}, want 0..{args.partitions - 1}",
    )
    for p in topic["partitions"]:
        check("error" not in p, f"kcat -L: partition {p['partition']} error {p.get('error')}")
        check(p["leader"] in brokers, f"kcat -L: partition {p['partition']} leader {p['leader']} not a broker")
    print(f"kcat -L: {len(brokers)} brokers {brokers}, topic {args.topic} with {len(partitions)} partitions")
    return 0


def check_records(who, records, n, prefix, headers_of, partitions=None):
    """records: list of (partition, offset, key, value, headers) for this prefix."""
    check(len(records) == n, f"{who}: read {len(records)} records with prefix {prefix}, want {n}")
    by_value = {}
    for partition, offset, key, value, headers in records:
        check(value not in by_value, f"{who}: value {value!r} read twice")
        by_value[value] = (partition, offset, key, headers)
    key_partitions = defaultdict(set)
    for i in range(n):
        value = value_of(prefix, i)
        check(value in by_value, f"{who}: value {value!r} was sent but not read")
        partition, offset, key, headers = by_value[value]
        check(key == key_of(prefix, i), f"{who}: value {value!r} came with key {key!r}, want {key_of(prefix, i)!r}")
        want = headers_of(i)
        check(headers == want, f"{who}: value {value!r} came with headers {headers!r}, want {want!r}")
        if partitions is not None:
            check(0 <= partition < partitions, f"{who}: partition {partition} out of range")
        key_partitions[key].add(partition)
    split = {k: sorted(p) for k, p in key_partitions.items() if len(p) != 1}
    check(not split, f"{who}: keys on more than one partition: {dict(list(split.items())[:5])}")
    used = sorted({p for p, *_ in records})
    print(f"{who}: {n} records, every key/value/header as sent, {len(key_partitions)} keys each on one partition, partitions used {used}")


def check_dense_offsets(who, records):
    """records: list of (partition, offset, ...) covering whole partitions from offset 0."""
    offsets = defaultdict(list)
    for partition, offset, *_ in records:
        offsets[partition].append(offset)
    for partition, got in sorted(offsets.items()):
        got.sort()
        if got != list(range(len(got))):
            missing = sorted(set(range(len(got))) - set(got))[:5]
            repeated = sorted(o for o, c in Counter(got).items() if c > 1)[:5]
            raise Mismatch(
                f"{who}: offsets of partition {partition} are not 0..{len(got) - 1} without gaps "
                f"or repeats (missing {missing}, repeated {repeated}, max {got[-1]})"
            )
    counts = {p: len(o) for p, o in sorted(offsets.items())}
    print(f"{who}: offsets dense from 0 in every partition, records per partition {counts}")


def parse_kcat_headers(text):
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        check(sep == "=", f"kcat -C: header {item!r} is not NAME=VALUE")
        pairs.append((name, value))
    return pairs


def kcat_consumed(args):
    records = []
    with open(args.file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            check(len(fields) == 5, f"kcat -C line {number}: {line!r} is not partition, offset, key, value, headers")
            partition, offset, key, value, headers = fields
            records.append((int(partition), int(offset), key, value, parse_kcat_headers(headers)))
    check_records("kcat -C", records, args.n, args.prefix, lambda i: KCAT_HEADERS)
    check_dense_offsets("kcat -C", records)
    return 0


def kafka_python(args):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient

    bootstrap = args.bootstrap.split(",")
    common = {"bootstrap_servers": bootstrap, "client_id": "franzy-interop"}
    api_version = os.environ.get("KAFKA_PYTHON_API_VERSION")
    if api_version:
        common["api_version"] = tuple(int(x) for x in api_version.split("."))
    deadline = time.monotonic() + TIMEOUT_S
    timeout_ms = int(TIMEOUT_S * 1000)

    # Metadata: brokers, topics, partitions.
    admin = KafkaAdminClient(request_timeout_ms=timeout_ms, **common)
    cluster = admin.describe_cluster()
    broker_ids = sorted(b["broker_id"] for b in cluster["brokers"])
    admin.close()
    check(len(broker_ids) == args.brokers, f"kafka-python: {len(broker_ids)} brokers {broker_ids}, want {args.brokers}")

    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=timeout_ms + 1000,
        fetch_max_wait_ms=200,
        **common,
    )
    topics = consumer.topics()
    check(args.topic in topics, f"kafka-python: topic {args.topic} missing from {sorted(topics)}")
    partitions = sorted(consumer.partitions_for_topic(args.topic) or [])
    check(
        partitions == list(range(args.partitions)),
        f"kafka-python: topic {args.topic} partitions {partitions}, want 0..{args.partitions - 1}",
    )
    print(f"kafka-python: {len(broker_ids)} brokers {broker_ids}, topic {args.topic} with {len(partitions)} partitions")

    # Produce.
    producer = KafkaProducer(
        acks="all",
        enable_idempotence=IDEMPOTENT,
        linger_ms=5,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        delivery_timeout_ms=timeout_ms + 1000,
        **common,
    )
    futures = []
    for i in range(args.n):
        futures.append(
            producer.send(
                args.topic,
                key=key_of(args.prefix, i).encode(),
                value=value_of(args.prefix, i).encode(),
                headers=kafka_python_headers(i),
            )
        )
    producer.flush(timeout=max(1.0, deadline - time.monotonic()))
    acked_partitions = defaultdict(set)
    for i, future in enumerate(futures):
        metadata = future.get(timeout=max(1.0, deadline - time.monotonic()))
        acked_partitions[key_of(args.prefix, i)].add(metadata.partition)
    producer.close(timeout=10)
    split = {k: p for k, p in acked_partitions.items() if len(p) != 1}
    check(not split, f"kafka-python: producer put keys on several partitions: {dict(list(split.items())[:5])}")
    mode = "idempotent" if IDEMPOTENT else "not idempotent"
    print(f"kafka-python: produced {args.n} records (acks=all, {mode}), all acknowledged")

    # Consume everything back.
    tps = [TopicPartition(args.topic, p) for p in partitions]
    consumer.assign(tps)
    want_total = args.n + args.other_n
    if MOCK_QUIRKS:
        # librdkafka 2.0's mock cluster writes four stray bytes after each partition of a
        # ListOffsets v4+ response, so a response for two or more partitions cannot be read
        # (see client/tests/golden.rs). Start at offset 0 without asking for it.
        for tp in tps:
            consumer.seek(tp, 0)
    else:
        consumer.seek_to_beginning(*tps)
        end_offsets = consumer.end_offsets(tps)
        total = sum(end_offsets.values())
        check(total == want_total, f"kafka-python: end offsets {end_offsets} add up to {total}, want {want_total}")
    records = []
    while len(records) < want_total:
        if time.monotonic() > deadline:
            raise Mismatch(f"kafka-python: read {len(records)} of {want_total} records before the {TIMEOUT_S:.0f}s timeout")
        for tp, batch in consumer.poll(timeout_ms=500).items():
            for r in batch:
                records.append(
                    (
                        tp.partition,
                        r.offset,
                        r.key.decode() if r.key is not None else None,
                        r.value.decode() if r.value is not None else None,
                        [(k, v.decode() if v is not None else None) for k, v in r.headers],
                    )
                )
    consumer.close()

    check(len(records) == want_total, f"kafka-python: read {len(records)} records, want {want_total}")
    check_dense_offsets("kafka-python", records)
    ours = [r for r in records if r[3].startswith(args.prefix + "-")]
    check_records(
        "kafka-python",
        ours,
        args.n,
        args.prefix,
        lambda i: [(k, v.decode()) for k, v in kafka_python_headers(i)],
        args.partitions,
    )
    if args.other_n:
        theirs = [r for r in records if r[3].startswith(args.other_prefix + "-")]
        check_records(
            f"kafka-python reading {args.other_prefix}'s records",
            theirs,
            args.other_n,
            args.other_prefix,
            lambda i: KCAT_HEADERS,
            args.partitions,
        )
    return 0


def txn_phases(n):
    """The transactions kafka-python-txn runs: (first record, count, commit)."""
    return [(0, n, True), (n, n, False), (2 * n, n, True)]


def txn_committed_values(n):
    return {value_of("txn", i) for start, count, commit in txn_phases(n) if commit for i in range(start, start + count)}


def kafka_python_txn(args):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    bootstrap = args.bootstrap.split(",")
    common = {"bootstrap_servers": bootstrap, "client_id": "franzy-interop-txn"}
    api_version = os.environ.get("KAFKA_PYTHON_API_VERSION")
    if api_version:
        common["api_version"] = tuple(int(x) for x in api_version.split("."))
    deadline = time.monotonic() + TIMEOUT_S
    timeout_ms = int(TIMEOUT_S * 1000)

    producer = KafkaProducer(
        transactional_id="franzy-interop-txn",
        acks="all",
        linger_ms=5,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        delivery_timeout_ms=timeout_ms + 1000,
        **common,
    )
    producer.init_transactions()
    for start, count, commit in txn_phases(args.n):
        producer.begin_transaction()
        futures = [
            producer.send(args.topic, key=key_of("txn", i).encode(), value=value_of("txn", i).encode())
            for i in range(start, start + count)
        ]
        producer.flush(timeout=max(1.0, deadline - time.monotonic()))
        for future in futures:
            future.get(timeout=max(1.0, deadline - time.monotonic()))
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
        print(f"kafka-python: transaction of records {start}..{start + count - 1} {'committed' if commit else 'aborted'}")
    producer.close(timeout=10)

    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=timeout_ms + 1000,
        fetch_max_wait_ms=200,
        **common,
    )
    partitions = sorted(consumer.partitions_for_topic(args.topic) or [])
    tps = [TopicPartition(args.topic, p) for p in partitions]
    consumer.assign(tps)
    if MOCK_QUIRKS:
        # The mock's ListOffsets answers for several partitions cannot be read (see the
        # kafka-python step): one partition per request.
        end_offsets = {}
        for tp in tps:
            consumer.seek(tp, 0)
            end_offsets.update(consumer.end_offsets([tp]))
    else:
        consumer.seek_to_beginning(*tps)
        end_offsets = consumer.end_offsets(tps)
    values = []
    while any(consumer.position(tp) < end_offsets[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise Mismatch(f"kafka-python read_committed: read {len(values)} records before the {TIMEOUT_S:.0f}s timeout")
        for _, batch in consumer.poll(timeout_ms=500).items():
            values.extend(r.value.decode() for r in batch)
    consumer.close()
    want = txn_committed_values(args.n)
    if MOCK_QUIRKS:
        # librdkafka's mock cluster lists no aborted transactions in its fetch answers, so
        # read_committed consumers see the aborted records too.
        want = {value_of("txn", i) for i in range(3 * args.n)}
        print("kafka-python read_committed: the mock reports no aborted transactions; expecting every record")
    check(len(values) == len(want), f"kafka-python read_committed: {len(values)} records, want {len(want)}")
    check(set(values) == want, f"kafka-python read_committed: records of the aborted transaction, or committed ones missing: {sorted(set(values) ^ want)[:5]}")
    print(f"kafka-python read_committed: exactly the {len(want)} records expected of {3 * args.n}")
    return 0


def txn_consumed(args):
    values = []
    with open(args.file) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            check(len(fields) == 4, f"kcat -C: unexpected line {line!r}")
            values.append(fields[3])
    if args.which == "committed" and not MOCK_QUIRKS:
        want = txn_committed_values(args.n)
    else:
        # (With the mock, read_committed sees the aborted records too: it lists no aborted
        # transactions in its fetch answers.)
        want = {value_of("txn", i) for i in range(3 * args.n)}
    check(len(values) == len(want), f"kcat ({args.which}): {len(values)} records, want {len(want)}")
    check(set(values) == want, f"kcat ({args.which}): unexpected or missing records: {sorted(set(values) ^ want)[:5]}")
    print(f"kcat ({args.which}): exactly {len(want)} records of the {3 * args.n} produced in transactions")
    return 0


def kafka_python_group(args):
    import threading

    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    bootstrap = args.bootstrap.split(",")
    common = {"bootstrap_servers": bootstrap}
    api_version = os.environ.get("KAFKA_PYTHON_API_VERSION")
    if api_version:
        common["api_version"] = tuple(int(x) for x in api_version.split("."))
    deadline = time.monotonic() + TIMEOUT_S
    timeout_ms = int(TIMEOUT_S * 1000)

    producer = KafkaProducer(
        acks="all", linger_ms=5, max_block_ms=timeout_ms, request_timeout_ms=timeout_ms,
        delivery_timeout_ms=timeout_ms + 1000,
        client_id="franzy-interop-group-producer", **common,
    )
    # Spread evenly over the partitions, so that every member has something to read.
    futures = [
        producer.send(args.topic, value=value_of(args.prefix, i).encode(), partition=i % args.partitions)
        for i in range(args.n)
    ]
    producer.flush(timeout=max(1.0, deadline - time.monotonic()))
    for future in futures:
        future.get(timeout=max(1.0, deadline - time.monotonic()))
    producer.close(timeout=10)
    print(f"kafka-python group: produced {args.n} records to {args.topic} ({args.partitions} partitions)")

    def consumer(name):
        return KafkaConsumer(
            args.topic,
            group_id=args.group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            fetch_max_wait_ms=200,
            request_timeout_ms=timeout_ms + 1000,
            # Three clients bootstrapping at once on a loaded 2-core machine: the 30 s
            # default ran out in CI.
            bootstrap_timeout_ms=timeout_ms,
            **common,
        )

    from kafka.errors import CommitFailedError, IllegalGenerationError, RebalanceInProgressError
    from kafka.errors import UnknownMemberIdError

    # A commit refused because the group is rebalancing (or the member's generation is
    # gone) is what Kafka answers while a leader rejoins; the member polls to finish the
    # rebalance and commits again (at-least-once, as a real application does).
    rebalancing = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError,
                   UnknownMemberIdError)

    def commit_until_done(c):
        while True:
            try:
                c.commit()
                return
            except rebalancing:
                if time.monotonic() > deadline:
                    raise
                c.poll(timeout_ms=200)

    lock = threading.Lock()
    seen = Counter()
    by_member = Counter()
    assigned = {}
    stop = threading.Event()
    errors = []

    def run(name):
        try:
            c = consumer(name)
            while not stop.is_set():
                batches = c.poll(timeout_ms=200)
                with lock:
                    for tp, records in batches.items():
                        for r in records:
                            seen[(tp.partition, r.offset, r.value.decode())] += 1
                            by_member[name] += 1
                    assigned[name] = sorted(tp.partition for tp in c.assignment())
                if batches:
                    try:
                        c.commit()
                    except rebalancing:
                        pass  # the next poll rejoins; these records are committed later
            commit_until_done(c)
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(f"{name}: {e!r}")
            stop.set()

    threads = [threading.Thread(target=run, args=(f"member-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        while True:
            with lock:
                distinct = len(seen)
                spread = all(assigned.get(f"member-{i}") for i in range(3))
            if errors or (distinct >= args.n and spread):
                break
            if time.monotonic() > deadline:
                raise Mismatch(f"kafka-python group: read {distinct} of {args.n} records before the {TIMEOUT_S:.0f}s timeout (assignments {assigned})")
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    check(not errors, f"kafka-python group: {errors}")
    values = {v for (_, _, v) in seen}
    missing = [i for i in range(args.n) if value_of(args.prefix, i) not in values]
    check(not missing, f"kafka-python group: {len(missing)} records lost, first {missing[:5]}")
    check(len(values) == args.n, f"kafka-python group: {len(values)} distinct values, want {args.n}")
    owners = sorted(sum((assigned[m] for m in assigned), []))
    check(owners == list(range(args.partitions)), f"kafka-python group: final assignment {assigned} does not cover each partition once")
    duplicates = sum(n - 1 for n in seen.values())
    print(f"kafka-python group: 3 members read all {args.n} records (per member {dict(by_member)}, "
          f"{duplicates} read twice across rebalances), final assignment {assigned}")

    # Everything was committed: a new member of the group starts at the committed offsets
    # and finds nothing to read, and the offsets are the end offsets.
    late = consumer("member-late")
    got = 0
    quiet_until = time.monotonic() + 5
    while time.monotonic() < quiet_until:
        for _, records in late.poll(timeout_ms=200).items():
            got += len(records)
        if not late.assignment():
            quiet_until = max(quiet_until, time.monotonic() + 1)
            check(time.monotonic() < deadline, "kafka-python group: the late member got no assignment")
    tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    ends = late.end_offsets(tps)
    committed = {tp: late.committed(tp) for tp in tps}
    late.close()
    check(got == 0, f"kafka-python group: a new member read {got} records again")
    check(all(committed[tp] == ends[tp] for tp in tps), f"kafka-python group: committed {committed}, end offsets {ends}")
    print(f"kafka-python group: a new member reads nothing; committed offsets are the end offsets {sorted(ends.values())}")
    return 0


def kcat_group_consumed(args):
    values = Counter()
    with open(args.file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            check(len(fields) == 3, f"kcat -G line {number}: {line!r} is not partition, offset, value")
            values[fields[2]] += 1
    missing = [i for i in range(args.n) if values[value_of(args.prefix, i)] == 0]
    check(not missing, f"kcat -G: {len(missing)} records not read, first {missing[:5]}")
    print(f"kcat -G: all {args.n} records read by a balanced consumer ({sum(values.values())} lines)")
    return 0


def kafka_python_admin(args):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    bootstrap = args.bootstrap.split(",")
    common = {"bootstrap_servers": bootstrap}
    api_version = os.environ.get("KAFKA_PYTHON_API_VERSION")
    if api_version:
        common["api_version"] = tuple(int(x) for x in api_version.split("."))
    deadline = time.monotonic() + TIMEOUT_S
    timeout_ms = int(TIMEOUT_S * 1000)
    admin = KafkaAdminClient(request_timeout_ms=timeout_ms, client_id="franzy-interop-admin", **common)
    who = "kafka-python admin"
    a, b, c = (f"{args.prefix}-{name}" for name in ("a", "b", "c"))
    group = f"{args.prefix}-group"
    broker_ids = sorted(x["broker_id"] for x in admin.describe_cluster()["brokers"])
    check(len(broker_ids) == args.brokers, f"{who}: {len(broker_ids)} brokers {broker_ids}, want {args.brokers}")

    def codes(result, key="topics"):
        return {t["name"]: t["error_code"] for t in result[key]}

    # Create topics: one with a config and replication factor 2, one with the defaults.
    created = admin.create_topics(
        {
            a: {"num_partitions": 3, "replication_factor": 2, "configs": {"retention.ms": "3600000"}},
            b: {"num_partitions": 2, "replication_factor": 1},
        }
    )
    check(codes(created) == {a: 0, b: 0}, f"{who}: create_topics answered {created}")
    by_name = {t["name"]: t for t in created["topics"]}
    check(
        (by_name[a]["num_partitions"], by_name[a]["replication_factor"]) == (3, 2),
        f"{who}: created {a} as {by_name[a]}, want 3 partitions, replication factor 2",
    )
    print(f"{who}: created {a} (3 partitions, replication 2, retention.ms) and {b} (2 partitions)")

    # A batch with one good topic, one that exists and one invalid name: each answered alone.
    bad = f"{args.prefix} bad/name"
    batch = admin.create_topics(
        {c: {"num_partitions": 1, "replication_factor": 1}, a: {"num_partitions": 1, "replication_factor": 1},
         bad: {"num_partitions": 1, "replication_factor": 1}},
        raise_errors=False,
    )
    want = {c: 0, a: 36, bad: 17}  # TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION
    check(codes(batch) == want, f"{who}: batch create answered {codes(batch)}, want {want}")
    print(f"{who}: batch create: {c} created, {a} TOPIC_ALREADY_EXISTS, {bad!r} INVALID_TOPIC_EXCEPTION")

    # List and describe.
    listed = set(admin.list_topics())
    check({a, b, c} <= listed, f"{who}: list_topics {sorted(listed)} lacks some of {a}, {b}, {c}")
    check(bad not in listed, f"{who}: the invalid topic {bad!r} was listed")
    described = {t["name"]: t for t in admin.describe_topics([a, b])}
    for name, partitions, replicas in ((a, 3, 2), (b, 2, 1)):
        t = described.get(name)
        check(t is not None and t["error_code"] == 0, f"{who}: describe_topics {name}: {t}")
        got = sorted(p["partition_index"] for p in t["partitions"])
        check(got == list(range(partitions)), f"{who}: {name} has partitions {got}, want 0..{partitions - 1}")
        for p in t["partitions"]:
            check(len(p["replica_nodes"]) == replicas, f"{who}: {name}/{p['partition_index']} replicas {p['replica_nodes']}, want {replicas}")
            check(p["leader_id"] in p["replica_nodes"], f"{who}: {name}/{p['partition_index']} leader {p['leader_id']} not a replica")
            check(set(p["replica_nodes"]) <= set(broker_ids), f"{who}: {name}/{p['partition_index']} replicas {p['replica_nodes']} not brokers")
    print(f"{who}: list_topics and describe_topics show {a} (3x2) and {b} (2x1)")

    # Configs: the topic's own value, and a broker's.
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, a)])
    modified = configs.get("topic", {}).get(a, {})
    entry = modified.get("retention.ms") or {}
    check(list(modified) == ["retention.ms"] and entry.get("value") == "3600000"
          and entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG",
          f"{who}: describe_configs {a} (modified only): {configs}, want retention.ms=3600000 set on the topic")
    broker = str(broker_ids[-1])
    broker_configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker)], config_filter="all")
    entries = broker_configs.get("broker", {}).get(broker, {})
    check(entries.get("broker.id", {}).get("value") == broker,
          f"{who}: describe_configs broker {broker}: broker.id is {entries.get('broker.id')}")
    print(f"{who}: describe_configs: {a} has retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG), broker {broker} {len(entries)} entries with its own broker.id")

    # More partitions; fewer is refused.
    grown = admin.create_partitions({b: 4})
    check([r.error_code for r in grown.results] == [0], f"{who}: create_partitions {b} to 4: {grown}")
    shrink = admin.create_partitions({b: 1}, raise_errors=False)
    check([r.error_code for r in shrink.results] == [37], f"{who}: shrinking {b} to 1 answered {shrink}, want INVALID_PARTITIONS")
    got = sorted(p["partition_index"] for p in admin.describe_topics([b])[0]["partitions"])
    check(got == [0, 1, 2, 3], f"{who}: {b} has partitions {got} after create_partitions, want 0..3")
    print(f"{who}: create_partitions: {b} grew to 4, shrinking to 1 refused (INVALID_PARTITIONS)")

    # A group: a kafka-python consumer reads what was produced to a and commits.
    n = 300
    producer = KafkaProducer(acks="all", max_block_ms=timeout_ms, request_timeout_ms=timeout_ms,
                             delivery_timeout_ms=timeout_ms + 1000, **common)
    futures = [producer.send(a, value=value_of(args.prefix, i).encode(), partition=i % 3) for i in range(n)]
    producer.flush(timeout=max(1.0, deadline - time.monotonic()))
    for future in futures:
        future.get(timeout=max(1.0, deadline - time.monotonic()))
    producer.close(timeout=10)
    consumer = KafkaConsumer(a, group_id=group, client_id=f"{args.prefix}-member", auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=200, session_timeout_ms=10000,
                             heartbeat_interval_ms=1000, request_timeout_ms=timeout_ms + 1000, **common)
    read = 0
    while read < n:
        check(time.monotonic() < deadline, f"{who}: the group's consumer read {read} of {n} records")
        for _, records in consumer.poll(timeout_ms=200).items():
            read += len(records)
    consumer.commit()
    tps = [TopicPartition(a, p) for p in range(3)]
    ends = consumer.end_offsets(tps)
    check(sum(ends.values()) == n, f"{who}: end offsets of {a} {ends}, want {n} in all")

    listed = {g["group_id"]: g for g in admin.list_groups()}
    check(group in listed, f"{who}: list_groups {sorted(listed)} lacks {group}")
    check((listed[group]["protocol_type"], listed[group]["group_state"]) == ("consumer", "Stable"),
          f"{who}: list_groups shows {listed[group]}, want a Stable consumer group")
    described = admin.describe_groups([group])[group]
    check(described.get("error") is None and described["group_state"] == "Stable",
          f"{who}: describe_groups {group} while its member runs: {described}")
    check(described["protocol_type"] == "consumer", f"{who}: {group} protocol type {described['protocol_type']!r}")
    members = described["members"]
    check(len(members) == 1 and members[0]["client_id"] == f"{args.prefix}-member",
          f"{who}: {group} members {members}")
    assigned = members[0]["member_assignment"]["assigned_partitions"]
    check([(x["topic"], sorted(x["partitions"])) for x in assigned] == [(a, [0, 1, 2])],
          f"{who}: {group}'s member is assigned {assigned}, want all of {a}")
    print(f"{who}: list_groups shows {group} Stable; describe_groups: one member {members[0]['client_id']} owning {a}/0..2")
    consumer.close()

    described = admin.describe_groups([group])[group]
    check(described["group_state"] == "Empty" and not described["members"],
          f"{who}: describe_groups {group} after its member left: {described}")
    offsets = admin.list_group_offsets({group: None})[group]
    got = {tp: o.offset for tp, o in offsets.items()}
    check(got == ends, f"{who}: list_group_offsets {group}: {got}, want the end offsets {ends}")
    print(f"{who}: after the member left: Empty; list_group_offsets are the end offsets {sorted(got.values())}")

    # Delete records below offset 40 of partition 0: its start moves there.
    tp0 = TopicPartition(a, 0)
    deleted = admin.delete_records({tp0: 40})
    low = deleted[tp0]["low_watermark"] if isinstance(deleted[tp0], dict) else deleted[tp0].low_watermark
    check(low == 40, f"{who}: delete_records {tp0} to 40 answered {deleted}")
    probe = KafkaConsumer(group_id=None, enable_auto_commit=False, request_timeout_ms=timeout_ms + 1000, **common)
    starts = probe.beginning_offsets(tps)
    probe.close()
    check(starts == {tps[0]: 40, tps[1]: 0, tps[2]: 0}, f"{who}: start offsets after delete_records {starts}")
    print(f"{who}: delete_records: {a}/0 starts at 40, the other partitions at 0")

    # Delete the topics; a missing one is answered alone.
    missing = f"{args.prefix}-missing"
    gone = admin.delete_topics([a, b, c, missing], raise_errors=False)
    want = {a: 0, b: 0, c: 0, missing: 3}  # UNKNOWN_TOPIC_OR_PARTITION
    check(codes(gone) == want, f"{who}: delete_topics answered {codes(gone)}, want {want}")
    left = {a, b, c} & set(admin.list_topics())
    check(not left, f"{who}: {sorted(left)} still listed after delete_topics")
    admin.close()
    print(f"{who}: delete_topics: {a}, {b}, {c} deleted, {missing} UNKNOWN_TOPIC_OR_PARTITION, none listed")
    return 0


def kafka_python_headers(i):
    return [("h1", b"v1"), ("seq", str(i).encode())]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("kcat-input")
    p.add_argument("n", type=int)
    p.add_argument("prefix")
    p.set_defaults(run=kcat_input)
    p = sub.add_parser("kcat-metadata")
    p.add_argument("file")
    p.add_argument("brokers", type=int)
    p.add_argument("topic")
    p.add_argument("partitions", type=int)
    p.set_defaults(run=kcat_metadata)
    p = sub.add_parser("kcat-consumed")
    p.add_argument("file")
    p.add_argument("n", type=int)
    p.add_argument("prefix")
    p.set_defaults(run=kcat_consumed)
    p = sub.add_parser("kafka-python-txn")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("n", type=int)
    p.set_defaults(run=kafka_python_txn)
    p = sub.add_parser("txn-consumed")
    p.add_argument("file")
    p.add_argument("n", type=int)
    p.add_argument("which", choices=["committed", "all"])
    p.set_defaults(run=txn_consumed)
    p = sub.add_parser("kafka-python")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("partitions", type=int)
    p.add_argument("brokers", type=int)
    p.add_argument("n", type=int)
    p.add_argument("prefix")
    p.add_argument("--other", nargs=2, metavar=("N", "PREFIX"), default=["0", ""])
    p.set_defaults(run=kafka_python)
    p = sub.add_parser("kafka-python-group")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("partitions", type=int)
    p.add_argument("n", type=int)
    p.add_argument("group")
    p.add_argument("--prefix", default="grp")
    p.set_defaults(run=kafka_python_group)
    p = sub.add_parser("kafka-python-admin")
    p.add_argument("bootstrap")
    p.add_argument("brokers", type=int)
    p.add_argument("prefix")
    p.set_defaults(run=kafka_python_admin)
    p = sub.add_parser("kcat-group-consumed")
    p.add_argument("file")
    p.add_argument("n", type=int)
    p.add_argument("prefix")
    p.set_defaults(run=kcat_group_consumed)
    args = parser.parse_args()
    if args.command == "kafka-python":
        args.other_n, args.other_prefix = int(args.other[0]), args.other[1]
    try:
        return args.run(args)
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
