#!/usr/bin/env bash
# Runs cognitomcp's performance benchmarks with their baselines in the same
# run and compares them with benchstat (BENCHMARKS.md explains every table).
#
# Usage: scripts/bench.sh [micro|heap|login|load|deep|all]...   (default: all)
#
#   micro  BenchmarkWarmPath (RequireToken+RequireGroups on a cached token,
#          against the bare handler and go-sdk's RequireBearerToken with a
#          go-oidc verifier), BenchmarkVerify (first verification against a
#          bare go-oidc Verify), BenchmarkTokenKey; rows interleaved COUNT times
#   heap   BenchmarkTokenCacheHeap: heap of 100,000 cached tokens
#   login  BenchmarkLoginFlow: sign-ins per second, memory store and Redis
#          (Redis rows need redis-server, and are skipped without it)
#   load   wrk against bench/loadserver's MCP endpoint, with and without
#          auth, ROUNDS times, loopback only, the server on CPU 0 and wrk on
#          CPU 1: saturated, one side after the other (WRK_ARGS), for
#          throughput and p99 behind a deep queue; paired, both sides at
#          once (WRK_PAIRED_ARGS each: still saturated, with a short queue),
#          for what auth adds to a request's latency with the machine's
#          noise shared by both sides; one connection (WRK_LIGHT_ARGS) for
#          the p99 a request pays without queueing. Each handler (HANDLERS) runs
#          once per BALLASTS entry: the MiB of live heap the server holds,
#          0 (this server's own ~1 MiB: the GC runs every few requests) and
#          64 (a GC pace like a server with live data)
#   deep   the whole server behind a deep queue, against an A/A control:
#          two loadservers on CPU 0, FRONT's and FRONT=none (the bare
#          handler on both listeners), and each round wrk (WRK_DEEP_ARGS)
#          on each of their four listeners, one at a time, in a shuffled
#          order, DEEP_ROUNDS rounds for each DEEP_HANDLERS x BALLASTS: the
#          p99 the auth listener adds, less what the control's "auth"
#          listener adds in the same round, and what each run cost the
#          runtime per request (GC cycles, allocation, GC CPU, goroutines,
#          scheduling waits: loadserver's /debug/runtime, read with curl
#          before and after the run); then bench/pooled on the rounds'
#          wrk histograms ($OUT/deep-hist.txt): the same differences per
#          round and pooled; give it several runs' files to combine them.
#          DEEP_CONTROL=swap replaces the A/A control with a second
#          loadserver of the same FRONT started with -swap (the order of
#          its two listeners reversed): the estimate is then the mean of
#          the two servers' differences, which cancels what the order
#          gives one listener over the other with half the noise of one
#          server's difference (the control's subtraction doubles it), and
#          half their difference measures that order's effect.
#          DEEP_CONTROL=off runs the test server alone, its two listeners a
#          round in a shuffled order: the estimate is its own difference,
#          for when the order is known to be nil (the swapped twin's
#          experiment found it so), at twice the rounds per minute
#
# Environment: COUNT (default 10), BENCHTIME (default 300ms), ROUNDS (5),
# WRK_ARGS (default "-t1 -c32 -d10s"), WRK_PAIRED_ARGS (default
# "-t1 -c2 -d10s"), WRK_LIGHT_ARGS (default "-t1 -c1 -d5s"), HANDLERS
# (default "gosdk json"), BALLASTS (default "0 64"), FRONT (default proxy;
# none, gosdk, copy and copy+alloc are the control runs BENCHMARKS.md
# describes), DEEP_ROUNDS (100), WRK_DEEP_ARGS ("-t1 -c32 -d1s"),
# DEEP_HANDLERS ("session gosdk": go-sdk as examples/server configures it,
# wrk's requests spread over 32 sessions, then stateless), DEEP_CONTROL
# (none: the A/A control, the default; swap, off: see deep), LOADSERVER_ARGS
# (more loadserver flags, e.g. "-revocation-check 5m"), OUT (default
# .cache/bench). Results go to $OUT/*.txt; to compare two runs: benchstat
# old/micro.txt new/micro.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-.cache/bench}
count=${COUNT:-10}
benchtime=${BENCHTIME:-300ms}
rounds=${ROUNDS:-5}
wrk_args=${WRK_ARGS:-"-t1 -c32 -d10s"}
wrk_light_args=${WRK_LIGHT_ARGS:-"-t1 -c1 -d5s"}
wrk_paired_args=${WRK_PAIRED_ARGS:-"-t1 -c2 -d10s"}
handlers=${HANDLERS:-"gosdk json"}
ballasts=${BALLASTS:-"0 64"}
front=${FRONT:-proxy}
deep_rounds=${DEEP_ROUNDS:-100}
wrk_deep_args=${WRK_DEEP_ARGS:-"-t1 -c32 -d1s"}
deep_handlers=${DEEP_HANDLERS:-"session gosdk"}
deep_control=${DEEP_CONTROL:-none}
loadserver_args=${LOADSERVER_ARGS:-}
mkdir -p "$out"

log() { printf '==> %s\n' "$*" >&2; }

# server_pids are the loadservers running: stopped on any exit.
server_pids=()
stop_servers() {
  [ ${#server_pids[@]} = 0 ] && return
  kill "${server_pids[@]}" 2>/dev/null || true
  wait "${server_pids[@]}" 2>/dev/null || true
  server_pids=()
}
trap stop_servers EXIT

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

# wrk_stats FILE: "requests/s p99-µs requests p50-µs" of one wrk --latency
# report.
wrk_stats() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v
    }
    /Requests\/sec:/ { rps = $2 }
    / requests in / { n = $1 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx/ { bad = $NF }
    END { if (bad) { print "wrk: " bad " non-2xx answers" > "/dev/stderr"; exit 1 } printf "%.0f %.0f %d %.0f\n", rps, p99, n, p50 }' "$1"
}

# cpu_ticks PID: the user and system time PID has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# pin CPU CMD...: runs CMD on CPU alone when the machine has two CPUs or
# more (wrk and the server then do not take each other's time, which on a
# shared core shows up as milliseconds of p99 on both sides), else as is. It
# execs CMD in place of its shell: call it in the background or in a
# subshell, so that $! is CMD itself.
pin() {
  local cpu=$1
  shift
  if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

# start_server HANDLER BALLAST FRONT PREFIX [FLAG...]: starts a loadserver
# on CPU 0 (with the FLAGs, if any),
# its line in PREFIX.json and its log in PREFIX.log, adds it to server_pids
# and waits until it has signed in.
start_server() {
  : >"$4.json"
  # shellcheck disable=SC2086 # a list of flags
  pin 0 "$out/loadserver" -handler "$1" -ballast "$2" -front "$3" $loadserver_args "${@:5}" >"$4.json" 2>"$4.log" &
  server_pids+=($!)
  for _ in $(seq 100); do [ -s "$4.json" ] && break; sleep 0.1; done
  [ -s "$4.json" ] || { log "loadserver did not start:"; cat "$4.log" >&2; return 1; }
  local side
  for side in auth open; do
    session_of[$(ls_field "$side" "$4.json")]=$(ls_field "${side}_session" "$4.json")
  done
}

# session_of maps a listener's MCP URL to the session loadserver opened
# through it (-handler session; empty otherwise), for mcp.lua.
declare -A session_of=()

# ls_field NAME FILE: the field NAME (auth, open, token, auth_session,
# open_session) of a loadserver's line; empty when it has none.
ls_field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' "$2"; }

# mcp_wrk TOKEN ARGS URL: wrk ARGS on CPU 1 with mcp.lua against URL, with
# the bearer token and the listener's session; with WRK_HIST set, mcp.lua
# writes the run's latency histogram there. It execs wrk (see pin): run it
# in a subshell or in the background.
mcp_wrk() {
  # shellcheck disable=SC2086 # ARGS is a list of flags
  TOKEN="$1" SESSION="${session_of[$3]:-}" WRK_HIST="${WRK_HIST:-}" pin 1 wrk $2 --latency -s bench/loadserver/mcp.lua "$3"
}

# runtime_delta BEFORE AFTER: what the loadserver's runtime did between two
# readings of its /debug/runtime: GC cycles, bytes and objects allocated, GC
# CPU seconds (all, and assists; credited when a cycle ends), goroutines
# started, and the scheduling waits of 2^22 ns (4.19 ms) or more among
# those the runtime samples (about one in eight).
runtime_delta() {
  echo "$1 | $2" | awk '
    { for (i = 1; i <= NF && $i != "|"; i += 2) a[$i] = $(i + 1); for (i++; i < NF; i += 2) b[$i] = $(i + 1) }
    END {
      n = split("/gc/cycles/total:gc-cycles /gc/heap/allocs:bytes /gc/heap/allocs:objects /cpu/classes/gc/total:cpu-seconds /cpu/classes/gc/mark/assist:cpu-seconds /sched/goroutines-created:goroutines /sched/latencies:seconds:ge4ms", k, " ")
      for (i = 1; i <= n; i++) {
        if (!(k[i] in a) || !(k[i] in b)) { print "runtime_delta: no " k[i] > "/dev/stderr"; exit 1 }
        printf "%s%.9g", (i > 1 ? " " : ""), b[k[i]] - a[k[i]]
      }
      printf "\n"
    }'
}

# order_stats is awk for medians and their intervals: sort, med, and
# lowk(n), the largest k such that [x(k), x(n+1-k)] of n sorted values
# covers their median with probability 0.9 or more (0: none does).
order_stats='
  function sort(a, n,   i, j, t) {
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  }
  function med(a, n) { sort(a, n); return (n % 2) ? a[int(n/2)] : (a[n/2-1] + a[n/2]) / 2 }
  function lowk(n,   k, cum, c) {
    cum = 0; c = 1
    for (k = 1; ; k++) { cum += c; if (1 - 2 * cum / 2^n < 0.9 || k > n / 2) return k - 1; c = c * (n - k + 1) / k }
  }
  # verdict: met when all of [lo, hi] meets the bound (at least it when
  # above, at most it otherwise), NOT MET when none of it does.
  function verdict(K, lo, hi, bound, above) {
    if (K == 0) return "too few rounds"
    if (above) return (lo >= bound) ? "met" : (hi < bound) ? "NOT MET" : "not resolved"
    return (hi <= bound) ? "met" : (lo > bound) ? "NOT MET" : "not resolved"
  }'

# build_loadserver: installs wrk and curl when missing (apt-get) and builds
# bench/loadserver into $out.
build_loadserver() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v curl >/dev/null || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
      { log "could not install ${need[*]}"; return 1; }
  fi
  go build -o "$out/loadserver" ./bench/loadserver
}

load() {
  build_loadserver || return 1
  log "load: CPU per request through each stack, in process, one P as the server has, $count interleaved runs"
  : >"$out/handler.txt"
  for _ in $(seq "$count"); do
    go test -run '^$' -bench '^BenchmarkHandler$' -benchmem -cpu 1 -benchtime "$benchtime" ./bench/loadserver |
      grep '^Benchmark' >>"$out/handler.txt"
  done
  "$benchstat" -col /side "$out/handler.txt"
  local f=$out/load.txt configs=()
  : >"$f"
  for handler in $handlers; do
    for ballast in $ballasts; do
      local config=$handler/$ballast
      configs+=("$config")
      log "load: handler=$handler, ballast ${ballast} MiB, front=$front: $rounds rounds of: wrk $wrk_args per side, wrk $wrk_paired_args on both at once, wrk $wrk_light_args per side"
      # The server on CPU 0 (its GOMAXPROCS follows the affinity: 1), wrk on
      # CPU 1: on this 2-vCPU kind of machine, the closest to wrk on another host.
      start_server "$handler" "$ballast" "$front" "$out/loadserver" || return 1
      local pid=${server_pids[-1]} auth open token
      auth=$(ls_field auth "$out/loadserver.json")
      open=$(ls_field open "$out/loadserver.json")
      token=$(ls_field token "$out/loadserver.json")
      for r in $(seq "$rounds"); do
        # Both sides get the same request bytes, Authorization included: the
        # open server ignores it, so the difference is the authentication.
        # Sides alternate, and which goes first alternates by round: the
        # second run of a pair starts with the GC debt of the first.
        local order="open auth"
        [ $((r % 2)) = 0 ] && order="auth open"
        for load in saturated light; do
          local args=$wrk_args
          [ "$load" = light ] && args=$wrk_light_args
          for side in $order; do
            local url=$open w=$out/wrk-$handler-$ballast-$load-$side-$r.txt cpu0 ticks stats
            [ "$side" = auth ] && url=$auth
            cpu0=$(cpu_ticks "$pid")
            (mcp_wrk "$token" "$args" "$url") >"$w"
            ticks=$(($(cpu_ticks "$pid") - cpu0))
            stats=$(wrk_stats "$w")
            echo "$config $load $side $r $stats $ticks" >>"$f"
          done
        done
        # Paired: both sides at once, against the one server process, so that
        # its GC cycles and the machine's hiccups, which make the p99 of
        # separate runs wander by milliseconds, hit both sides alike; which
        # wrk starts first alternates by round. Two connections a side keep
        # the server busy with a queue short enough for a request's own
        # added latency to show.
        local first=$open second=$auth bg
        [ $((r % 2)) = 0 ] && first=$auth second=$open
        mcp_wrk "$token" "$wrk_paired_args" "$first" >"$out/wrk-paired-first.txt" &
        bg=$!
        (mcp_wrk "$token" "$wrk_paired_args" "$second") >"$out/wrk-paired-second.txt"
        wait "$bg"
        local po=first pa=second
        [ "$first" = "$auth" ] && po=second pa=first
        mv "$out/wrk-paired-$po.txt" "$out/wrk-$handler-$ballast-paired-open-$r.txt"
        mv "$out/wrk-paired-$pa.txt" "$out/wrk-$handler-$ballast-paired-auth-$r.txt"
        for side in open auth; do
          local stats
          stats=$(wrk_stats "$out/wrk-$handler-$ballast-paired-$side-$r.txt")
          echo "$config paired $side $r $stats 0" >>"$f"
        done
      done
      stop_servers
    done
  done
  echo
  echo "front=$front; $rounds rounds; saturated: wrk $wrk_args per side in turn; paired: wrk $wrk_paired_args per side at once;"
  echo "light: wrk $wrk_light_args per side in turn; ballast: MiB of live heap the server holds (GC pacing)."
  echo "auth/open: median over rounds of auth's requests ÷ open's; added: median over rounds of (auth − open) within a round;"
  echo "[lo … hi]: the order statistics that hold that median with ≥ 90 % probability (min … max for 5 or 6 rounds,"
  echo "2nd … 7th of 8); met: all of it meets the target, NOT MET: none of it, else not resolved. CPU: the server's"
  echo "user+system time per request (at saturation the server is 100 % busy, so this is 1 ÷ throughput)."
  awk -v configs="${configs[*]}" -v hz="$(getconf CLK_TCK)" "$order_stats"'
    {
      v[$1, $2, $3, $4, "rps"] = $5; v[$1, $2, $3, $4, "p99"] = $6; v[$1, $2, $3, $4, "p50"] = $8
      v[$1, $2, $3, $4, "cpu"] = ($7 > 0) ? $9 * 1e6 / hz / $7 : 0
      if ($4 > R) R = $4
    }
    function report(C, L,   r, n, a, o, ac, oc, q, d, d50, up, parts, mq, md, md50) {
      n = 0; up = 0
      for (r = 1; r <= R; r++) {
        a[n] = v[C, L, "auth", r, "rps"]; o[n] = v[C, L, "open", r, "rps"]; q[n] = a[n] / o[n]
        ac[n] = v[C, L, "auth", r, "cpu"]; oc[n] = v[C, L, "open", r, "cpu"]
        d[n] = v[C, L, "auth", r, "p99"] - v[C, L, "open", r, "p99"]
        d50[n] = v[C, L, "auth", r, "p50"] - v[C, L, "open", r, "p50"]
        if (d[n] > 0) up++
        n++
      }
      K = lowk(n); mq = med(q, n); md = med(d, n); md50 = med(d50, n)
      split(C, parts, "/")
      printf "  %-5s %3s MiB %-9s open %6.0f req/s, auth %6.0f req/s; auth/open %5.1f%%", parts[1], parts[2], L, med(o, n), med(a, n), 100 * mq
      if (K) printf " [%.1f … %.1f]", 100 * q[K-1], 100 * q[n-K]
      if (L == "saturated") printf " (≥ 90%%: %s); CPU/request open %.0f µs, auth %.0f µs", verdict(K, q[K-1], q[n-K], 0.9, 1), med(oc, n), med(ac, n)
      printf "\n  %-23s p99 added %6.0f µs", "", md
      if (K) printf " [%.0f … %.0f]", d[K-1], d[n-K]
      printf ", higher in %d/%d (≤ 1000: %s); p50 added %.0f µs", up, n, verdict(K, d[K-1], d[n-K], 1000, 0), md50
      if (K) printf " [%.0f … %.0f]", d50[K-1], d50[n-K]
      printf "\n"
    }
    END {
      nc = split(configs, cs, " ")
      for (c = 1; c <= nc; c++) { report(cs[c], "saturated"); report(cs[c], "paired"); report(cs[c], "light") }
    }' "$f"
}

# deep: the whole server behind a deep queue, one listener at a time, with
# an A/A control in the same rounds. Separate wrk runs see the machine's
# speed wander by a third between seconds, and one listener can run behind
# the other with the same handler on both; shuffling the four listeners of
# two servers in each round, and subtracting the control's difference of the
# same round, leaves what the front adds.
deep() {
  build_loadserver || return 1
  local f=$out/deep.txt hists=$out/deep-hist.txt configs=() second
  case $deep_control in
    none) second=control ;;
    swap) second=swapped ;;
    off) second= ;;
    *) log "DEEP_CONTROL: $deep_control is not none, swap or off"; return 1 ;;
  esac
  : >"$f"
  : >"$hists"
  for handler in $deep_handlers; do
    for ballast in $ballasts; do
      local config=$handler/$ballast
      configs+=("$config")
      start_server "$handler" "$ballast" "$front" "$out/deep-test" || return 1
      if [ "$second" = swapped ]; then
        log "deep: handler=$handler, ballast $ballast MiB: $deep_rounds rounds of wrk $wrk_deep_args on each listener of two front=$front servers, the second with -swap, shuffled"
        start_server "$handler" "$ballast" "$front" "$out/deep-swapped" -swap || return 1
      elif [ -z "$second" ]; then
        log "deep: handler=$handler, ballast $ballast MiB: $deep_rounds rounds of wrk $wrk_deep_args on each listener of one front=$front server, shuffled"
      else
        log "deep: handler=$handler, ballast $ballast MiB: $deep_rounds rounds of wrk $wrk_deep_args on each listener of front=$front and of front=none, shuffled"
        start_server "$handler" "$ballast" none "$out/deep-control" || return 1
      fi
      # Each server's token (the control accepts any): a proxy's tokens
      # are bound to its own URL.
      local listeners=() url=() rt=() tok=() fr side r i j t stats before after delta
      for fr in test ${second:+"$second"}; do
        for side in auth open; do
          listeners+=("$fr $side")
          url+=("$(ls_field "$side" "$out/deep-$fr.json")")
          rt+=("$(ls_field open "$out/deep-$fr.json" | sed 's,/mcp$,/debug/runtime,')")
          tok+=("$(ls_field token "$out/deep-$fr.json")")
        done
      done
      for r in $(seq "$deep_rounds"); do
        local order=(0 1 2 3)
        [ -z "$second" ] && order=(0 1)
        for ((i = ${#order[@]} - 1; i > 0; i--)); do
          j=$((RANDOM % (i + 1))); t=${order[i]}; order[i]=${order[j]}; order[j]=$t
        done
        for i in "${order[@]}"; do
          local w=$out/wrk-deep.txt
          before=$(curl -fsS "${rt[i]}")
          rm -f "$out/hist-deep.txt"
          (WRK_HIST=$out/hist-deep.txt mcp_wrk "${tok[i]}" "$wrk_deep_args" "${url[i]}") >"$w"
          after=$(curl -fsS "${rt[i]}")
          [ -s "$out/hist-deep.txt" ] || { log "deep: wrk wrote no latency histogram"; return 1; }
          stats=$(wrk_stats "$w")
          delta=$(runtime_delta "$before" "$after")
          echo "$config ${listeners[i]} $r $stats $delta" >>"$f"
          echo "$config ${listeners[i]} $r $(cat "$out/hist-deep.txt")" >>"$hists"
        done
      done
      stop_servers
    done
  done
  echo
  if [ -z "$second" ]; then
    echo "deep: wrk $wrk_deep_args on one listener at a time, $deep_rounds rounds; test: front=$front, alone."
    echo "added: median over rounds of (auth − open) within a round. [lo … hi]: ≥ 90 % order-statistic interval."
  elif [ "$second" = swapped ]; then
    echo "deep: wrk $wrk_deep_args on one listener at a time, $deep_rounds rounds; test: front=$front, swapped: the same"
    echo "with -swap (its listeners' order reversed). added: median over rounds of (auth − open) within a round;"
    echo "mean: of the two servers' (auth − open), which cancels the order; the order: half of test's (auth − open)"
    echo "less swapped's, what the order gives the first listener. [lo … hi]: ≥ 90 % order-statistic interval."
  else
    echo "deep: wrk $wrk_deep_args on one listener at a time, $deep_rounds rounds; test: front=$front, control: front=none"
    echo "(the bare handler on both listeners). added: median over rounds of (auth − open) within a round; less"
    echo "the control: of (test's auth − open) − (control's auth − open). [lo … hi]: ≥ 90 % order-statistic interval."
  fi
  awk -v S="$second" "$order_stats"'
    BEGIN {
      # the runtime_delta fields, per request: label, scale
      nrt = split("GC cycles per 1000|KiB allocated|objects allocated|GC CPU, us|of it assists, us|goroutines started|sampled waits >= 4.2ms /1000", rtl, "|")
      split("1000 0.0009765625 1 1e6 1e6 1 1000", rts, " ")
      # S, the second server: the control (its difference subtracted), the
      # swapped twin (the two differences averaged), or none (test alone)
      sw = (S == "swapped"); alone = (S == "")
    }
    {
      v[$1, $2, $3, $4, "rps"] = $5; v[$1, $2, $3, $4, "p99"] = $6; v[$1, $2, $3, $4, "p50"] = $8; if ($4 > R) R = $4
      for (j = 1; j <= nrt; j++) v[$1, $2, $3, $4, "rt" j] = (NF >= 8 + j && $7 > 0) ? $(8 + j) * rts[j] / $7 : ""
    }
    function show(label, a, n, unit, div,   K, f) {
      K = lowk(n); sort(a, n)
      f = (unit == "%") ? "%.1f" : "%+.2f"
      printf "    %-34s " f " %s", label, med(a, n) / div, unit
      if (K) printf " [" f " … " f "]", a[K-1] / div, a[n-K] / div
    }
    # diff: auth − open of server X in round r, for field F (0 for no
    # server: test alone)
    function diff(C, X, r, F) { return (X == "") ? 0 : v[C, X, "auth", r, F] - v[C, X, "open", r, F] }
    # est: the estimate from the two servers'"'"' differences: less the
    # control, or their mean
    function est(t, c) { return sw ? (t + c) / 2 : t - c }
    function report(C,   r, n, dt, dc, dd, pos, p50, q, qt, qc, up, upc, K, parts, open) {
      n = 0; up = 0; upc = 0
      for (r = 1; r <= R; r++) {
        if (!((C, "test", "auth", r, "p99") in v)) continue
        dt[n] = diff(C, "test", r, "p99"); dc[n] = diff(C, S, r, "p99")
        dd[n] = est(dt[n], dc[n]); pos[n] = (dt[n] - dc[n]) / 2
        p50[n] = diff(C, "test", r, "p50")
        if (sw) p50[n] = (p50[n] + diff(C, S, r, "p50")) / 2
        qt[n] = 100 * v[C, "test", "auth", r, "rps"] / v[C, "test", "open", r, "rps"]
        qc[n] = alone ? 0 : 100 * v[C, S, "auth", r, "rps"] / v[C, S, "open", r, "rps"]
        q[n] = sw ? (qt[n] + qc[n]) / 2 : qt[n]
        open[n] = v[C, "test", "open", r, "p99"]
        up += dt[n] > 0; upc += dd[n] > 0
        n++
      }
      split(C, parts, "/")
      printf "  %-5s %3s MiB: open p99 %.1f ms over %d rounds\n", parts[1], parts[2], med(open, n) / 1000, n
      show("p99 added", dt, n, "ms", 1000); printf ", higher in %d/%d", up, n
      if (alone) { K = lowk(n); printf " (≤ 1 ms: %s)\n", verdict(K, dt[K-1], dt[n-K], 1000, 0) } # dt sorted by show
      else printf "\n"
      if (!alone) { show(sw ? "p99 added on the swapped server" : "p99 added by the control (A/A)", dc, n, "ms", 1000); printf "\n" }
      if (!alone) {
        show(sw ? "p99 added, mean of the two" : "p99 added, less the control", dd, n, "ms", 1000); K = lowk(n) # show sorted dd
        printf ", higher in %d/%d (≤ 1 ms: %s)\n", upc, n, verdict(K, dd[K-1], dd[n-K], 1000, 0)
      }
      if (sw) { show("the order: half test less swapped", pos, n, "ms", 1000); printf "\n" }
      show(sw ? "p50 added, mean of the two" : "p50 added", p50, n, "ms", 1000); printf "\n"
      show(sw ? "requests, auth / open, mean" : "requests, auth / open", q, n, "%", 1)
      if (sw) printf "; test %.1f %%, swapped %.1f %%\n", med(qt, n), med(qc, n)
      else if (alone) printf "\n"
      else printf "; control %.1f %%\n", med(qc, n)
      runtime(C)
    }
    # runtime: what the runtime did per request on the test server'"'"'s two
    # listeners (medians over rounds) and the same-round difference less the
    # control'"'"'s, or the mean of both servers'"'"' differences; nothing when
    # the rounds carry no runtime fields.
    function runtime(C,   j, r, n, a, o, d, K) {
      if (v[C, "test", "auth", 1, "rt1"] == "") return
      printf "    %-30s %10s | %10s | %s\n", "runtime per request", "auth", "open", sw ? "auth − open, mean of the two servers" : alone ? "auth − open" : "auth − open, less the control"
      for (j = 1; j <= nrt; j++) {
        n = 0
        for (r = 1; r <= R; r++) {
          if (!((C, "test", "auth", r, "rt" j) in v)) continue
          a[n] = v[C, "test", "auth", r, "rt" j]; o[n] = v[C, "test", "open", r, "rt" j]
          d[n] = est(a[n] - o[n], diff(C, S, r, "rt" j))
          n++
        }
        printf "      %-28s %10.2f | %10.2f | %+.2f", rtl[j], med(a, n), med(o, n), med(d, n)
        K = lowk(n)
        if (K) printf " [%+.2f … %+.2f]", d[K-1], d[n-K]
        printf "\n"
      }
    }
    END { nc = split(configs, cs, " "); for (c = 1; c <= nc; c++) report(cs[c]) }' configs="${configs[*]}" "$f"
  echo
  echo "deep, from the rounds' wrk histograms (bench/pooled): the differences above per round, and pooled (each"
  echo "listener's p99 over all of a configuration's rounds, as one long run whose wander the four listeners share)."
  go run ./bench/pooled "$hists"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(micro heap login load deep)
machine
rm -f "$out/cognitomcp.test"
for s in "${steps[@]}"; do
  case $s in
  micro | heap | login | load | deep) "$s" ;;
  all) micro; heap; login; load; deep ;;
  *) echo "usage: scripts/bench.sh [micro|heap|login|load|deep|all]..." >&2; exit 2 ;;
  esac
done
