#!/usr/bin/env bash
# Security interop: real clients we did not write against `franzy serve`'s secured
# listeners, trusting the CA the harness generated and printed (`ca: PATH`).
#
#   kcat (librdkafka)  SASL_SSL, SCRAM-SHA-512: produce and consume INTEROP_MESSAGES records
#   kafka-python       SASL_SSL, PLAIN: the same
#
# Environment: FRANZY_BIN (default: built with cargo), INTEROP_MESSAGES (default 1000),
# INTEROP_TIMEOUT (seconds per step, default 120). Exits non-zero with a FAIL line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${INTEROP_MESSAGES:-1000}"
step_timeout="${INTEROP_TIMEOUT:-120}"
work="$(mktemp -d)"
broker_pid=""

log() { echo "interop-security: $*"; }
fail() {
    echo "interop-security: FAIL: $*" >&2
    exit 1
}
cleanup() {
    if [[ -n "$broker_pid" ]]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

bin="${FRANZY_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && cargo build -q --workspace --bins --examples)
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/franzy"
fi

"$bin" serve --brokers 1 --topic scram:1 --topic plain:1 \
    --security-protocol SASL_SSL --user alice:alice-secret --tls-dir "$work/tls" \
    >"$work/serve.out" 2>"$work/serve.err" &
broker_pid=$!
for _ in $(seq 1 100); do
    [[ $(wc -l <"$work/serve.out") -ge 2 ]] && break
    sleep 0.1
done
bootstrap="$(sed -n 1p "$work/serve.out")"
ca="$(sed -n 2p "$work/serve.out" | sed 's/^ca: //')"
[[ -n "$bootstrap" && -f "$ca" ]] || fail "franzy serve printed no bootstrap and CA: $(cat "$work/serve.out" "$work/serve.err")"
log "cluster at $bootstrap, CA $ca"

kcat_security=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512
    -X sasl.username=alice -X sasl.password=alice-secret -X "ssl.ca.location=$ca")
seq 1 "$messages" | timeout "$step_timeout" kcat -P -b "$bootstrap" -t scram "${kcat_security[@]}" \
    || fail "kcat could not produce over SASL_SSL/SCRAM-SHA-512"
got="$(timeout "$step_timeout" kcat -C -b "$bootstrap" -t scram -o beginning -e "${kcat_security[@]}" | wc -l)"
[[ "$got" -eq "$messages" ]] || fail "kcat consumed $got of $messages records"
log "kcat SASL_SSL SCRAM-SHA-512: $messages produced and consumed"

got="$(timeout "$step_timeout" python3 - "$bootstrap" "$ca" "$messages" <<'PY'
import sys
from kafka import KafkaConsumer, KafkaProducer

bootstrap, ca, messages = sys.argv[1], sys.argv[2], int(sys.argv[3])
security = dict(
    bootstrap_servers=bootstrap,
    security_protocol="SASL_SSL",
    sasl_mechanism="PLAIN",
    sasl_plain_username="alice",
    sasl_plain_password="alice-secret",
    ssl_cafile=ca,
)
producer = KafkaProducer(**security)
for i in range(messages):
    producer.send("plain", value=b"record-%d" % i)
producer.flush()
producer.close()
consumer = KafkaConsumer(
    "plain", auto_offset_reset="earliest", enable_auto_commit=False,
    consumer_timeout_ms=10000, **security
)
print(sum(1 for _ in consumer))
PY
)" || fail "kafka-python failed over SASL_SSL/PLAIN"
[[ "$got" -eq "$messages" ]] || fail "kafka-python consumed $got of $messages records"
log "kafka-python SASL_SSL PLAIN: $messages produced and consumed"
echo "2 passed, 0 failed"
