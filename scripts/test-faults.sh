#!/usr/bin/env bash
# `npm run test:faults`: the fault suite's two projects (vitest.faults.config.ts) side by side.
# The scenarios of processes, hosts and Redis servers failing (mostly waiting on failover and
# lock timers) overlap the disk- and CPU-bound storage ones at little cost; each project still
# runs one scenario at a time. Each project's output is prefixed with its name; the exit code
# is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."

run() {
  npx vitest run --config vitest.faults.config.ts --project "$1" --passWithNoTests "${@:2}" 2>&1 | sed -u "s/^/[$1] /"
  return "${PIPESTATUS[0]}"
}

run processes "$@" &
processes=$!
run storage "$@"
storage=$?
wait "$processes"
processes=$?
echo "[test:faults] storage: exit $storage, processes: exit $processes"
exit $(( storage != 0 ? storage : processes ))
