#!/usr/bin/env bash
# Runs every fuzz target of the module, one after another (go test fuzzes one
# target per invocation), for the given time each, then prints each target's
# exec count. Usage: scripts/fuzz.sh [duration]   (default 60s; e.g. 10m, 5000x)
# Targets are found with go test -list, so new ones join without editing this
# script. A failure stops the run; go test saves the input under
# testdata/fuzz/<Target>/ in the package, to commit as a regression case once
# fixed. Extra flags for go test go in FUZZFLAGS (e.g. FUZZFLAGS=-parallel=4).
# New interesting inputs are minimized for at most FUZZMINIMIZETIME (default
# 10s, not go test's 60s, during which a target's workers stop fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-60s}
summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for pkg in $(go list ./...); do
  targets=$(go test -list '^Fuzz' "$pkg" | grep -E '^Fuzz' || true)
  for target in $targets; do
    printf '==> %s %s for %s\n' "$pkg" "$target" "$duration"
    # shellcheck disable=SC2086
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" -fuzzminimizetime "${FUZZMINIMIZETIME:-10s}" \
      ${FUZZFLAGS:-} "$pkg" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
    summary+=("$(printf '%-24s %12s execs  %s' "$target" "$execs" "$pkg")")
    if [ "$status" -ne 0 ]; then
      echo "FAIL: $target; the failing input is under testdata/fuzz/$target/ in $pkg" >&2
      printf '%s\n' "${summary[@]}"
      exit "$status"
    fi
  done
done

echo "==> fuzzed for $duration each"
printf '%s\n' "${summary[@]}"
