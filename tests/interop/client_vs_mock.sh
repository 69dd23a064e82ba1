#!/usr/bin/env bash
# Our client against a broker we did not write: librdkafka's mock cluster (3 brokers, topics
# orders with 6 partitions, transactions with 3 and admin with 4). Runs the quickstart job
# against it: 100,000 keyed records with headers produced with acks=all, consumed back, each
# checked for key, value, headers, partition-by-key (Java's murmur2) and acknowledged
# offset. Then
# franzy's transactional producer (`franzy produce -X transactional.id=...`) commits 1,000
# records in 4 transactions, and kcat with isolation.level=read_committed, and franzy's own
# read_committed consumer, read exactly those back. (The mock deviates from Kafka on aborted
# transactions, which it hands to read_committed readers, and on fencing: only what it does
# right is asserted here.) Last, franzy's Admin (client/examples/admin_vs_mock.rs) lists and
# describes topics, commits for a group and reads its lag, on topic admin (4 partitions).
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
(cd "$root" && cargo build -q --workspace --bins --examples)
quickstart="$target_dir/debug/examples/quickstart"
franzy="$target_dir/debug/franzy"
admin_vs_mock="$target_dir/debug/examples/admin_vs_mock"

# The mock serves until its stdin closes: hold it open with a fifo we never write.
mkfifo "$work/stdin"
"$mock" 3 orders:6 transactions:3 admin:4 <"$work/stdin" >"$work/mock.out" 2>"$work/mock.err" &
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

# Transactions: 1,000 keyed records committed in 4 transactions of 250 (every partition in
# each), read back by kcat and by franzy with read_committed: exactly those, each once.
seq 1 1000 | sed 's/^/k/; s/$/:/' | paste -d '' - <(seq 1 1000) >"$work/txn.in"
if ! timeout "$timeout_s" "$franzy" produce -b "$bootstrap" -t transactions -K : \
    -X transactional.id=client-vs-mock --txn-records 250 <"$work/txn.in" 2>"$work/txn.err"; then
    cat "$work/txn.err" >&2
    echo "client-vs-mock: FAIL: franzy's transactional producer failed against the mock cluster" >&2
    exit 1
fi
grep -q "1000 records committed in 4 transactions" "$work/txn.err" || {
    cat "$work/txn.err" >&2
    echo "client-vs-mock: FAIL: the transactional producer did not report 4 commits" >&2
    exit 1
}
seq 1 1000 >"$work/txn.expected"
timeout 60 kcat -C -b "$bootstrap" -t transactions -X isolation.level=read_committed -e -q \
    -f '%s\n' | sort -n >"$work/txn.kcat"
if ! diff -q "$work/txn.expected" "$work/txn.kcat" >/dev/null; then
    echo "client-vs-mock: FAIL: kcat (read_committed) read $(wc -l <"$work/txn.kcat") records, not the 1000 committed" >&2
    exit 1
fi
timeout 60 "$franzy" consume -b "$bootstrap" -t transactions -X isolation.level=read_committed -e \
    2>/dev/null | sort -n >"$work/txn.franzy"
if ! diff -q "$work/txn.expected" "$work/txn.franzy" >/dev/null; then
    echo "client-vs-mock: FAIL: franzy (read_committed) read $(wc -l <"$work/txn.franzy") records, not the 1000 committed" >&2
    exit 1
fi
echo "client-vs-mock: transactions: 1000 records committed in 4 transactions, read back by kcat and franzy with read_committed"

# franzy's Admin: topics, the cluster, groups, committed offsets and lag, each answer checked;
# what the mock does not serve is skipped with a note (client/examples/admin_vs_mock.rs).
if ! timeout "$timeout_s" "$admin_vs_mock" "$bootstrap" admin 4; then
    echo "client-vs-mock: FAIL: franzy's Admin against the mock cluster" >&2
    exit 1
fi
echo "client-vs-mock: ok"
# The group consumer against the mock's group coordinator, on a mock cluster of its own.
"$here/group_vs_mock.sh"
