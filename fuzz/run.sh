#!/usr/bin/env bash
# Runs franzy's fuzz targets, each for a bounded time, one after another.
#
#   fuzz/run.sh                     every target (cargo fuzz list), FUZZ_SECONDS each
#   fuzz/run.sh frame_decode ...    only the named targets
#
# Environment:
#   FUZZ_SECONDS          time per target, in seconds (default 30)
#   FUZZ_RSS_LIMIT_MB     libFuzzer -rss_limit_mb (default 2048)
#   FUZZ_MALLOC_LIMIT_MB  libFuzzer -malloc_limit_mb: one allocation larger than this is a
#                         finding (default 1024)
#   FUZZ_TIMEOUT          libFuzzer -timeout: one input slower than this many seconds is a
#                         finding (default 10)
#   FUZZ_CARGO_ARGS       extra arguments for `cargo fuzz run`, e.g. "-s none" or "-O"
#
# Exits non-zero if any target fails: a crash, a panic (a broken invariant), an allocation
# over the limit, a timeout, a replayed regression that fails again, or a build error.
# Each target's input grows in fuzz/corpus/<target>/ (ignored by git) from the committed
# seeds in fuzz/seeds/<target>/; findings land in fuzz/artifacts/<target>/ and logs in
# fuzz/logs/<target>.log. See fuzz/README.md for reproducing a finding.
#
# Toolchain: cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=address and the
# sanitizer-coverage -C llvm-args). This machine has only stable Rust, so the script sets
# RUSTC_BOOTSTRAP=1, which lets a stable rustc accept -Z flags. That is the documented escape
# hatch the Rust project uses to build itself; it is scoped to these fuzz builds and never set
# for the shipped crates. The AddressSanitizer runtime ships with the stable rust-std
# component, so the default sanitizer works. On a nightly toolchain the variable is harmless.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$fuzz_dir")"
seconds="${FUZZ_SECONDS:-30}"
rss_limit="${FUZZ_RSS_LIMIT_MB:-2048}"
malloc_limit="${FUZZ_MALLOC_LIMIT_MB:-1024}"
timeout="${FUZZ_TIMEOUT:-10}"
read -r -a cargo_args <<< "${FUZZ_CARGO_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cd "$root"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "run.sh: no fuzz targets found" >&2
    exit 1
fi

# Build everything first, so that a compile error is reported once and before any fuzzing.
cargo fuzz build "${cargo_args[@]}"

mkdir -p "$fuzz_dir/logs"
failed=()
summary=()
for target in "${targets[@]}"; do
    seeds="$fuzz_dir/seeds/$target"
    corpus="$fuzz_dir/corpus/$target"
    regressions="$fuzz_dir/regressions/$target"
    log="$fuzz_dir/logs/$target.log"
    mkdir -p "$corpus"
    : > "$log"

    # Inputs that once failed must pass now; each runs once.
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "== $target: replaying $(ls -A "$regressions" | wc -l) regression input(s)"
        if ! cargo fuzz run "${cargo_args[@]}" "$target" "$regressions"/* -- \
            -rss_limit_mb="$rss_limit" -malloc_limit_mb="$malloc_limit" -timeout="$timeout" \
            >> "$log" 2>&1; then
            echo "== $target: FAILED replaying fuzz/regressions/$target (see $log)"
            failed+=("$target")
            summary+=("$target: regression replay failed")
            continue
        fi
    fi

    echo "== $target: fuzzing for ${seconds}s"
    args=(-max_total_time="$seconds" -rss_limit_mb="$rss_limit" -malloc_limit_mb="$malloc_limit"
          -timeout="$timeout" -print_final_stats=1)
    dirs=("$corpus")
    [ -d "$seeds" ] && dirs+=("$seeds")
    if cargo fuzz run "${cargo_args[@]}" "$target" "${dirs[@]}" -- "${args[@]}" >> "$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        # Show the finding: libFuzzer's report and the reproduction hint cargo-fuzz prints.
        grep -E -A40 '==[0-9]+==|panicked|Failing input|Reproduce with' "$log" | tail -80 || true
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
    line="$target: $status, ${seconds}s, ${runs:-?} runs, ${rate:-?} exec/s, peak rss ${rss:-?} MB"
    echo "== $line"
    summary+=("$line")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== failed: ${failed[*]} (logs in fuzz/logs/, inputs in fuzz/artifacts/)" >&2
    exit 1
fi
