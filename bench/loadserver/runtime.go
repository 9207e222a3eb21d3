package main

import (
	"fmt"
	"math"
	"net/http"
	"runtime/metrics"
	"strings"
)

// runtimeSamples are the cumulative runtime metrics /debug/runtime reports:
// what the process has done so far, so that the difference of two readings
// taken around a wrk run is what that run cost the runtime: GC cycles,
// allocation, GC CPU (which the runtime credits when a cycle ends),
// goroutines started, and the scheduling waits it samples (about one
// goroutine transition in eight).
var runtimeSamples = []string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/gc/mark/assist:cpu-seconds",
	"/sched/goroutines-created:goroutines",
	"/sched/latencies:seconds",
}

// latencyEdges are the thresholds at which /debug/runtime counts a
// histogram's events, 2^20 and 2^22 ns (1.05 and 4.19 ms): edges of the
// runtime's time buckets, so that a count is exactly of the events that
// lasted at least that long.
var latencyEdges = []float64{0x1p20 / 1e9, 0x1p22 / 1e9}

// runtimeMetrics serves GET /debug/runtime: one line of "name value" pairs,
// space-separated, for each of runtimeSamples; a histogram (in seconds)
// gives its count ("name:count"), the count at or above each of
// latencyEdges ("name:ge1ms", "name:ge4ms") and the sum of its buckets'
// lower edges ("name:sum", a lower bound of the total). scripts/bench.sh's
// deep step reads it before and after every wrk run.
func runtimeMetrics(w http.ResponseWriter, _ *http.Request) {
	samples := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var b strings.Builder
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			fmt.Fprintf(&b, "%s %d ", s.Name, s.Value.Uint64())
		case metrics.KindFloat64:
			fmt.Fprintf(&b, "%s %g ", s.Name, s.Value.Float64())
		case metrics.KindFloat64Histogram:
			h := s.Value.Float64Histogram()
			var count uint64
			var sum float64
			ge := make([]uint64, len(latencyEdges))
			for i, n := range h.Counts {
				lo := h.Buckets[i]
				count += n
				if !math.IsInf(lo, -1) && lo > 0 {
					sum += lo * float64(n)
				}
				for j, edge := range latencyEdges {
					if lo >= edge {
						ge[j] += n
					}
				}
			}
			fmt.Fprintf(&b, "%s:count %d %s:sum %g ", s.Name, count, s.Name, sum)
			for j, edge := range latencyEdges {
				fmt.Fprintf(&b, "%s:ge%s %d ", s.Name, edgeName(edge), ge[j])
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, strings.TrimSpace(b.String()))
}

// edgeName is a latency edge in whole milliseconds, rounded down: "1ms"
// for 2^20 ns.
func edgeName(s float64) string { return fmt.Sprintf("%dms", int(s*1e3)) }
