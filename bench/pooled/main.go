// Command pooled reads the latency histograms scripts/bench.sh's deep step
// saves from every wrk run and reports the p99 of each listener over all of
// a configuration's rounds pooled, with what the measured server's auth
// listener adds over its open one, less what the A/A control's "auth"
// listener adds over its own, and a bootstrap interval over rounds.
//
// A one-second round's p99 rests on its slowest ~1 % of a few thousand
// requests, so a median of per-round differences swings by milliseconds;
// pooling the rounds' histograms is the p99 of one long run, with the
// machine's wander spread over the four listeners alike by the rounds'
// interleaving. The bootstrap resamples whole rounds (the four listeners of
// a round together), so it keeps the pairing the interleaving buys.
//
// Input, one line per wrk run:
//
//	CONFIG SERVER SIDE ROUND VALUE COUNT VALUE COUNT ...
//
// SERVER is test or control, SIDE auth or open, VALUE a latency in µs and
// COUNT how many of the run's requests wrk recorded at it (bench/loadserver/
// mcp.lua writes the pairs). Usage: pooled [-p 99] [-bound 1ms] FILE
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	p := flag.Float64("p", 99, "the percentile")
	bound := flag.Duration("bound", time.Millisecond, "the target: at most this much added")
	resamples := flag.Int("resamples", 2000, "bootstrap resamples")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pooled [-p 99] [-bound 1ms] [-resamples 2000] FILE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "pooled:", err)
		os.Exit(1)
	}
	defer f.Close()
	configs, err := parse(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pooled:", err)
		os.Exit(1)
	}
	for _, c := range configs {
		report(os.Stdout, c, c.analyze(*p, *resamples), *p, *bound)
	}
}

// The four listeners of a round, in this order.
const (
	testAuth = iota
	testOpen
	controlAuth
	controlOpen
	listeners
)

var listenerOf = map[string]int{"test auth": testAuth, "test open": testOpen, "control auth": controlAuth, "control open": controlOpen}

// hist is one wrk run's latency histogram: values (µs) ascending, and the
// number of requests at each.
type hist struct {
	values []int64
	counts []int64
}

// config holds a configuration's rounds, each with the histograms of its
// four listeners; only rounds that have all four count.
type config struct {
	name   string
	rounds map[int]*[listeners]*hist
}

func parse(r io.Reader) ([]*config, error) {
	var order []*config
	byName := map[string]*config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 || len(f)%2 != 0 {
			return nil, fmt.Errorf("line %d: want CONFIG SERVER SIDE ROUND and value-count pairs", line)
		}
		l, ok := listenerOf[f[1]+" "+f[2]]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown listener %q", line, f[1]+" "+f[2])
		}
		round, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("line %d: round: %w", line, err)
		}
		h, err := parseHist(f[4:])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		c := byName[f[0]]
		if c == nil {
			c = &config{name: f[0], rounds: map[int]*[listeners]*hist{}}
			byName[f[0]] = c
			order = append(order, c)
		}
		rd := c.rounds[round]
		if rd == nil {
			rd = new([listeners]*hist)
			c.rounds[round] = rd
		}
		if rd[l] != nil {
			return nil, fmt.Errorf("line %d: %s %s round %d twice", line, f[0], f[1]+" "+f[2], round)
		}
		rd[l] = h
	}
	return order, sc.Err()
}

func parseHist(f []string) (*hist, error) {
	h := &hist{values: make([]int64, 0, len(f)/2), counts: make([]int64, 0, len(f)/2)}
	for i := 0; i < len(f); i += 2 {
		v, err1 := strconv.ParseInt(f[i], 10, 64)
		n, err2 := strconv.ParseInt(f[i+1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if v < 0 || n < 0 {
			return nil, fmt.Errorf("negative value or count: %d %d", v, n)
		}
		if i > 0 && v <= h.values[len(h.values)-1] {
			return nil, fmt.Errorf("values not ascending at %d", v)
		}
		h.values = append(h.values, v)
		h.counts = append(h.counts, n)
	}
	return h, nil
}

// analysis is a configuration's pooled percentiles (µs) and the bootstrap
// distributions of the added latency.
type analysis struct {
	rounds  int
	pooled  [listeners]int64
	added   float64 // test auth − test open
	control float64 // control auth − control open
	less    float64 // added − control
	// 95 % percentile-bootstrap intervals of the three.
	addedCI, controlCI, lessCI [2]float64
}

// complete returns the rounds that have all four listeners, in order.
func (c *config) complete() [][listeners]*hist {
	keys := make([]int, 0, len(c.rounds))
	for k, rd := range c.rounds {
		if !slices.Contains(rd[:], nil) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([][listeners]*hist, len(keys))
	for i, k := range keys {
		out[i] = *c.rounds[k]
	}
	return out
}

func (c *config) analyze(p float64, resamples int) analysis {
	rounds := c.complete()
	a := analysis{rounds: len(rounds)}
	if len(rounds) == 0 {
		return a
	}
	var pools [listeners]*pool
	for l := range listeners {
		pools[l] = newPool(rounds, l)
	}
	all := make([]int, len(rounds))
	for i := range all {
		all[i] = i
	}
	for l := range listeners {
		a.pooled[l] = pools[l].percentile(all, p)
	}
	a.added, a.control, a.less = differences(a.pooled)
	rng := rand.New(rand.NewPCG(1, 2)) // the same input gives the same interval
	var added, control, less []float64
	pick := make([]int, len(rounds))
	var q [listeners]int64
	for range resamples {
		for i := range pick {
			pick[i] = rng.IntN(len(rounds))
		}
		for l := range listeners {
			q[l] = pools[l].percentile(pick, p)
		}
		d, c, dc := differences(q)
		added, control, less = append(added, d), append(control, c), append(less, dc)
	}
	a.addedCI, a.controlCI, a.lessCI = interval(added), interval(control), interval(less)
	return a
}

func differences(q [listeners]int64) (added, control, less float64) {
	added = float64(q[testAuth] - q[testOpen])
	control = float64(q[controlAuth] - q[controlOpen])
	return added, control, added - control
}

// interval is the 2.5th and 97.5th percentiles of xs (sorted in place).
func interval(xs []float64) [2]float64 {
	if len(xs) == 0 {
		return [2]float64{math.NaN(), math.NaN()}
	}
	slices.Sort(xs)
	at := func(f float64) float64 { return xs[min(len(xs)-1, int(f*float64(len(xs))))] }
	return [2]float64{at(0.025), at(0.975)}
}

// pool is one listener's histograms over all rounds, their values mapped
// to indexes of the listener's distinct values, so that pooling any
// resample of rounds is adding counts into one array.
type pool struct {
	values []int64   // distinct values, ascending
	index  [][]int32 // per round, the index in values of each of its values
	counts [][]int64 // per round, its counts
	sum    []int64   // scratch: pooled counts per distinct value
}

func newPool(rounds [][listeners]*hist, l int) *pool {
	var all []int64
	for _, rd := range rounds {
		all = append(all, rd[l].values...)
	}
	slices.Sort(all)
	p := &pool{values: slices.Compact(all)}
	for _, rd := range rounds {
		h := rd[l]
		idx := make([]int32, len(h.values))
		for i, v := range h.values {
			j, _ := slices.BinarySearch(p.values, v)
			idx[i] = int32(j)
		}
		p.index = append(p.index, idx)
		p.counts = append(p.counts, h.counts)
	}
	p.sum = make([]int64, len(p.values))
	return p
}

// percentile returns the p-th percentile of the pooled histograms of the
// rounds picked (a round may be picked more than once): the smallest value
// at which the cumulative count reaches rank round(p/100 × n + 0.5), as wrk
// computes its own percentiles.
func (p *pool) percentile(picked []int, pct float64) int64 {
	clear(p.sum)
	var n int64
	for _, r := range picked {
		for i, j := range p.index[r] {
			p.sum[j] += p.counts[r][i]
			n += p.counts[r][i]
		}
	}
	if n == 0 {
		return 0
	}
	rank := int64(math.Round(pct/100*float64(n) + 0.5))
	var cum int64
	for j, c := range p.sum {
		if cum += c; cum >= rank {
			return p.values[j]
		}
	}
	return p.values[len(p.values)-1]
}

// verdict is "met" when the whole interval is at most bound, "NOT MET" when
// none of it is, "not resolved" otherwise.
func verdict(ci [2]float64, bound float64) string {
	switch {
	case ci[1] <= bound:
		return "met"
	case ci[0] > bound:
		return "NOT MET"
	}
	return "not resolved"
}

func report(w io.Writer, c *config, a analysis, p float64, bound time.Duration) {
	if a.rounds == 0 {
		fmt.Fprintf(w, "  %s: no round with all four listeners\n", c.name)
		return
	}
	ms := func(us float64) string { return strconv.FormatFloat(us/1000, 'f', 2, 64) }
	signed := func(us float64) string { return fmt.Sprintf("%+.2f", us/1000) }
	ci := func(x [2]float64) string { return "[" + signed(x[0]) + " … " + signed(x[1]) + "]" }
	fmt.Fprintf(w, "  %s: p%g of all %d rounds pooled, ms: test auth %s, open %s; control auth %s, open %s; [95 %% bootstrap over rounds]\n",
		c.name, p, a.rounds, ms(float64(a.pooled[testAuth])), ms(float64(a.pooled[testOpen])),
		ms(float64(a.pooled[controlAuth])), ms(float64(a.pooled[controlOpen])))
	rows := []struct {
		label string
		x     float64
		ci    [2]float64
	}{{"added", a.added, a.addedCI}, {"added by the control (A/A)", a.control, a.controlCI}, {"added, less the control", a.less, a.lessCI}}
	for _, r := range rows {
		fmt.Fprintf(w, "    %-28s %s ms %s", r.label, signed(r.x), ci(r.ci))
		if r.label != rows[1].label {
			fmt.Fprintf(w, " (≤ %g ms: %s)", float64(bound.Microseconds())/1000, verdict(r.ci, float64(bound.Microseconds())))
		}
		fmt.Fprintln(w)
	}
}
