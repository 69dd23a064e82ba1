#!/usr/bin/env bash
# franzy's group consumer against a group coordinator we did not write: librdkafka's mock
# cluster (3 brokers, topic orders with 6 partitions). Two members of one group split the
# partitions and together read every record produced, once per assignment strategy
# (client/examples/group_split.rs checks it).
#
# usage: tests/interop/group_vs_mock.sh
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
        echo "group-vs-mock: last lines of the mock cluster's log:" >&2
        tail -n 20 "$work/mock.err" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mock="$("$here/build_mock_cluster.sh" "$target_dir/interop")"
(cd "$root" && cargo build -q -p franzy --example group_split)
group_split="$target_dir/debug/examples/group_split"

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
    echo "group-vs-mock: FAIL: mock cluster printed '$bootstrap', not a bootstrap address" >&2
    exit 1
}
echo "group-vs-mock: librdkafka mock cluster at $bootstrap"
for strategy in range roundrobin sticky cooperative-sticky; do
    echo "group-vs-mock: two members, $strategy"
    if ! timeout "$timeout_s" "$group_split" "$bootstrap" orders 2000 "$strategy"; then
        echo "group-vs-mock: FAIL: two group members did not split the topic ($strategy)" >&2
        exit 1
    fi
done
echo "group-vs-mock: ok"
