#!/usr/bin/env python3
"""The control plane's acceptance (control_plane.sh): kafka-python produces through a broker
restart that this script drives over `franzy serve --control`'s HTTP endpoint.

usage: control_plane.py BOOTSTRAP CONTROL_URL TOPIC N OUT_VALUES

Sends N records (acks=all, idempotent) with values cp-0 .. cp-(N-1), one a millisecond or
so; after the first fifth, stops broker 1 through POST /brokers/1/stop, waits 3 s, and
starts it again (POST /brokers/1/start). Every record must be acknowledged. Also checks
GET /brokers and GET /requests?api=Produce&broker=... Writes the values it sent to
OUT_VALUES, one a line, for the kcat read-back. Exits non-zero with a message on failure.
"""

import json
import sys
import threading
import time
import urllib.request

from kafka import KafkaProducer


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read().decode())


def fail(message):
    print(f"control_plane: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, control, topic, count, out = sys.argv[1:6]
    count = int(count)
    brokers = call(f"{control}/brokers")
    if [b["id"] for b in brokers] != [0, 1, 2] or not all(b["up"] for b in brokers):
        fail(f"GET /brokers: {brokers}")
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        retries=1_000_000,
        retry_backoff_ms=100,
        request_timeout_ms=5000,
        max_block_ms=60_000,
    )
    outage = {}

    def nemesis():
        outage["stopped"] = time.monotonic()
        call(f"{control}/brokers/1/stop", "POST")
        down = call(f"{control}/brokers")
        outage["down_seen"] = not next(b for b in down if b["id"] == 1)["up"]
        time.sleep(3)
        call(f"{control}/brokers/1/start", "POST")
        outage["started"] = time.monotonic()

    thread = threading.Thread(target=nemesis)
    futures = []
    for i in range(count):
        if i == count // 5:
            thread.start()
        futures.append(producer.send(topic, key=f"k{i % 97}".encode(), value=f"cp-{i}".encode()))
        time.sleep(0.001)
    producer.flush(timeout=120)
    thread.join(timeout=30)
    if "started" not in outage or not outage.get("down_seen"):
        fail(f"the broker restart did not happen as planned: {outage}")
    acked = 0
    for i, future in enumerate(futures):
        try:
            future.get(timeout=120)
            acked += 1
        except Exception as error:  # noqa: BLE001 - report any failure
            fail(f"record cp-{i} was not acknowledged: {error!r}")
    producer.close()
    print(f"control_plane: {acked} of {count} records acknowledged through a 3 s stop of broker 1")
    produce_on_1 = call(f"{control}/requests?api=Produce&broker=1")
    if not produce_on_1 or any(r["api"] != "Produce" or r["broker"] != 1 for r in produce_on_1):
        fail(f"GET /requests filtered by api and broker: {produce_on_1[:3]}")
    since = max(r["at_ms"] for r in produce_on_1)
    later = call(f"{control}/requests?since={since}")
    if any(r["at_ms"] < since for r in later):
        fail("GET /requests?since= returned older requests")
    with open(out, "w") as values:
        for i in range(count):
            values.write(f"cp-{i}\n")


if __name__ == "__main__":
    main()
