#!/usr/bin/env bash
# Produce and consume throughput of franzy and of librdkafka (through the rdkafka crate), on
# the same workload, against the same brokers, in one run; prints a table of the medians.
#
# usage: bench/run.sh
#
# Brokers, each with 3 brokers on loopback:
#   embedded  `franzy bench` without -b: a harness cluster inside the benchmark's own process
#             (franzy only: librdkafka cannot reach into that process)
#   harness   `franzy serve` (release build), a separate process
#   mock      librdkafka's mock cluster (tests/interop/mock_cluster.c), a separate process
#
# Workload (the issue's): BENCH_COUNT records of BENCH_SIZE bytes, acks=all, linger 5 ms,
# batch.size 16384, one producer, to topic `bench` (6 partitions), partitions taken in turn
# one batch's worth of records at a time. Consume: BENCH_COUNT records from the beginning of
# topic `consume` (32 partitions), filled beforehand with twice as many by an untimed franzy
# produce run, so that no consumer runs into the end of a partition (where a fetch waits up
# to fetch.max.wait.ms; librdkafka then stalled half a second in some runs). The mock keeps
# only the newest ~5 MB of each partition, so 6 partitions could not hold a million 100-byte
# records; 32 hold about 1.5 million, and the harness gets the same topic for equal work.
# Settings are the same on both sides: franzy's defaults, passed to librdkafka by name
# (bench/src/main.rs), except librdkafka's consumer queue bound `queued.min.messages`, raised
# to 1,000,000 in librdkafka's favour (see CONSUMER_DEFAULTS there); the row
# "librdkafka-q100k" is librdkafka's consumer with its default of 100,000.
# Group consume: the same read as consume, by a consumer subscribed as the only member of a
# fresh consumer group (`franzy bench consume -G`, `rdkafka-bench consume --group`): the
# group coordinator assigns it every partition, it starts at the beginning and commits
# automatically every 5 s (both clients' defaults). The clock starts at the first record.
#
# Environment:
#   BENCH_COUNT    records per run (default 1000000)
#   BENCH_SIZE     value bytes (default 100)
#   BENCH_RUNS     runs of each measurement; the table shows the median (default 3)
#   BENCH_TIMEOUT  seconds allowed for each run (default 180)
#   BENCH_ONLY     space-separated subset of "embedded harness mock" (default all three)
#   BENCH_KINDS    space-separated subset of "produce consume group" (default all three)
#   BENCH_RDKAFKA  which librdkafka measures: "system" (the system's, through rdkafka-bench,
#                  rows "librdkafka"), "bundled" (the one rdkafka-sys bundles, built from
#                  source by bench/bundled, rows "librdkafka-bundled"), or "both"
#                  (default "system")
#
# Needs cargo, gcc, pkg-config and librdkafka-dev (apt-get install librdkafka-dev); the
# bundled build also needs make and perl. The mock cluster is always the system library's.
set -euo pipefail

[[ -x /usr/bin/time ]] || {
    echo "bench: needs /usr/bin/time (apt-get install time)" >&2
    exit 2
}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
count="${BENCH_COUNT:-1000000}"
size="${BENCH_SIZE:-100}"
runs="${BENCH_RUNS:-3}"
run_timeout="${BENCH_TIMEOUT:-180}"
only="${BENCH_ONLY:-embedded harness mock}"
kinds="${BENCH_KINDS:-produce consume group}"
which_rdkafka="${BENCH_RDKAFKA:-system}"
case "$which_rdkafka" in
system | bundled | both) ;;
*)
    echo "bench: BENCH_RDKAFKA must be system, bundled or both, not $which_rdkafka" >&2
    exit 2
    ;;
esac
work="$(mktemp -d)"
broker_pid=""
results="$work/results.tsv"

log() { echo "bench: $*" >&2; }
fail() {
    echo "bench: FAIL: $*" >&2
    exit 1
}

stop_broker() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$broker_pid" 2>/dev/null && kill -KILL "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null || true
    fi
    broker_pid=""
    exec 4>&- 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop_broker
    if [[ $status -ne 0 && -s "$work/broker.err" ]]; then
        echo "bench: last lines of the broker's log:" >&2
        tail -n 20 "$work/broker.err" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Build ------------------------------------------------------------------------------------

log "building franzy (release)"
(cd "$root" && cargo build --quiet --release --bin franzy)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
franzy="$target_dir/release/franzy"
rdkafka=""
bundled=""
if [[ "$which_rdkafka" != bundled ]]; then
    log "building rdkafka-bench (release, system librdkafka $(pkg-config --modversion rdkafka))"
    (cd "$here" && CARGO_TARGET_DIR="$here/target" cargo build --quiet --release)
    rdkafka="$here/target/release/rdkafka-bench"
fi
if [[ "$which_rdkafka" != system ]]; then
    log "building rdkafka-bench-bundled (release, librdkafka built from rdkafka-sys's sources)"
    (cd "$here/bundled" && CARGO_TARGET_DIR="$here/bundled/target" cargo build --quiet --release)
    bundled="$here/bundled/target/release/rdkafka-bench-bundled"
fi
log "building the mock cluster"
mock="$("$root/tests/interop/build_mock_cluster.sh" "$work")"

# --- Measuring ----------------------------------------------------------------------------------

# measure BROKER CLIENT KIND COMMAND...: runs COMMAND, keeps its "records/s" figure, and the
# client process's CPU time (user + system, from /usr/bin/time, so whole-process: setup
# included) and peak resident set.
measure() {
    local broker="$1" client="$2" kind="$3"
    shift 3
    local out
    if ! out="$(timeout "$run_timeout" /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" 2>"$work/client.err")"; then
        cat "$work/client.err" >&2
        fail "$broker/$client $kind failed or took over ${run_timeout}s: $*"
    fi
    local rate user sys maxrss
    rate="$(grep -oE '[0-9]+ records/s' <<<"$out" | head -n1 | cut -d' ' -f1)"
    [[ -n "$rate" ]] || fail "$broker/$client $kind printed no rate: $out"
    read -r user sys maxrss <"$work/time"
    log "$broker $client $kind: $(head -n1 <<<"$out") (CPU ${user}+${sys} s, peak RSS ${maxrss} KiB)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$broker" "$client" "$kind" "$rate" \
        "$(python3 -c "print($user + $sys)")" "$maxrss" >>"$results"
}

start_broker() {
    local kind="$1"
    shift
    mkfifo "$work/broker.in"
    exec 4<>"$work/broker.in"
    "$@" <"$work/broker.in" >"$work/broker.out" 2>"$work/broker.err" &
    broker_pid=$!
    rm -f "$work/broker.in"
    bootstrap=""
    for _ in $(seq 300); do
        if [[ -s "$work/broker.out" ]]; then
            bootstrap="$(head -n1 "$work/broker.out" | tr -d '[:space:]')"
            [[ -n "$bootstrap" ]] && break
        fi
        kill -0 "$broker_pid" 2>/dev/null || fail "$kind exited: $(cat "$work/broker.err")"
        sleep 0.1
    done
    [[ "$bootstrap" =~ ^[^,:]+:[0-9]+(,[^,:]+:[0-9]+)*$ ]] || fail "$kind printed no address"
    log "$kind up at $bootstrap"
}

common=(--count "$count" --size "$size")

# wanted KIND: whether BENCH_KINDS includes KIND.
wanted() { [[ " $kinds " == *" $1 "* ]]; }

if [[ " $only " == *" embedded "* ]]; then
    for _ in $(seq "$runs"); do
        wanted produce || break
        measure embedded franzy produce "$franzy" bench produce -t bench "${common[@]}"
    done
    for _ in $(seq "$runs"); do
        wanted consume || break
        measure embedded franzy consume "$franzy" bench consume -t consume --partitions 32 "${common[@]}"
    done
    for run in $(seq "$runs"); do
        wanted group || break
        measure embedded franzy group "$franzy" bench consume -t consume --partitions 32 \
            "${common[@]}" -G "franzy-bench-$run"
    done
fi

for broker in harness mock; do
    [[ " $only " == *" $broker "* ]] || continue
    case "$broker" in
    harness) start_broker harness "$franzy" serve --brokers 3 --topic bench:6 --topic consume:32 --topic wide:1000 ;;
    mock) start_broker mock "$mock" 3 bench:6 consume:32 ;;
    esac
    for _ in $(seq "$runs"); do
        wanted produce || break
        measure "$broker" franzy produce "$franzy" bench produce -b "$bootstrap" -t bench "${common[@]}"
        if [[ -n "$rdkafka" ]]; then
            measure "$broker" librdkafka produce "$rdkafka" produce -b "$bootstrap" -t bench "${common[@]}"
        fi
        if [[ -n "$bundled" ]]; then
            measure "$broker" librdkafka-bundled produce "$bundled" produce -b "$bootstrap" -t bench "${common[@]}"
        fi
    done
    if [[ "$broker" == harness ]]; then
        # Client memory: idle, and per 1,000 assigned partitions (topic wide, one record each).
        timeout "$run_timeout" "$franzy" bench produce -b "$bootstrap" -t wide --count 1000 \
            --size "$size" -X linger.ms=0 >/dev/null
        memory_line="$(timeout "$run_timeout" "$franzy" bench memory -b "$bootstrap" -t wide)" ||
            fail "franzy bench memory failed"
        log "$memory_line"
        echo "$memory_line" >"$work/memory"
    fi
    if ! wanted consume && ! wanted group; then
        stop_broker
        continue
    fi
    log "$broker: filling topic consume (untimed)"
    timeout "$run_timeout" "$franzy" bench produce -b "$bootstrap" -t consume \
        --count "$((2 * count))" --size "$size" >/dev/null
    for run in $(seq "$runs"); do
        if wanted group; then
            # A fresh group each time, so that every run reads from the beginning.
            measure "$broker" franzy group "$franzy" bench consume -b "$bootstrap" -t consume \
                "${common[@]}" -G "franzy-bench-$run"
            if [[ -n "$rdkafka" ]]; then
                measure "$broker" librdkafka group "$rdkafka" consume -b "$bootstrap" -t consume \
                    "${common[@]}" --group "rdkafka-bench-$run"
            fi
            if [[ -n "$bundled" ]]; then
                measure "$broker" librdkafka-bundled group "$bundled" consume -b "$bootstrap" \
                    -t consume "${common[@]}" --group "rdkafka-bundled-bench-$run"
            fi
        fi
        wanted consume || continue
        measure "$broker" franzy consume "$franzy" bench consume -b "$bootstrap" -t consume "${common[@]}"
        if [[ -n "$rdkafka" ]]; then
            measure "$broker" librdkafka consume "$rdkafka" consume -b "$bootstrap" -t consume "${common[@]}"
            measure "$broker" librdkafka-q100k consume "$rdkafka" consume -b "$bootstrap" -t consume \
                "${common[@]}" -X queued.min.messages=100000
        fi
        if [[ -n "$bundled" ]]; then
            measure "$broker" librdkafka-bundled consume "$bundled" consume -b "$bootstrap" -t consume "${common[@]}"
        fi
    done
    stop_broker
done

# --- Table --------------------------------------------------------------------------------------

python3 - "$results" "$count" "$size" "$runs" "$work/memory" <<'EOF'
import os
import statistics
import sys

path, count, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
memory = sys.argv[5]
rates, cpu, rss = {}, {}, {}
for line in open(path):
    broker, client, kind, rate, seconds, maxrss = line.rstrip("\n").split("\t")
    rates.setdefault((broker, client, kind), []).append(int(rate))
    cpu.setdefault((broker, client, kind), []).append(float(seconds))
    rss.setdefault((broker, client, kind), []).append(int(maxrss))

def cell(key):
    values = rates.get(key)
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f}"

def runs_of(key):
    values = rates.get(key)
    return " / ".join(f"{v:,}" for v in values) if values else "-"

print()
print(f"{count:,} records of {size} bytes, acks=all, linger.ms=5, batch.size=16384; "
      f"median of {runs} runs, records/s")
print()
print(f"| {'broker':<9} | {'client':<18} | {'produce':>10} | {'consume':>10} | "
      f"{'group consume':>13} | consume/produce |")
print(f"|{'-' * 11}|{'-' * 20}|{'-' * 12}|{'-' * 12}|{'-' * 15}|{'-' * 17}|")
for broker in ("embedded", "harness", "mock"):
    for client in ("franzy", "librdkafka", "librdkafka-q100k", "librdkafka-bundled"):
        p, c = rates.get((broker, client, "produce")), rates.get((broker, client, "consume"))
        g = rates.get((broker, client, "group"))
        if not p and not c and not g:
            continue
        ratio = f"{statistics.median(c) / statistics.median(p):.2f}" if p and c else "-"
        print(f"| {broker:<9} | {client:<18} | {cell((broker, client, 'produce')):>10} | "
              f"{cell((broker, client, 'consume')):>10} | {cell((broker, client, 'group')):>13} | "
              f"{ratio:>15} |")
print()
for client in ("librdkafka", "librdkafka-bundled"):
    p, m = rates.get(("harness", client, "produce")), rates.get(("mock", client, "produce"))
    if p and m:
        ratio = statistics.median(p) / statistics.median(m)
        print(f"{client} produce, harness / mock: {ratio:.2f}")
print()
print("client process CPU (user + system) per million records, and peak RSS; median of runs")
print()
print(f"| {'broker':<9} | {'client':<18} | {'kind':<8} | {'CPU s/M':>8} | {'peak RSS MiB':>12} |")
print(f"|{'-' * 11}|{'-' * 20}|{'-' * 10}|{'-' * 10}|{'-' * 14}|")
for key in sorted(cpu):
    if key[0] == "embedded":
        continue  # the broker runs in the same process: not the client's CPU
    per_million = statistics.median(cpu[key]) / count * 1e6
    print(f"| {key[0]:<9} | {key[1]:<18} | {key[2]:<8} | {per_million:>8.2f} | "
          f"{statistics.median(rss[key]) / 1024:>12.1f} |")
for broker in ("harness", "mock"):
    for kind in ("produce", "consume", "group"):
        f, l = cpu.get((broker, "franzy", kind)), cpu.get((broker, "librdkafka", kind))
        if f and l:
            print(f"{broker} {kind}: franzy's CPU per record is "
                  f"{statistics.median(f) / statistics.median(l):.2f}x librdkafka's; rate "
                  f"{statistics.median(rates[(broker, 'franzy', kind)]) / statistics.median(rates[(broker, 'librdkafka', kind)]):.2f}x")
if os.path.exists(memory):
    print()
    print(open(memory).read().strip())
print()
print("every run (records/s):")
for key in sorted(rates):
    print(f"  {key[0]:<9} {key[1]:<18} {key[2]:<8} {runs_of(key)}")
EOF
