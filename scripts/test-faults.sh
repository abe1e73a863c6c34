#!/usr/bin/env bash
# `npm run test:faults`: the fault suite's two projects (vitest.faults.config.ts) side by side.
# The Redis scenarios (failovers spend most of their time waiting on failover timers) overlap
# the disk- and CPU-bound ones at little cost; each project still runs one scenario at a time. Each project's output is prefixed with its name; the exit code is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."

run() {
  npx vitest run --config vitest.faults.config.ts --project "$1" --passWithNoTests "${@:2}" 2>&1 | sed -u "s/^/[$1] /"
  return "${PIPESTATUS[0]}"
}

run redis "$@" &
redis=$!
run faults "$@"
faults=$?
wait "$redis"
redis=$?
echo "[test:faults] faults: exit $faults, redis: exit $redis"
exit $(( faults != 0 ? faults : redis ))
