#!/usr/bin/env bash
# The test command of the README (`npm test` runs setup first, then this).
# Files run one at a time: each end-to-end file starts real runsc sandboxes,
# and two cores are not enough to run several of them side by side reliably.
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then files=(test/*.test.ts); fi
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
