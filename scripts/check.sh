#!/usr/bin/env bash
# Functions run by name from a subshell (job_$j) are not unreachable.
# shellcheck disable=SC2317
# The whole test command of tide (what CI runs after scripts/setup.sh).
#
#   bash scripts/check.sh            every job below
#   bash scripts/check.sh debug asan only those jobs
#
# Jobs, each in its own build folder under build-ci/ (TIDE_CHECK_DIR moves it):
#   debug    -Dbuildtype=debug, warnings as errors; the whole suite but the
#            ThreadSanitizer driver (meson test --no-suite tsan)
#   release  -Dbuildtype=release, warnings as errors; the same suite; then
#            `meson install --destdir` into a scratch folder and an outside
#            program (tests/install/consumer.c) built with
#            `cc prog.c $(pkg-config --cflags --libs tide)` against it, and run
#   asan     -Db_sanitize=address,undefined with -fno-sanitize-recover=all;
#            the same suite; any sanitizer report (leaks included) fails the
#            test
#   tsan     -Db_sanitize=thread -Dtsan_driver=true; the plain-main engine
#            test driver (suite tsan) and the examples, halting on any report
#   fuzz     scripts/fuzz.sh: the libFuzzer harnesses of the .npy and
#            checkpoint loaders, built with clang (fuzzer, address,
#            undefined), each run for TIDE_FUZZ_SECONDS (default 60) over the
#            seed corpus and the regressions; any crash, leak or timeout fails
#
# Runs every job even when one fails, prints a summary with the counts of each,
# and exits nonzero if anything failed.  Builds and tests use TIDE_CHECK_JOBS
# processes (default 2).  Build folders are reused between runs (incremental);
# TIDE_CHECK_CLEAN=1 wipes them first.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${TIDE_CHECK_DIR:-$root/build-ci}
jobs=${TIDE_CHECK_JOBS:-2}
cc_cmd=${CC:-cc}
all_jobs=(debug release asan tsan fuzz)

mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---- helpers ---------------------------------------------------------------

# configure BUILD_DIR MESON_OPTIONS...: meson setup, or reconfigure in place.
configure() {
    local b=$1
    shift
    if [ "${TIDE_CHECK_CLEAN:-0}" = 1 ]; then
        rm -rf "$b"
    fi
    if [ -f "$b/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$b" "$root" "$@"
    else
        rm -rf "$b"
        meson setup "$b" "$root" "$@"
    fi
}

# record KIND LABEL PASSED FAILED SKIPPED: adds a line to this job's counts.
record() {
    echo "$*" >> "$counts"
}

# tally BUILD_DIR: adds the results of the last `meson test` in BUILD_DIR to
# this job's counts.  A Criterion program counts its test cases (from its
# "Synthesis" line), the plain-main driver too (from its "N passed, N failed"
# line); any other test program counts as one.
tally() {
    python3 - "$1/meson-logs/testlog.json" >> "$counts" <<'EOF'
import json, re, sys
ansi = re.compile(r'\x1b\[[0-9;]*m')
synth = re.compile(r'Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)')
plain = re.compile(r'^(?:\w+: )?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$', re.M)
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    if not line.strip():
        continue
    t = json.loads(line)
    name = t.get('name', '?').replace(' ', '_')
    result = t.get('result', 'ERROR')
    text = ansi.sub('', (t.get('stdout') or '') + '\n' + (t.get('stderr') or ''))
    found = synth.findall(text)
    plain_found = plain.findall(text)
    if not found and plain_found:
        # The plain-main driver's closing line: "N passed, N failed[, N skipped]".
        passing, failing, skipped = (int(x or 0) for x in plain_found[-1])
        if result not in ('OK', 'EXPECTEDFAIL', 'SKIP') and failing == 0:
            failing = 1
        print('driver', name, passing, failing, skipped)
    elif found:
        tested, passing, failing, crashing = (int(x) for x in found[-1])
        # Failing counts the crashed tests too.  A test whose process failed
        # after it passed (a leak report at exit) is only a warning to
        # Criterion, and counted as passing: count it as failed.
        late = min(text.count('crashed during its setup or teardown'), passing)
        passing -= late
        failed = max(failing, crashing) + late
        # The program failed although no test did (a crash outside a test):
        # one more failure.
        if result not in ('OK', 'EXPECTEDFAIL', 'SKIP') and failed == 0:
            failed = 1
        print('criterion', name, passing, failed, max(tested - passing - failed, 0))
    elif result in ('OK', 'EXPECTEDFAIL'):
        print('test', name, 1, 0, 0)
    elif result == 'SKIP':
        print('test', name, 0, 0, 1)
    else:
        print('test', name, 0, 1, 0)
EOF
}

# run_tests BUILD_DIR MESON_TEST_ARGS...: runs meson test, tallies, and
# returns meson's status.  Fails when no test ran at all.
run_tests() {
    local b=$1 rc=0 before after
    shift
    before=$(wc -l < "$counts")
    rm -f "$b/meson-logs/testlog.json"
    "${run_under[@]}" meson test -C "$b" --no-rebuild --print-errorlogs \
        --num-processes "$jobs" "$@" || rc=$?
    tally "$b"
    after=$(wc -l < "$counts")
    if [ "$after" -eq "$before" ]; then
        echo "check: meson test $* ran no test"
        record test no_tests_ran 0 1 0
        rc=1
    fi
    return "$rc"
}

# probe_sanitizer FLAGS: prints the command prefix under which a program built
# with FLAGS runs.  Some kernels give ThreadSanitizer (and, rarely, ASan) an
# address layout it cannot use ("unexpected memory mapping"); running with
# ASLR off (setarch -R) fixes that.
probe_sanitizer() {
    local flags=$1 dir
    dir=$(mktemp -d)
    cat > "$dir/probe.c" <<'EOF'
#include <pthread.h>
#include <stdlib.h>
static void *run(void *arg) { return arg; }
int main(void)
{
    pthread_t t;
    void *p = malloc(16);
    if (pthread_create(&t, NULL, run, p) != 0) return 1;
    pthread_join(t, NULL);
    free(p);
    return 0;
}
EOF
    # shellcheck disable=SC2086
    if ! $cc_cmd $flags -pthread "$dir/probe.c" -o "$dir/probe" > "$dir/log" 2>&1; then
        echo "check: cannot build a program with $flags:" >&2
        cat "$dir/log" >&2
        rm -rf "$dir"
        return 1
    fi
    if "$dir/probe" > "$dir/log" 2>&1; then
        rm -rf "$dir"
        return 0
    fi
    echo "check: a $flags program fails as is:" >&2
    head -5 "$dir/log" >&2
    if setarch "$(uname -m)" -R "$dir/probe" > "$dir/log" 2>&1; then
        echo "check: it runs with ASLR off; running this job under setarch -R" >&2
        echo "setarch $(uname -m) -R"
        rm -rf "$dir"
        return 0
    fi
    echo "check: it fails under setarch -R too:" >&2
    head -5 "$dir/log" >&2
    rm -rf "$dir"
    return 1
}

# ---- jobs ------------------------------------------------------------------

job_debug() {
    local b="$out/debug"
    configure "$b" -Dbuildtype=debug -Dwerror=true
    ninja -C "$b" -j "$jobs"
    run_tests "$b" --no-suite tsan
}

# install_check BUILD_DIR: meson install into a scratch folder, then build and
# run an outside program against it through pkg-config.
install_check() {
    local b=$1 d="$out/destdir" t="$out/consumer"
    rm -rf "$d" "$t"
    mkdir -p "$t"
    meson install -C "$b" --no-rebuild --quiet --destdir "$d"
    local pc prefix flags libdir
    pc=$(find "$d" -name tide.pc -print -quit)
    if [ -z "$pc" ]; then
        echo "install: no tide.pc under $d"
        return 1
    fi
    prefix=$(sed -n 's/^prefix=//p' "$pc")
    # pkg-config searches the destdir first (then the system, for libuv and
    # hwloc); prefix is redefined so every path resolves inside the destdir.
    PKG_CONFIG_PATH=$(dirname "$pc")
    export PKG_CONFIG_PATH
    flags=$(pkg-config --define-variable=prefix="$d$prefix" --cflags --libs tide)
    libdir=$(pkg-config --define-variable=prefix="$d$prefix" --variable=libdir tide)
    echo "install: $pc"
    echo "install: pkg-config --cflags --libs tide = $flags"
    case "$flags" in
    *"-I$d"*"-L$d"* | *"-L$d"*"-I$d"*) ;;
    *)
        echo "install: pkg-config flags do not point into $d"
        return 1
        ;;
    esac
    [ -f "$d$prefix/include/tide/tide.h" ] || {
        echo "install: tide/tide.h not installed under $d$prefix/include"
        return 1
    }
    # An outside program: plain C11, no feature-test macros, public headers only.
    # shellcheck disable=SC2086
    $cc_cmd -std=c11 -Wall -Wextra -Wpedantic -Werror "$root/tests/install/consumer.c" \
        $flags -o "$t/consumer"
    LD_LIBRARY_PATH="$libdir" ldd "$t/consumer" | grep libtide | tee "$t/ldd"
    if ! grep -q "$d" "$t/ldd"; then
        echo "install: the consumer does not load libtide from $d"
        return 1
    fi
    LD_LIBRARY_PATH="$libdir" "$t/consumer" | tee "$t/out"
    grep -qx OK "$t/out"
    echo "install: OK"
}

job_release() {
    local b="$out/release" rc=0 irc=0
    configure "$b" -Dbuildtype=release -Dwerror=true
    ninja -C "$b" -j "$jobs"
    set +e
    run_tests "$b" --no-suite tsan
    rc=$?
    (
        set -e
        install_check "$b"
    )
    irc=$?
    set -e
    if [ "$irc" -eq 0 ]; then
        record check install_consumer 1 0 0
    else
        record check install_consumer 0 1 0
    fi
    [ "$rc" -eq 0 ] && [ "$irc" -eq 0 ]
}

job_asan() {
    local b="$out/asan"
    configure "$b" -Dbuildtype=debugoptimized -Dwerror=true \
        -Db_sanitize=address,undefined -Db_lundef=false \
        "-Dc_args=-fno-sanitize-recover=all -fno-omit-frame-pointer"
    ninja -C "$b" -j "$jobs"
    local prefix
    prefix=$(probe_sanitizer "-fsanitize=address,undefined")
    read -r -a run_under <<< "$prefix"
    # Any report ends the process with SIGABRT, which fails the test (Criterion
    # counts it as a crash).  Full stacks at malloc so that the one suppression
    # (a leak of Criterion's own runner, see scripts/lsan.supp) can match.
    export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1:fast_unwind_on_malloc=0
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1
    export LSAN_OPTIONS=suppressions=$root/scripts/lsan.supp:print_suppressions=0
    run_tests "$b" --no-suite tsan --timeout-multiplier 4
}

job_tsan() {
    local b="$out/tsan"
    configure "$b" -Dbuildtype=debugoptimized -Dwerror=true \
        -Db_sanitize=thread -Db_lundef=false -Dtsan_driver=true
    ninja -C "$b" -j "$jobs"
    local prefix
    prefix=$(probe_sanitizer "-fsanitize=thread")
    read -r -a run_under <<< "$prefix"
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:print_summary=1
    run_tests "$b" --suite tsan --suite examples --timeout-multiplier 6
}

job_fuzz() {
    local rc=0 h
    export TIDE_FUZZ_BUILD="$out/fuzz"
    bash "$root/scripts/fuzz.sh" build
    for h in npy ckpt; do
        if bash "$root/scripts/fuzz.sh" "$h"; then
            record fuzz "$h" 1 0 0
        else
            record fuzz "$h" 0 1 0
            rc=1
        fi
    done
    return "$rc"
}

# ---- main ------------------------------------------------------------------

selected=("$@")
if [ "${#selected[@]}" -eq 0 ]; then
    selected=("${all_jobs[@]}")
fi
for j in "${selected[@]}"; do
    case " ${all_jobs[*]} " in
    *" $j "*) ;;
    *)
        echo "check: unknown job '$j' (jobs: ${all_jobs[*]})" >&2
        exit 2
        ;;
    esac
done

echo "check: jobs ${selected[*]} in $out, $jobs processes; $(nproc) cores; $($cc_cmd --version | head -1)"
t_all=$SECONDS
results=()
any_failed=0
for j in "${selected[@]}"; do
    echo
    echo "======== check: $j ========"
    counts="$out/$j.counts"
    : > "$counts"
    run_under=()
    t_job=$SECONDS
    set +e
    (
        set -euo pipefail
        "job_$j"
    ) 2>&1 | tee "$out/$j.log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -eq 0 ]; then
        verdict=PASS
    else
        verdict=FAIL
        any_failed=1
        if [ ! -s "$counts" ]; then
            # It failed before any test ran (configure or build).
            record build "$j" 0 1 0
        fi
    fi
    results+=("$j $verdict $rc $((SECONDS - t_job))")
done

echo
echo "======== check: summary ========"
printf '%-8s %-6s %8s %8s %8s   %s\n' job result passed failed skipped time
tp=0 tf=0 ts=0
for r in "${results[@]}"; do
    read -r j verdict rc secs <<< "$r"
    read -r p f s <<< "$(awk '{p += $3; f += $4; s += $5} END {print p + 0, f + 0, s + 0}' "$out/$j.counts")"
    printf '%-8s %-6s %8d %8d %8d   %dm%02ds\n' "$j" "$verdict" "$p" "$f" "$s" $((secs / 60)) $((secs % 60))
    awk '$4 > 0 {printf "         failed: %s %s (%d)\n", $1, $2, $4}' "$out/$j.counts"
    tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
done
secs=$((SECONDS - t_all))
echo "(passed/failed/skipped count Criterion test cases, other test programs, the install check and the fuzz runs;"
echo " logs in $out/<job>.log; total time $((secs / 60))m$((secs % 60))s)"
if [ "$any_failed" -ne 0 ] && [ "$tf" -eq 0 ]; then
    tf=1
fi
echo "check: $tp passed, $tf failed, $ts skipped"
exit "$any_failed"
