#!/usr/bin/env bash
# Captures golden request and response frames from implementations we did not write:
# kcat (librdkafka) and kafka-python, both talking to librdkafka's mock cluster, recorded on
# the loopback interface with tcpdump and cut into frames by extract_frames.py.
#
# usage: tests/interop/capture_golden.sh [OUT_DIR]      (default: client/tests/golden)
#
# Needs root (tcpdump on lo), tcpdump, kcat, gcc, pkg-config, librdkafka-dev and the
# kafka-python pinned in requirements.txt:
#   apt-get install -y tcpdump kcat librdkafka-dev pkg-config gcc
#   python3 -m pip install -r tests/interop/requirements.txt
#
# CI does not run this: the committed .bin files are the fixtures, and client/tests/golden.rs
# asserts values that are specific to one capture (ports, timestamps, correlation ids). After
# re-capturing, update those assertions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/client/tests/golden}"
work="$(mktemp -d)"
mock_pid=""
tcpdump_pid=""
step_timeout=30

cleanup() {
    if [[ -n "$tcpdump_pid" ]]; then kill -INT "$tcpdump_pid" 2>/dev/null || true; fi
    if [[ -n "$mock_pid" ]]; then kill -TERM "$mock_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

die() {
    echo "capture_golden: $*" >&2
    exit 1
}

for tool in tcpdump kcat python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
python3 -c 'import kafka' 2>/dev/null || die "kafka-python not installed (pip install -r tests/interop/requirements.txt)"

mock="$("$here/build_mock_cluster.sh" "$work")"
kcat_version="$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/kcat \1, librdkafka \2/p')"
kafka_python_version="$(python3 -c 'import kafka; print(kafka.__version__)')"

# The mock cluster: 3 brokers, topic "golden" with 3 partitions. Partition 0 gets the
# uncompressed kcat batch, partition 1 one batch per compression codec, partition 2 the
# kafka-python batch. It runs until we close the fifo on its stdin (or kill it).
mkfifo "$work/mock.in"
"$mock" 3 golden:3 <"$work/mock.in" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
exec 3>"$work/mock.in"
bootstrap=""
for _ in $(seq 100); do
    bootstrap="$(head -n1 "$work/mock.out" 2>/dev/null || true)"
    [[ -n "$bootstrap" ]] && break
    sleep 0.1
done
[[ -n "$bootstrap" ]] || die "mock cluster printed no bootstrap address: $(cat "$work/mock.err")"
ports="$(tr ',' '\n' <<<"$bootstrap" | sed 's/.*://' | paste -sd, -)"
filter="tcp and ($(sed 's/^/port /; s/,/ or port /g' <<<"$ports"))"
echo "capture_golden: mock cluster at $bootstrap"

mkdir -p "$out"
rm -f "$out"/*.bin
manifest="$work/manifest.tsv"
: >"$manifest"
steps="$work/steps.txt"
: >"$steps"

# capture STEP SOURCE INPUT_VAR COMMAND...: records the traffic of COMMAND into
# $work/STEP.pcap, feeding it the value of the variable named INPUT_VAR (none if empty) on
# stdin. The command is written to the manifest with the bootstrap address replaced by
# $BOOTSTRAP.
capture() {
    local step="$1" source="$2" input_var="$3" input=""
    shift 3
    if [[ -n "$input_var" ]]; then input="${!input_var}"; fi
    : >"$work/tcpdump.err"
    tcpdump -i lo --immediate-mode -B 65536 -U -s 0 -w "$work/$step.pcap" "$filter" 2>"$work/tcpdump.err" &
    tcpdump_pid=$!
    for _ in $(seq 100); do
        grep -q listening "$work/tcpdump.err" && break
        sleep 0.1
    done
    grep -q listening "$work/tcpdump.err" || die "tcpdump did not start: $(cat "$work/tcpdump.err")"
    if ! printf '%b' "$input" | timeout "$step_timeout" "$@" >"$work/$step.out" 2>"$work/$step.err"; then
        die "step $step failed: $* ($(cat "$work/$step.err"))"
    fi
    sleep 0.5 # let the last responses reach the capture
    kill -INT "$tcpdump_pid"
    wait "$tcpdump_pid" || true
    tcpdump_pid=""
    grep -q '^0 packets dropped by kernel' "$work/tcpdump.err" || die "tcpdump dropped packets: $(cat "$work/tcpdump.err")"
    local shown="${*//$bootstrap/\$BOOTSTRAP}"
    shown="${shown//$here/tests/interop}"
    if [[ -n "$input_var" ]]; then shown="printf \"\$$input_var\" | $shown"; fi
    printf '%s\t%s\t%s\n' "$step" "$source" "$shown" >>"$steps"
}

# pick STEP SOURCE SPEC FILE [SPEC FILE ...]: writes the chosen frames of STEP's capture.
pick() {
    local step="$1" source="$2"
    shift 2
    local args=()
    while (($#)); do
        args+=(--pick "$1" "$out/$2")
        shift 2
    done
    : >"$work/pick.tsv"
    python3 "$here/extract_frames.py" "$work/$step.pcap" --ports "$ports" \
        --source "$source" --manifest "$work/pick.tsv" "${args[@]}"
    sed "s/\$/\t$step/" "$work/pick.tsv" >>"$manifest"
}

RECORDS='k1:v1\nk2:v2\nk3:v3\n'
BIG_RECORDS=''
for i in 1 2 3; do
    BIG_RECORDS+="k$i:value-$i-$(printf 'abcdefgh%.0s' $(seq 16))\n"
done

# librdkafka: ApiVersions (v3 first, which the 2.0 mock refuses, then v0) and Metadata.
capture librdkafka_metadata librdkafka '' kcat -b "$bootstrap" -L
pick librdkafka_metadata librdkafka \
    ApiVersions/3:request librdkafka_api_versions_v{v}_request.bin \
    ApiVersions/3:response:pair librdkafka_api_versions_v{v}_unsupported_response.bin \
    ApiVersions/0:request librdkafka_api_versions_v{v}_request.bin \
    ApiVersions/0:response:pair librdkafka_api_versions_v{v}_response.bin \
    Metadata:response:largest librdkafka_metadata_v{v}_response.bin \
    Metadata:request:pair librdkafka_metadata_v{v}_request.bin

# librdkafka: one uncompressed batch of three keyed records with two headers each.
capture librdkafka_produce librdkafka RECORDS \
    kcat -b "$bootstrap" -P -t golden -p 0 -K: -H trace=abc -H source=kcat -z none -X linger.ms=200
pick librdkafka_produce librdkafka \
    Metadata:request librdkafka_metadata_v{v}_topics_request.bin \
    Produce:request librdkafka_produce_v{v}_request.bin \
    Produce:response:pair librdkafka_produce_v{v}_response.bin

# librdkafka: the same shape of batch under each compression codec, for the record batch codec.
for codec in gzip snappy lz4 zstd; do
    capture "librdkafka_produce_$codec" librdkafka BIG_RECORDS \
        kcat -b "$bootstrap" -P -t golden -p 1 -K: -H trace=abc -H source=kcat -z "$codec" -X linger.ms=200
    pick "librdkafka_produce_$codec" librdkafka \
        Produce:request "librdkafka_produce_v{v}_${codec}_request.bin" \
        Produce:response:pair "librdkafka_produce_v{v}_${codec}_response.bin"
done

# librdkafka: ListOffsets and Fetch of partition 0 (the uncompressed batch) ...
capture librdkafka_fetch librdkafka '' \
    kcat -b "$bootstrap" -C -t golden -p 0 -o beginning -e -f '%p %o %k %s %h\n'
[[ "$(wc -l <"$work/librdkafka_fetch.out")" == 3 ]] || die "kcat read back: $(cat "$work/librdkafka_fetch.out")"
pick librdkafka_fetch librdkafka \
    ListOffsets:request librdkafka_list_offsets_v{v}_request.bin \
    ListOffsets:response:pair librdkafka_list_offsets_v{v}_response.bin \
    Fetch:response:largest librdkafka_fetch_v{v}_response.bin \
    Fetch:request:pair librdkafka_fetch_v{v}_request.bin

# ... and of partition 1 (the four compressed batches). The mock cluster answers each Fetch
# with at most one batch per partition, so the first four responses hold one codec each.
capture librdkafka_fetch_compressed librdkafka '' \
    kcat -b "$bootstrap" -C -t golden -p 1 -o beginning -e -f '%p %o %k %s %h\n'
[[ "$(wc -l <"$work/librdkafka_fetch_compressed.out")" == 12 ]] || die "kcat read back: $(cat "$work/librdkafka_fetch_compressed.out")"
pick librdkafka_fetch_compressed librdkafka \
    'Fetch:response:#0' librdkafka_fetch_v{v}_gzip_response.bin \
    'Fetch:response:#1' librdkafka_fetch_v{v}_snappy_response.bin \
    'Fetch:response:#2' librdkafka_fetch_v{v}_lz4_response.bin \
    'Fetch:response:#3' librdkafka_fetch_v{v}_zstd_response.bin

# kafka-python: idempotent producer and a consumer with a manual assignment, on partition 2.
capture kafka_python kafka-python '' python3 "$here/kafka_python_golden.py" "$bootstrap" golden 2
pick kafka_python kafka-python \
    ApiVersions:request kafka_python_api_versions_v{v}_request.bin \
    ApiVersions:response:pair kafka_python_api_versions_v{v}_response.bin \
    InitProducerId:request kafka_python_init_producer_id_v{v}_request.bin \
    InitProducerId:response:pair kafka_python_init_producer_id_v{v}_response.bin \
    Metadata:request:largest kafka_python_metadata_v{v}_request.bin \
    Metadata:response:pair kafka_python_metadata_v{v}_response.bin \
    Produce:request kafka_python_produce_v{v}_request.bin \
    Produce:response:pair kafka_python_produce_v{v}_response.bin \
    ListOffsets:request kafka_python_list_offsets_v{v}_request.bin \
    ListOffsets:response:pair kafka_python_list_offsets_v{v}_response.bin \
    Fetch:response:largest kafka_python_fetch_v{v}_response.bin \
    Fetch:request:pair kafka_python_fetch_v{v}_request.bin

exec 3>&- # closes the mock cluster's stdin: it stops
wait "$mock_pid" || die "mock cluster exited with an error: $(cat "$work/mock.err")"
mock_pid=""

{
    echo "# Golden frames captured from implementations franzy did not write."
    echo "#"
    echo "# Each .bin file is one Kafka frame body: the bytes after the int32 size prefix,"
    echo "# starting with the request header (api key, version, correlation id, client id, ...)"
    echo "# or the response header (correlation id, ...)."
    echo "#"
    echo "# Captured $(date -u +%Y-%m-%d) by tests/interop/capture_golden.sh:"
    echo "#   broker:  librdkafka mock cluster (tests/interop/mock_cluster.c, $kcat_version),"
    echo "#            3 brokers, topic golden with 3 partitions, bootstrap $bootstrap"
    echo "#   clients: $kcat_version; kafka-python $kafka_python_version (Python $(python3 -c 'import platform; print(platform.python_version())'))"
    echo "#   capture: tcpdump -i lo --immediate-mode -B 65536 -U -s 0 -w STEP.pcap '$filter'"
    echo "#            then tests/interop/extract_frames.py STEP.pcap --ports $ports --pick ..."
    echo "#   responses are matched to requests by correlation id on the same connection; when a"
    echo "#   step has several frames of one kind, the column pick says which was kept: the first"
    echo "#   or last in capture order, the largest (the Fetch response with the records in it), the"
    echo "#   N-th (#N), or the pair of the frame on the line above (same connection and correlation"
    echo "#   id: a request and its response)."
    echo "#"
    echo "# Steps (command run with the capture on; \$BOOTSTRAP is the address above):"
    echo "#   RECORDS='$RECORDS'"
    echo "#   BIG_RECORDS='$BIG_RECORDS'"
    while IFS=$'\t' read -r step source command; do
        echo "#   $step ($source): $command"
    done <"$steps"
    echo "#"
    printf '# file\tsource\tapi_key\tapi\tversion\tdirection\tcorrelation_id\tbytes\tpick\tstep\n'
    cat "$manifest"
} >"$out/MANIFEST"

echo "capture_golden: wrote $(wc -l <"$manifest") frames and MANIFEST to $out"
