#!/usr/bin/env bash
# The test command of the README (`npm test` runs setup first, then this).
# Files run one at a time: each end-to-end file starts real runsc sandboxes,
# and two cores are not enough to run several of them side by side reliably.
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then files=(test/*.test.ts); fi
# A file that hangs (a starved event loop cannot fire its own test timeouts)
# fails the run after an hour instead of holding CI to its limit; the whole
# suite takes ~20 min on these machines.
exec timeout --kill-after=30 "${SNAPFN_TEST_TIMEOUT_S:-3600}" node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
