#!/usr/bin/env bash
# `npm run test:faults`: the fault suite's two projects (vitest.faults.config.ts) side by side.
# The Redis failover scenarios spend most of their time waiting on failover timers, so they
# overlap the disk- and CPU-bound scenarios at little cost; each project still runs one scenario
# at a time. Each project's output is prefixed with its name; the exit code is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."

run() {
  npx vitest run --config vitest.faults.config.ts --project "$1" --passWithNoTests "${@:2}" 2>&1 | sed -u "s/^/[$1] /"
  return "${PIPESTATUS[0]}"
}

run failover "$@" &
failover=$!
run faults "$@"
faults=$?
wait "$failover"
failover=$?
echo "[test:faults] faults: exit $faults, failover: exit $failover"
exit $(( faults != 0 ? faults : failover ))
