#!/usr/bin/env bash
# Runs cognitomcp's performance benchmarks with their baselines in the same
# run and compares them with benchstat (BENCHMARKS.md explains every table).
#
# Usage: scripts/bench.sh [micro|heap|login|load|all]...   (default: all)
#
#   micro  BenchmarkWarmPath (RequireToken+RequireGroups on a cached token,
#          against the bare handler and go-sdk's RequireBearerToken with a
#          go-oidc verifier), BenchmarkVerify (first verification against a
#          bare go-oidc Verify), BenchmarkTokenKey; rows interleaved COUNT times
#   heap   BenchmarkTokenCacheHeap: heap of 100,000 cached tokens
#   login  BenchmarkLoginFlow: sign-ins per second, memory store and Redis
#          (Redis rows need redis-server, and are skipped without it)
#   load   wrk against bench/loadserver's MCP endpoint, with and without
#          auth, alternating, ROUNDS times, loopback only: saturated
#          (WRK_ARGS) for throughput and p99 under load, and one connection
#          (WRK_LIGHT_ARGS) for the p99 a request pays without queueing
#
# Environment: COUNT (default 10), BENCHTIME (default 300ms), ROUNDS (3),
# WRK_ARGS (default "-t2 -c32 -d10s"), WRK_LIGHT_ARGS (default
# "-t1 -c1 -d10s"), OUT (default .cache/bench). Results go to $OUT/*.txt; to
# compare two runs: benchstat old/micro.txt new/micro.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-.cache/bench}
count=${COUNT:-10}
benchtime=${BENCHTIME:-300ms}
rounds=${ROUNDS:-3}
wrk_args=${WRK_ARGS:-"-t2 -c32 -d10s"}
wrk_light_args=${WRK_LIGHT_ARGS:-"-t1 -c1 -d10s"}
mkdir -p "$out"

log() { printf '==> %s\n' "$*" >&2; }

benchstat=$(command -v benchstat || true)
if [ -z "$benchstat" ]; then
  benchstat=$(go env GOPATH)/bin/benchstat
  [ -x "$benchstat" ] || { log "go install benchstat"; go install golang.org/x/perf/cmd/benchstat@latest; }
fi

machine() {
  {
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(go version)"
    echo "# nproc: $(nproc); $(lscpu | grep -m1 'Model name' | tr -s ' ')"
    echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$out/machine.txt" >&2
}

testbin() {
  [ -x "$out/cognitomcp.test" ] || go test -c -o "$out/cognitomcp.test" .
  echo "$out/cognitomcp.test"
}

# median NAME FIELD FILE: the median of FIELD ("ns/op", "allocs/op", ...)
# over the lines of benchmark NAME (without the -GOMAXPROCS suffix).
median() {
  awk -v name="$1" -v unit="$2" '
    { n = $1; sub(/-[0-9]+$/, "", n) }
    n == name { for (i = 3; i < NF; i++) if ($(i+1) == unit) v[c++] = $i }
    END {
      if (c == 0) { print "NaN"; exit }
      for (i = 0; i < c; i++) for (j = i + 1; j < c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      print (c % 2) ? v[int(c/2)] : (v[c/2-1] + v[c/2]) / 2
    }' "$3"
}

# check DESCRIPTION OK: prints a verdict line.
check() { if [ "$2" = 1 ]; then printf '  met      %s\n' "$1"; else printf '  NOT MET  %s\n' "$1"; fi; }

micro() {
  local bin f=$out/micro.txt
  bin=$(testbin)
  log "micro: $count interleaved runs of $benchtime per row"
  : >"$f"
  for _ in $(seq "$count"); do
    "$bin" -test.run '^$' -test.bench '^(BenchmarkWarmPath|BenchmarkVerify|BenchmarkTokenKey)$' \
      -test.benchmem -test.benchtime "$benchtime" | grep '^Benchmark' >>"$f"
  done
  "$benchstat" -col /impl -filter '.name:WarmPath' "$f"
  "$benchstat" -col /impl -filter '.name:Verify' "$f"
  "$benchstat" -filter '.name:TokenKey' "$f"

  local w=BenchmarkWarmPath summary
  summary=$(awk -v cb="$(median $w/token=cognito/impl=bare ns/op "$f")" \
    -v cm="$(median $w/token=cognito/impl=cognitomcp ns/op "$f")" \
    -v cg="$(median $w/token=cognito/impl=gosdk-oidc ns/op "$f")" \
    -v ca="$(median $w/token=cognito/impl=cognitomcp allocs/op "$f")" \
    -v pb="$(median $w/token=proxy/impl=bare ns/op "$f")" \
    -v pm="$(median $w/token=proxy/impl=cognitomcp ns/op "$f")" \
    -v pa="$(median $w/token=proxy/impl=cognitomcp allocs/op "$f")" \
    -v vo="$(median BenchmarkVerify/impl=cognitomcp ns/op "$f")" \
    -v vg="$(median BenchmarkVerify/impl=go-oidc ns/op "$f")" 'BEGIN {
      printf "cognito %.0f %.0f %.1f %.2f\n", cm - cb, ca, (cg - cb) / (cm - cb), 0
      printf "proxy %.0f %.0f 0 0\n", pm - pb, pa
      printf "cold 0 0 0 %.2f\n", vo / vg
    }')
  echo
  echo "Targets (medians; overhead = wrapped − bare handler):"
  while read -r kind ns allocs speedup ratio; do
    case $kind in
    cognito)
      check "Cognito token: RequireToken+RequireGroups overhead ${ns} ns ≤ 1000 ns" "$([ "$ns" -le 1000 ] && echo 1)"
      check "Cognito token: ${allocs} allocs ≤ 3" "$([ "$allocs" -le 3 ] && echo 1)"
      check "go-sdk RequireBearerToken+go-oidc overhead / ours = ${speedup}× ≥ 40×" "$(awk -v s="$speedup" 'BEGIN{print (s >= 40)}')" ;;
    proxy)
      check "proxy token: RequireToken+RequireGroups overhead ${ns} ns ≤ 1000 ns" "$([ "$ns" -le 1000 ] && echo 1)"
      check "proxy token: ${allocs} allocs ≤ 3" "$([ "$allocs" -le 3 ] && echo 1)" ;;
    cold)
      check "cold: Verify / go-oidc Verify = ${ratio}× ≤ 1.2×" "$(awk -v r="$ratio" 'BEGIN{print (r <= 1.2)}')" ;;
    esac
  done <<<"$summary"
}

heap() {
  local bin
  bin=$(testbin)
  log "heap: 100,000 cached tokens, 3 runs"
  "$bin" -test.run '^$' -test.bench '^BenchmarkTokenCacheHeap$' -test.benchtime 1x -test.count 3 |
    grep '^Benchmark' >"$out/heap.txt"
  "$benchstat" "$out/heap.txt"
}

login() {
  local bin
  bin=$(testbin)
  log "login: sign-ins per second, 5 runs of 2s"
  "$bin" -test.run '^$' -test.bench '^BenchmarkLoginFlow$' -test.benchmem -test.benchtime 2s -test.count 5 |
    grep '^Benchmark' >"$out/login.txt"
  "$benchstat" "$out/login.txt"
}

# wrk_stats FILE: "requests/s p99-µs" of one wrk --latency report.
wrk_stats() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx/ { bad = $NF }
    END { if (bad) { print "wrk: " bad " non-2xx answers" > "/dev/stderr"; exit 1 } printf "%.0f %.0f\n", rps, p99 }' "$1"
}

load() {
  command -v wrk >/dev/null || { log "wrk missing: apt-get install -y wrk"; return 1; }
  go build -o "$out/loadserver" ./bench/loadserver
  local f=$out/load.txt
  : >"$f"
  for handler in gosdk json; do
    log "load: handler=$handler, $rounds rounds of wrk $wrk_args per side"
    "$out/loadserver" -handler "$handler" >"$out/loadserver.json" 2>"$out/loadserver.log" &
    local pid=$!
    for _ in $(seq 50); do [ -s "$out/loadserver.json" ] && break; sleep 0.1; done
    local auth open token
    auth=$(sed 's/.*"auth":"\([^"]*\)".*/\1/' "$out/loadserver.json")
    open=$(sed 's/.*"open":"\([^"]*\)".*/\1/' "$out/loadserver.json")
    token=$(sed 's/.*"token":"\([^"]*\)".*/\1/' "$out/loadserver.json")
    for r in $(seq "$rounds"); do
      # Both sides get the same request bytes, Authorization included: the
      # open server ignores it, so the difference is the authentication.
      for load in saturated light; do
        local args=$wrk_args
        [ "$load" = light ] && args=$wrk_light_args
        for side in open auth; do
          local url=$open
          [ "$side" = auth ] && url=$auth
          # shellcheck disable=SC2086 # args is a list of flags
          TOKEN="$token" wrk $args --latency -s bench/loadserver/mcp.lua "$url" >"$out/wrk-$handler-$load-$side-$r.txt"
          echo "$handler $load $side $(wrk_stats "$out/wrk-$handler-$load-$side-$r.txt")" >>"$f"
        done
      done
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
  echo
  echo "medians of $rounds rounds; saturated: wrk $wrk_args; light: wrk $wrk_light_args"
  awk '
    function med(a, n,   i, j, t) {
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[int(n/2)] : (a[n/2-1] + a[n/2]) / 2
    }
    function col(k, f,   i, a) { for (i = 0; i < n[k]; i++) a[i] = v[k, i, f]; return med(a, n[k]) }
    { k = $1 " " $2 " " $3; i = n[k]++; v[k, i, 1] = $4; v[k, i, 2] = $5 }
    END {
      split("gosdk json", hs, " ")
      for (h = 1; h <= 2; h++) {
        H = hs[h]
        o = col(H " saturated open", 1); a = col(H " saturated auth", 1)
        op = col(H " saturated open", 2); ap = col(H " saturated auth", 2)
        lo = col(H " light open", 2); la = col(H " light auth", 2)
        printf "  handler=%-5s saturated: open %6.0f req/s, auth %6.0f req/s = %5.1f%% (≥ 90%%: %s); p99 open %6.0f µs, auth %6.0f µs, added %5.0f µs (≤ 1000: %s)\n",
          H, o, a, 100 * a / o, (a >= 0.9 * o) ? "met" : "NOT MET", op, ap, ap - op, (ap - op <= 1000) ? "met" : "NOT MET"
        printf "  handler=%-5s light:     p99 open %6.0f µs, auth %6.0f µs, added %5.0f µs (≤ 1000: %s)\n",
          H, lo, la, la - lo, (la - lo <= 1000) ? "met" : "NOT MET"
      }
    }' "$f"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(micro heap login load)
machine
rm -f "$out/cognitomcp.test"
for s in "${steps[@]}"; do
  case $s in
  micro | heap | login | load) "$s" ;;
  all) micro; heap; login; load ;;
  *) echo "usage: scripts/bench.sh [micro|heap|login|load|all]..." >&2; exit 2 ;;
  esac
done
