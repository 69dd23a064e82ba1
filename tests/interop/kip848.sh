#!/usr/bin/env bash
# KIP-848 interop: confluent-kafka's consumers (librdkafka 2.16, group.protocol=consumer)
# against `franzy serve --brokers 3` (tests/interop/kip848.py does the checking):
#   - a 6-partition topic created with AdminClient.create_topics;
#   - three consumer-protocol members split the partitions, read N records exactly once with
#     synchronous commits, one leaves and the other two read the next N exactly once;
#   - a mixed group (twice: the classic consumer eager with range, then cooperative-sticky):
#     a group.protocol=classic consumer forms the group, a consumer-protocol
#     one joins (the harness upgrades the group, as Kafka 4.x's default migration policy
#     `bidirectional` does), both read; the consumer-protocol one leaves (the group is
#     downgraded to classic) and the classic one reads on alone;
#   - a regex subscription (^kip848-rx-.*), resolved by the broker, a topic created later
#     matched too;
#   - AdminClient.describe_consumer_groups on a KIP-848 group: type CONSUMER, its members
#     and assignments.
#
# usage: tests/interop/kip848.sh     (FRANZY_BIN: the franzy binary, default: built)
#        KIP848_MESSAGES: records per phase (default 600); INTEROP_TIMEOUT: seconds per wait
#        (default 120); KIP848_DEBUG: librdkafka debug contexts (e.g. cgrp)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${KIP848_MESSAGES:-600}"
export INTEROP_TIMEOUT="${INTEROP_TIMEOUT:-120}"
partitions=6
work="$(mktemp -d)"
server_pid=""

log() { echo "kip848: $*"; }
fail() {
    echo "kip848: FAIL: $*" >&2
    exit 1
}
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s "$work/server.err" ]]; then
        echo "kip848: last lines of the harness's log:" >&2
        tail -n 40 "$work/server.err" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 -c 'import confluent_kafka' 2>/dev/null ||
    fail "confluent-kafka not installed (python3 -m pip install -r tests/interop/requirements.txt)"
log "confluent-kafka $(python3 -c 'import confluent_kafka as c, importlib.metadata as m; print(m.version("confluent-kafka"), "with librdkafka", c.libversion()[0])')"

if [[ -z "${FRANZY_BIN:-}" ]]; then
    (cd "$root" && cargo build -q --workspace --bins --examples)
    FRANZY_BIN="$root/target/debug/franzy"
fi
# A heartbeat every 500 ms (Kafka's default is 5 s) so that reconciliation takes rounds of
# half a second; everything else is Kafka's default, the migration policy included.
"$FRANZY_BIN" serve --brokers 3 --group-consumer-heartbeat-interval 500ms \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
bootstrap=""
for _ in $(seq 300); do
    if [[ -s "$work/server.out" ]]; then
        bootstrap="$(head -n1 "$work/server.out")"
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "franzy serve exited: $(cat "$work/server.err")"
    sleep 0.1
done
[[ "$bootstrap" =~ ^[^,:]+:[0-9]+(,[^,:]+:[0-9]+)*$ ]] ||
    fail "no bootstrap address from franzy serve: '$bootstrap'"
log "cluster at $bootstrap"

step_timeout=$((INTEROP_TIMEOUT * 4 + 60))
for topic in kip848-consumers kip848-mixed-range kip848-mixed-cooperative-sticky kip848-describe; do
    timeout "$step_timeout" python3 "$here/kip848.py" topic "$bootstrap" "$topic" "$partitions" ||
        fail "creating $topic"
done

log "three group.protocol=consumer members, one leaves ($messages records per phase)"
timeout "$step_timeout" python3 "$here/kip848.py" consumers "$bootstrap" kip848-consumers \
    "$partitions" "$messages" kip848-group || fail "the consumer-protocol group step"

for strategy in range cooperative-sticky; do
    log "a mixed group: classic ($strategy) and consumer protocol members (upgrade, then downgrade)"
    timeout "$step_timeout" python3 "$here/kip848.py" mixed "$bootstrap" "kip848-mixed-$strategy" \
        "$partitions" "$messages" "kip848-mixed-$strategy" "$strategy" ||
        fail "the mixed group step ($strategy)"
done

log "a regex subscription resolved on the broker, a matching topic created later"
timeout "$step_timeout" python3 "$here/kip848.py" regex "$bootstrap" kip848-rx "$messages" \
    kip848-regex-group || fail "the regex step"

log "describe_consumer_groups on a KIP-848 group"
timeout "$step_timeout" python3 "$here/kip848.py" describe "$bootstrap" kip848-describe \
    "$partitions" kip848-describe-group || fail "the describe step"

log "all KIP-848 interop steps passed"
