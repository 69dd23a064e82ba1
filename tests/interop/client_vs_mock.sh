#!/usr/bin/env bash
# Our client against a broker we did not write: librdkafka's mock cluster (3 brokers, topic
# orders with 6 partitions). Runs the quickstart job against it: 100,000 keyed records with
# headers produced with acks=all, consumed back, each checked for key, value, headers,
# partition-by-key (Java's murmur2) and acknowledged offset.
#
# usage: tests/interop/client_vs_mock.sh
# Environment: CARGO_TARGET_DIR (default: target), CLIENT_TIMEOUT seconds (default 300).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
timeout_s="${CLIENT_TIMEOUT:-300}"
work="$(mktemp -d)"
mock_pid=""

cleanup() {
    local status=$?
    if [[ -n "$mock_pid" ]] && kill -0 "$mock_pid" 2>/dev/null; then
        kill -TERM "$mock_pid" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$mock_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s "$work/mock.err" ]]; then
        echo "client-vs-mock: last lines of the mock cluster's log:" >&2
        tail -n 20 "$work/mock.err" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mock="$("$here/build_mock_cluster.sh" "$target_dir/interop")"
# A debug build: it reuses what the tests already built, and speed is not the point here.
(cd "$root" && cargo build -q -p franzy-harness --example quickstart)
quickstart="$target_dir/debug/examples/quickstart"

# The mock serves until its stdin closes: hold it open with a fifo we never write.
mkfifo "$work/stdin"
"$mock" 3 orders:6 <"$work/stdin" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 100); do
    [[ -s "$work/mock.out" ]] && break
    sleep 0.1
done
bootstrap="$(head -n1 "$work/mock.out" | tr -d '[:space:]')"
[[ "$bootstrap" =~ ^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+)*$ ]] || {
    echo "client-vs-mock: FAIL: mock cluster printed '$bootstrap', not a bootstrap address" >&2
    exit 1
}
echo "client-vs-mock: librdkafka mock cluster at $bootstrap"
if ! timeout "$timeout_s" "$quickstart" --bootstrap "$bootstrap" | tee "$work/quickstart.out"; then
    echo "client-vs-mock: FAIL: franzy's quickstart job failed against the mock cluster" >&2
    exit 1
fi
# librdkafka's mock cluster implements InitProducerId and sequence checks: franzy's default
# (idempotent) producer must have used them.
if ! grep -q "idempotent: producer id" "$work/quickstart.out"; then
    echo "client-vs-mock: FAIL: the producer did not run idempotent against the mock cluster" >&2
    exit 1
fi
echo "client-vs-mock: ok"
# The group consumer against the mock's group coordinator, on a mock cluster of its own.
"$here/group_vs_mock.sh"
