#!/usr/bin/env bash
# run_fuzz.sh FUZZER SEED_CORPUS WORK_DIR: a bounded libFuzzer run. New inputs go to WORK_DIR,
# never into the checked-in seed corpus; a crash artifact is left in WORK_DIR for replay.
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3
seconds=${TAPWIRE_FUZZ_SECONDS:-60}
mkdir -p "$work/corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work/corpus" "$seeds"
