#!/usr/bin/env bash
# Fuzzes the file loaders with libFuzzer: builds the harnesses of fuzz/ with
# clang (-fsanitize=fuzzer,address,undefined, every sanitizer report fatal)
# and runs each for a bounded time over its seed corpus.
#
#   bash scripts/fuzz.sh              build, then run every harness
#   bash scripts/fuzz.sh build        only build
#   bash scripts/fuzz.sh npy ckpt     build, then run these harnesses
#
# TIDE_FUZZ_SECONDS   seconds per harness (default 60)
# TIDE_FUZZ_BUILD     build folder (default build-fuzz in the source tree)
#
# The seeds are fuzz/corpus/<harness>/ and fuzz/regressions/<harness>/ (read
# only); what libFuzzer finds on the way goes to <build>/corpus-<harness>/.  A
# harness that finds a crash, a leak, a timeout or too much memory fails; the
# input is saved under <build>/crashes/ and its path printed: fix the bug,
# then add the file to fuzz/regressions/<harness>/, where the suite (test
# io_corpus, every job) and every later fuzz run feed it to the loader again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
b=${TIDE_FUZZ_BUILD:-$root/build-fuzz}
secs=${TIDE_FUZZ_SECONDS:-60}
harnesses=(npy ckpt)

build() {
    if ! command -v clang >/dev/null 2>&1; then
        echo "fuzz: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
        return 1
    fi
    if [ -f "$b/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$b" "$root" >/dev/null
    else
        rm -rf "$b"
        CC=clang meson setup "$b" "$root" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized \
            -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
            "-Dc_args=-fno-sanitize-recover=all -fno-omit-frame-pointer"
    fi
    ninja -C "$b" fuzz/fuzz_npy fuzz/fuzz_ckpt
}

# run HARNESS: fuzzes it for $secs seconds; fails if it found anything.
run() {
    local h=$1 exe="$b/fuzz/fuzz_$1" work="$b/corpus-$1" log="$b/fuzz-$1.log"
    local seeds=()
    mkdir -p "$work" "$b/crashes"
    for d in "$root/fuzz/corpus/$h" "$root/fuzz/regressions/$h"; do
        if [ -d "$d" ]; then seeds+=("$d"); fi
    done
    echo "fuzz: $h for ${secs}s over ${seeds[*]}"
    local rc=0
    # New inputs go to the first folder (the build's), never into the seeds.
    ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1 \
        UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
        "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -dict="$root/fuzz/$h.dict" \
        -artifact_prefix="$b/crashes/$h-" -print_final_stats=1 "$work" "${seeds[@]}" \
        > "$log" 2>&1 || rc=$?
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $h FAILED (exit $rc); the end of $log:"
        tail -40 "$log"
        ls -1 "$b/crashes/$h-"* 2>/dev/null | sed 's/^/fuzz: input: /' || true
        return 1
    fi
    echo "fuzz: $h passed"
}

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${harnesses[@]}")
fi
build
failed=0 passed=0
for t in "${targets[@]}"; do
    case "$t" in
    build) ;;
    npy | ckpt)
        if run "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
        ;;
    *)
        echo "fuzz: unknown harness '$t' (harnesses: ${harnesses[*]})" >&2
        exit 2
        ;;
    esac
done
if [ $((passed + failed)) -gt 0 ]; then
    echo "fuzz: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
