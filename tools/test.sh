#!/usr/bin/env bash
# Installs everything, builds, and runs the whole test suite:
#   1. release build (g++), unit and integration tests, format check;
#   2. sanitizer build (clang, ASan+UBSan), the same tests again plus bounded fuzzing.
# Ends with one line "N passed, N failed" (Catch2 test cases plus other test programs).
# Environment: TAPWIRE_FUZZ_SECONDS (default 60 per fuzz target).
set -uo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

jobs=$(nproc)
status=0

configure() {  # configure DIR [meson options...]: set up once, reconfigure when options change
    local dir=$1
    shift
    if [[ -f "$dir/build.ninja" ]]; then
        meson configure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@"
    fi
}

run_suite() {  # run_suite DIR [meson test options...]
    local dir=$1
    shift
    ninja -C "$dir" || return 1
    meson test -C "$dir" --num-processes "$jobs" --print-errorlogs "$@"
}

configure build -Dbuildtype=release && run_suite build || status=1
CXX=clang++ configure build-san -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false -Dfuzzing=true &&
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 run_suite build-san || status=1

python3 tools/test_summary.py build/meson-logs/testlog.json build-san/meson-logs/testlog.json ||
    status=1
exit $status
