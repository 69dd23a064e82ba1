#!/usr/bin/env bash
# The control plane's acceptance: `franzy serve --control` with a kafka-python producer
# (acks=all, idempotent) sending records while broker 1 is stopped for 3 s and started again
# through the HTTP endpoint; every record must be acknowledged, and kcat must read back each
# exactly once.
#
# usage: tests/interop/control_plane.sh     (FRANZY_BIN: the franzy binary, default: built)
#        CONTROL_MESSAGES: records to send (default 5000)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${CONTROL_MESSAGES:-5000}"
topic=orders
work="$(mktemp -d)"
server_pid=""

log() { echo "control-plane: $*"; }
fail() {
    echo "control-plane: FAIL: $*" >&2
    exit 1
}
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s "$work/server.err" ]]; then
        tail -n 30 "$work/server.err" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

if [[ -z "${FRANZY_BIN:-}" ]]; then
    (cd "$root" && cargo build -q --workspace --bins --examples)
    FRANZY_BIN="$root/target/debug/franzy"
fi
"$FRANZY_BIN" serve --brokers 3 --topic "$topic:6" --control 127.0.0.1:0 \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 300); do
    grep -q '^control ' "$work/server.out" && break
    kill -0 "$server_pid" 2>/dev/null || fail "franzy serve exited: $(cat "$work/server.err")"
    sleep 0.1
done
bootstrap="$(sed -n 1p "$work/server.out")"
control="$(sed -n 's/^control \(http:\/\/.*\)$/\1/p' "$work/server.out")"
[[ -n "$bootstrap" && -n "$control" ]] || fail "no bootstrap and control lines: $(cat "$work/server.out")"
log "cluster at $bootstrap, control plane at $control"

timeout 300 python3 "$here/control_plane.py" "$bootstrap" "$control" "$topic" "$messages" \
    "$work/sent.txt" || fail "the kafka-python producer step failed"

log "kcat: reading everything back"
timeout 120 kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f '%s\n' \
    >"$work/read.txt" 2>"$work/kcat.err" || fail "kcat -C failed: $(cat "$work/kcat.err")"
read_count="$(wc -l <"$work/read.txt")"
unique_count="$(sort -u "$work/read.txt" | wc -l)"
[[ "$read_count" -eq "$messages" ]] || fail "kcat read $read_count records, expected $messages"
[[ "$unique_count" -eq "$messages" ]] || fail "kcat read $unique_count distinct records of $read_count"
cmp -s <(sort "$work/read.txt") <(sort "$work/sent.txt") || fail "what kcat read is not what was sent"
log "kcat read back exactly $messages records, each once"
