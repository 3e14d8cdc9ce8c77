#!/usr/bin/env bash
# Runs libFuzzer harnesses built by `make fuzz` (build dir $1, seconds $2,
# then harness names; all of them when none are given).
#   fuzz/run.sh build-fuzz 60                 every harness for 60 s each
#   fuzz/run.sh build-fuzz 600 json semver    a longer campaign on two
# Each harness starts from the committed seeds (fuzz/corpus/<h>/) and grows a
# working corpus in <build>/corpus/<h>/ (not committed: `make fuzz-merge`
# minimises it into the seeds). A crash, leak, timeout or out-of-memory input
# is saved under fuzz/crashes/<h>/, where `make check` replays it from then on.
# FUZZ_JOBS harnesses run at once (default 1), each under `nice -n 19`.
# Prints one line of figures per harness; exits 1 when any harness failed.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?build directory}
secs=${2:-60}
shift 2 || true
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    harnesses=(archive dotenv http id json jwt manifest minisign proto semver)
fi
jobs=${FUZZ_JOBS:-1}

options() { # per-harness libFuzzer options
    case "$1" in
    archive) echo "-max_len=16384 -timeout=30" ;;
    manifest) echo "-max_len=8192 -timeout=10" ;;
    *) echo "-max_len=4096 -timeout=10" ;;
    esac
    [ -f "fuzz/dict/$1.dict" ] && echo "-dict=fuzz/dict/$1.dict"
}

run_one() {
    local h=$1 work="$build/corpus/$1" log="$build/fuzz-$1.log"
    mkdir -p "$work" "fuzz/crashes/$h"
    # shellcheck disable=SC2046
    nice -n 19 "$build/fuzz/fuzz_$h" $(options "$h") -max_total_time="$secs" \
        -print_final_stats=1 -artifact_prefix="fuzz/crashes/$h/" \
        "$work" "fuzz/corpus/$h" >"$log" 2>&1
    local rc=$?
    local execs eps last
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+')
    local crashes
    crashes=$(find "fuzz/crashes/$h" -type f -newer "$log.start" 2>/dev/null | wc -l)
    printf '%-9s rc=%d execs=%s exec/s=%s %s new-crashes=%s log=%s\n' "$h" "$rc" "${execs:-?}" \
        "${eps:-?}" "${last:-}" "$crashes" "$log"
    return $rc
}

status=0
running=0
for h in "${harnesses[@]}"; do
    [ -x "$build/fuzz/fuzz_$h" ] || { echo "fuzz: $build/fuzz/fuzz_$h is not built" >&2; exit 2; }
    touch "$build/fuzz-$h.log.start"
    run_one "$h" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
