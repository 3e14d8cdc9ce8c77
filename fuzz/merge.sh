#!/usr/bin/env bash
# Minimises a campaign's working corpus into the committed seeds: for each
# harness, libFuzzer's -merge=1 adds to fuzz/corpus/<h>/ only the inputs of
# <build>/corpus/<h>/ that reach coverage the seeds do not (the named seeds
# stay). Usage: fuzz/merge.sh build-fuzz [harness...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?build directory}
shift
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    harnesses=(archive dotenv http id json jwt manifest minisign proto semver)
fi
for h in "${harnesses[@]}"; do
    [ -d "$build/corpus/$h" ] || continue
    nice -n 19 "$build/fuzz/fuzz_$h" -merge=1 "fuzz/corpus/$h" "$build/corpus/$h" \
        >"$build/merge-$h.log" 2>&1
    echo "$h: $(find "fuzz/corpus/$h" -type f | wc -l) seeds, $(du -sh "fuzz/corpus/$h" | cut -f1)"
done
