#!/usr/bin/env bash
# What client statistics cost: `franzy bench produce` with and without
# `--stats-interval-ms 1000` (a statistics callback every second that renders the snapshot
# as JSON, as a librdkafka stats_cb would), against one `franzy serve` (3 brokers, release
# build) in a separate process, so that only the client is measured.
#
# usage: bench/stats_overhead.sh
#
# Two measures, because a shared machine makes wall-clock throughput noisy:
#   throughput  STATS_RUNS pairs of runs, off and on alternating, so that drift in the
#               machine's load hits both alike; prints each run and the medians.
#   callgrind   (STATS_CALLGRIND=1) instructions the client process executes for the same
#               produce, off and on, under valgrind --tool=callgrind: independent of load.
#               Under valgrind the run lasts far longer than a second, so it takes many
#               more snapshots than at full speed: the difference it shows is an upper
#               bound.
#
# Environment: STATS_COUNT records per run (default 1000000; callgrind: 200000),
# STATS_SIZE value bytes (default 100), STATS_RUNS pairs (default 5), STATS_CALLGRIND.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
callgrind="${STATS_CALLGRIND:-0}"
if [[ "$callgrind" == 1 ]]; then
    count="${STATS_COUNT:-200000}"
else
    count="${STATS_COUNT:-1000000}"
fi
size="${STATS_SIZE:-100}"
runs="${STATS_RUNS:-5}"
work="$(mktemp -d)"
broker_pid=""

cleanup() {
    if [[ -n "$broker_pid" ]]; then
        exec 4>&- || true
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && cargo build --quiet --release --bin franzy)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
franzy="$target_dir/release/franzy"

# `franzy serve` prints its bootstrap address, and stops when its input ends.
mkfifo "$work/serve.in"
exec 4<>"$work/serve.in"
"$franzy" serve --brokers 3 --topic bench:6 <"$work/serve.in" >"$work/serve.out" 2>"$work/serve.err" &
broker_pid=$!
bootstrap=""
for _ in $(seq 300); do
    [[ -s "$work/serve.out" ]] && bootstrap="$(head -n1 "$work/serve.out" | tr -d '[:space:]')"
    [[ -n "$bootstrap" ]] && break
    sleep 0.1
done
[[ -n "$bootstrap" ]] || {
    echo "stats_overhead: franzy serve printed no address: $(cat "$work/serve.err")" >&2
    exit 1
}
echo "stats_overhead: franzy serve at $bootstrap; $count records of $size bytes" >&2

bench=("$franzy" bench produce -b "$bootstrap" -t bench --count "$count" --size "$size")

if [[ "$callgrind" == 1 ]]; then
    command -v valgrind >/dev/null || {
        echo "stats_overhead: needs valgrind (apt-get install valgrind)" >&2
        exit 2
    }
    for mode in off on; do
        extra=()
        [[ "$mode" == on ]] && extra=(--stats-interval-ms 1000)
        valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$mode" \
            "${bench[@]}" "${extra[@]}" >"$work/out.$mode" 2>"$work/err.$mode"
        instructions="$(grep -E '^(summary|totals):' "$work/callgrind.$mode" | head -n1 | awk '{print $2}')"
        echo "$mode $instructions"
        grep -E '^client stats' "$work/out.$mode" >&2 || true
    done | awk '
        { n[$1] = $2; print $1 ": " $2 " instructions" }
        END { printf "statistics on: %+.2f%% instructions\n", (n["on"] - n["off"]) * 100 / n["off"] }'
    exit 0
fi

for i in $(seq "$runs"); do
    for mode in off on; do
        extra=()
        [[ "$mode" == on ]] && extra=(--stats-interval-ms 1000)
        rate="$("${bench[@]}" "${extra[@]}" | sed -n 's/.*s: \([0-9]*\) records\/s.*/\1/p')"
        echo "$mode $rate"
        echo "stats_overhead: run $i $mode: $rate records/s" >&2
    done
done | sort -k1,1 -k2,2n | awk '
    { rates[$1] = rates[$1] " " $2; count[$1]++ }
    END {
        for (mode in rates) {
            split(substr(rates[mode], 2), r, " ")
            median[mode] = r[int((count[mode] + 1) / 2)]
            print mode ": median " median[mode] " records/s of" rates[mode]
        }
        printf "statistics on: %+.2f%% throughput (medians)\n", (median["on"] - median["off"]) * 100 / median["off"]
    }'
