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
(cd "$root" && cargo build -q --workspace --bins --examples)
group_split="$target_dir/debug/examples/group_split"
franzy="$target_dir/debug/franzy"
rebalancing="$target_dir/debug/examples/rebalancing"

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
for strategy in ${STRATEGIES:-range roundrobin sticky cooperative-sticky}; do
    echo "group-vs-mock: two members, $strategy"
    if ! timeout "$timeout_s" "$group_split" "$bootstrap" orders 2000 "$strategy"; then
        echo "group-vs-mock: FAIL: two group members did not split the topic ($strategy)" >&2
        exit 1
    fi
done

# The rebalancing lab: records flowing, consumers 2 -> 3 -> 2, eager and cooperative; no
# record lost, duplicates only within the at-least-once window. (The mock refuses commits
# and LeaveGroup while it rebalances, where Kafka accepts them: the window is wider here.)
echo "group-vs-mock: the rebalancing lab"
if ! timeout "$timeout_s" "$rebalancing" --bootstrap "$bootstrap"; then
    echo "group-vs-mock: FAIL: the rebalancing lab lost records" >&2
    exit 1
fi

# The CLI: two `franzy consume -G` members share a group; SIGTERM commits and leaves; a
# third member of the group then starts from what was committed. Every record must come
# out of one of them (at least once: a commit refused during the rebalance the first
# leaver starts means re-reading, never losing).
echo "group-vs-mock: franzy consume -G"
cli() { exec "$franzy" consume -b "$bootstrap" -t cli -G cli-group -X heartbeat.interval.ms=300 -X session.timeout.ms=6000 "$@"; }
seq -f "before-%g" 1 300 | "$franzy" produce -b "$bootstrap" -t cli >/dev/null
cli >"$work/c1.out" 2>"$work/c1.err" &
c1=$!
cli >"$work/c2.out" 2>"$work/c2.err" &
c2=$!
sleep 6
seq -f "during-%g" 1 100 | "$franzy" produce -b "$bootstrap" -t cli >/dev/null
sleep 2
kill -TERM "$c1" "$c2"
wait "$c1" || { echo "group-vs-mock: FAIL: the first member exited $?" >&2; exit 1; }
wait "$c2" || { echo "group-vs-mock: FAIL: the second member exited $?" >&2; exit 1; }
seq -f "after-%g" 1 10 | "$franzy" produce -b "$bootstrap" -t cli >/dev/null
timeout 60 "$franzy" consume -b "$bootstrap" -t cli -G cli-group -e -X session.timeout.ms=6000 \
    >"$work/c3.out" 2>"$work/c3.err" || {
    echo "group-vs-mock: FAIL: the third member did not reach the end" >&2
    tail -n 5 "$work/c3.err" >&2
    exit 1
}
sort -u "$work/c1.out" "$work/c2.out" "$work/c3.out" >"$work/all.out"
expected=$( (seq -f "before-%g" 1 300; seq -f "during-%g" 1 100; seq -f "after-%g" 1 10) | sort -u)
missing=$(comm -23 <(echo "$expected") "$work/all.out" | wc -l)
third=$(wc -l <"$work/c3.out")
echo "group-vs-mock: members read $(wc -l <"$work/c1.out") and $(wc -l <"$work/c2.out"), the next one $third; $missing of 410 missing"
if [[ "$missing" -ne 0 ]]; then
    echo "group-vs-mock: FAIL: $missing records were never read" >&2
    exit 1
fi
if [[ "$third" -ge 410 ]]; then
    echo "group-vs-mock: FAIL: the third member re-read everything: nothing was committed" >&2
    exit 1
fi
echo "group-vs-mock: ok"
