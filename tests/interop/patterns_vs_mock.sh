#!/usr/bin/env bash
# franzy-patterns against a broker we did not write: the retry_topics lab (a group consumer,
# a retry topic whose delay is honoured by pausing the partition, dead letters read back with
# every header) against librdkafka's mock cluster (3 brokers; topics orders:3, orders.retry:1,
# orders.DLT:1). The patterns are client-side and must work with any broker.
#
# usage: tests/interop/patterns_vs_mock.sh
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
        echo "patterns-vs-mock: last lines of the mock cluster's log:" >&2
        tail -n 20 "$work/mock.err" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mock="$("$here/build_mock_cluster.sh" "$target_dir/interop")"
(cd "$root" && cargo build -q --workspace --bins --examples)
lab="$target_dir/debug/examples/retry_topics"

# The mock serves until its stdin closes: hold it open with a fifo we never write.
mkfifo "$work/stdin"
"$mock" 3 orders:3 orders.retry:1 orders.DLT:1 <"$work/stdin" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 100); do
    [[ -s "$work/mock.out" ]] && break
    sleep 0.1
done
bootstrap="$(head -n1 "$work/mock.out" | tr -d '[:space:]')"
[[ "$bootstrap" =~ ^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+)*$ ]] || {
    echo "patterns-vs-mock: FAIL: mock cluster printed '$bootstrap', not a bootstrap address" >&2
    exit 1
}
echo "patterns-vs-mock: librdkafka mock cluster at $bootstrap"
if ! timeout "$timeout_s" "$lab" -b "$bootstrap"; then
    echo "patterns-vs-mock: FAIL: the retry_topics lab failed against the mock cluster" >&2
    exit 1
fi
echo "patterns-vs-mock: ok"
