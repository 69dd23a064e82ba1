#!/usr/bin/env bash
# franzy's KIP-848 consumer (group.protocol=consumer) against a KIP-848 coordinator we did
# not write: librdkafka 2.16's mock cluster, through the confluent-kafka wheel (which bundles
# librdkafka; tests/interop/kip848_mock.py). Two `franzy consume -G` members with
# `-X group.protocol=consumer` share a group on a 4-partition topic: both get partitions,
# and together they read every record exactly once (the one leaving first commits on its
# revocation, the other starts there). Their logs must show ConsumerGroupHeartbeat joins
# (epoch > 0), so that the mock really served the new protocol.
#
# usage: tests/interop/kip848_vs_mock.sh
# Environment: CARGO_TARGET_DIR (default: target), FRANZY_BIN (default: build it),
# CLIENT_TIMEOUT seconds (default 120).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
timeout_s="${CLIENT_TIMEOUT:-120}"
work="$(mktemp -d)"
mock_pid=""
members=()

cleanup() {
    local status=$?
    for pid in "${members[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    { exec 3>&-; } 2>/dev/null || true
    if [[ -n "$mock_pid" ]] && kill -0 "$mock_pid" 2>/dev/null; then
        sleep 0.5
        kill -KILL "$mock_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 ]]; then
        for log in "$work"/*.err; do
            [[ -s "$log" ]] || continue
            echo "kip848-vs-mock: last lines of $(basename "$log"):" >&2
            tail -n 15 "$log" >&2
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 -c 'import confluent_kafka' 2>/dev/null || {
    echo "kip848-vs-mock: FAIL: python3 has no confluent_kafka (python3 -m pip install -r tests/interop/requirements.txt)" >&2
    exit 1
}
echo "kip848-vs-mock: confluent-kafka $(python3 -c 'import confluent_kafka as c; print(c.version()[0], "librdkafka", c.libversion()[0])')"
franzy="${FRANZY_BIN:-}"
if [[ -z "$franzy" ]]; then
    (cd "$root" && cargo build -q --workspace --bins --examples)
    franzy="$target_dir/debug/franzy"
fi

mkfifo "$work/stdin"
python3 "$here/kip848_mock.py" 300 <"$work/stdin" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 300); do
    [[ $(wc -l <"$work/mock.out") -ge 2 ]] && break
    sleep 0.1
done
bootstrap="$(head -n1 "$work/mock.out" | tr -d '[:space:]')"
[[ "$bootstrap" =~ ^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+)*$ ]] || {
    echo "kip848-vs-mock: FAIL: the mock printed '$bootstrap', not a bootstrap address" >&2
    exit 1
}
echo "kip848-vs-mock: librdkafka mock cluster at $bootstrap, $(sed -n 2p "$work/mock.out")"

member() {
    RUST_LOG="${RUST_LOG:-franzy=info}" exec timeout "$timeout_s" "$franzy" consume \
        -b "$bootstrap" -t kip848 -G kip848-group -o beginning -X group.protocol=consumer "$@"
}
member >"$work/m1.out" 2>"$work/m1.err" &
members+=($!)
member >"$work/m2.out" 2>"$work/m2.err" &
members+=($!)
# Until both members joined and own partitions (the mock's heartbeat interval is 3 s).
for _ in $(seq 200); do
    if grep -q "joined the group" "$work/m1.err" && grep -q "joined the group" "$work/m2.err" \
        && grep -q "reconciling a new assignment" "$work/m1.err" \
        && grep -q "reconciling a new assignment" "$work/m2.err"; then
        break
    fi
    sleep 0.1
done
sleep 8
echo "during 200" >&3
for _ in $(seq 100); do
    grep -q "produced during" "$work/mock.out" && break
    sleep 0.1
done
sleep 6
kill -TERM "${members[@]}"
for pid in "${members[@]}"; do
    wait "$pid" || { echo "kip848-vs-mock: FAIL: a member exited $?" >&2; exit 1; }
done
members=()

for m in m1 m2; do
    # The new protocol, not the classic one: joined with a member epoch, no JoinGroup.
    grep -E "joined the group.*epoch=[1-9]" "$work/$m.err" >/dev/null || {
        echo "kip848-vs-mock: FAIL: $m never joined through ConsumerGroupHeartbeat" >&2
        exit 1
    }
done
expected=$( (seq -f "before-%g" 0 300; seq -f "during-%g" 1 200) | sort)
read_all=$(sort "$work/m1.out" "$work/m2.out")
missing=$(comm -23 <(echo "$expected") <(echo "$read_all" | sort -u) | wc -l)
twice=$(echo "$read_all" | uniq -d | wc -l)
n1=$(wc -l <"$work/m1.out")
n2=$(wc -l <"$work/m2.out")
echo "kip848-vs-mock: members read $n1 and $n2 records; $missing of 501 missing, $twice read twice"
if [[ "$missing" -ne 0 || "$twice" -ne 0 ]]; then
    echo "kip848-vs-mock: FAIL: the members did not read every record exactly once" >&2
    exit 1
fi
if [[ "$n1" -eq 0 || "$n2" -eq 0 ]]; then
    echo "kip848-vs-mock: FAIL: the members did not split the partitions" >&2
    exit 1
fi
echo "kip848-vs-mock: ok"
