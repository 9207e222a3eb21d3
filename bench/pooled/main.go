// Command pooled reads the latency histograms scripts/bench.sh's deep step
// saves from every wrk run, of one or more runs of the step, and reports,
// for each configuration, what the measured server's auth listener adds to
// the p99 over its open one, what the second server's "auth" listener adds
// over its own, and the estimate from the two, estimated two ways:
//
//   - per round: the median over rounds of each round's own difference
//     (the deep step's estimator);
//   - pooled: each listener's p99 over all rounds' histograms merged, as
//     one long run whose wander the four listeners share (the rounds
//     interleave them).
//
// The intervals: for one run, the deep step's order-statistic interval of
// at least 90 % for the per-round medians, and a 95 % bootstrap that
// resamples whole rounds (the four listeners of a round together, keeping
// the pairing) for the pooled figures; for several runs, a 95 % bootstrap
// for both that resamples the runs and then each drawn run's rounds, so
// that differences between runs widen the interval as they should. Fewer
// than 10 rounds get no interval and no verdict.
//
// Input, one line per wrk run:
//
//	CONFIG SERVER SIDE ROUND VALUE COUNT VALUE COUNT ...
//
// SERVER is test, control or swapped, SIDE auth or open, VALUE a latency in µs and
// COUNT how many of the run's requests wrk recorded at it (bench/loadserver/
// mcp.lua writes the pairs). Usage: pooled [-p 99] [-bound 1ms] [-level 95]
// FILE... (each FILE one run: its rounds are distinct from another file's;
// -level the bootstrap intervals' coverage, in per cent).
//
// The second server is the A/A control (DEEP_CONTROL=none: the bare
// handler on both listeners), and the estimate the test server's
// difference less the control's; or the test server's twin with its
// listeners' order reversed (DEEP_CONTROL=swap, loadserver -swap), and the
// estimate the mean of the two servers' differences, in which whatever the
// order gives one listener cancels. A configuration has one or the other,
// or neither (DEEP_CONTROL=off: the test server alone, its two listeners a
// round, and the estimate its own difference).
package main

import (
	"bufio"
	"cmp"
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
	level := flag.Float64("level", 95, "the bootstrap intervals' coverage, per cent")
	flag.Parse()
	if flag.NArg() == 0 || *level <= 0 || *level >= 100 {
		fmt.Fprintln(os.Stderr, "usage: pooled [-p 99] [-bound 1ms] [-resamples 2000] [-level 95] FILE...")
		os.Exit(2)
	}
	in, err := load(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "pooled:", err)
		os.Exit(1)
	}
	for _, c := range in.order {
		report(os.Stdout, c, c.analyze(*p, *resamples, *level), *p, *bound)
	}
}

// The four listeners of a round, in this order: the second server's are the
// control's or the swapped twin's.
const (
	testAuth = iota
	testOpen
	secondAuth
	secondOpen
	listeners
)

var listenerOf = map[string]int{
	"test auth": testAuth, "test open": testOpen,
	"control auth": secondAuth, "control open": secondOpen,
	"swapped auth": secondAuth, "swapped open": secondOpen,
}

// hist is one wrk run's latency histogram: values (µs) ascending, and the
// number of requests at each.
type hist struct {
	values []int64
	counts []int64
}

// config holds a configuration's rounds, each with the histograms of its
// four listeners (two with no second server); only rounds that have all of
// them count.
type config struct {
	name   string
	second string // "control" or "swapped": the second server; "": none
	rounds map[roundKey]*[listeners]*hist
}

// roundKey is a round of one run (one input file).
type roundKey struct{ run, round int }

// runs is the configurations read so far, in the order first seen.
type runs struct {
	order  []*config
	byName map[string]*config
}

// load reads the files named, each one run.
func load(names []string) (*runs, error) {
	in := &runs{}
	var seen []os.FileInfo
	for i, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, err
		}
		for _, s := range seen {
			if os.SameFile(s, fi) {
				return nil, fmt.Errorf("%s: given twice (its rounds would count twice)", name)
			}
		}
		seen = append(seen, fi)
		if err := in.readFile(name, i); err != nil {
			return nil, err
		}
	}
	if len(in.order) == 0 {
		return nil, errors.New("no histograms read")
	}
	return in, nil
}

func (in *runs) readFile(name string, run int) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := in.read(f, run); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// parse reads one run.
func parse(r io.Reader) ([]*config, error) {
	var in runs
	err := in.read(r, 0)
	return in.order, err
}

func (in *runs) read(r io.Reader, run int) error {
	if in.byName == nil {
		in.byName = map[string]*config{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 || len(f)%2 != 0 {
			return fmt.Errorf("line %d: want CONFIG SERVER SIDE ROUND and value-count pairs", line)
		}
		l, ok := listenerOf[f[1]+" "+f[2]]
		if !ok {
			return fmt.Errorf("line %d: unknown listener %q", line, f[1]+" "+f[2])
		}
		round, err := strconv.Atoi(f[3])
		if err != nil {
			return fmt.Errorf("line %d: round: %w", line, err)
		}
		h, err := parseHist(f[4:])
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		c := in.byName[f[0]]
		if c == nil {
			c = &config{name: f[0], rounds: map[roundKey]*[listeners]*hist{}}
			in.byName[f[0]] = c
			in.order = append(in.order, c)
		}
		if f[1] != "test" {
			if c.second == "" {
				c.second = f[1]
			} else if c.second != f[1] {
				return fmt.Errorf("line %d: %s has both a control and a swapped server", line, f[0])
			}
		}
		k := roundKey{run, round}
		rd := c.rounds[k]
		if rd == nil {
			rd = new([listeners]*hist)
			c.rounds[k] = rd
		}
		if rd[l] != nil {
			return fmt.Errorf("line %d: %s %s round %d twice", line, f[0], f[1]+" "+f[2], round)
		}
		rd[l] = h
	}
	return sc.Err()
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

// analysis is a configuration's added latency (µs), per round and pooled.
type analysis struct {
	rounds, runs int
	level        float64   // the bootstrap intervals' coverage, per cent
	perRound     estimates // medians over rounds, order-statistic intervals
	pooledP      [listeners]int64
	pooled       estimates // of the pooled percentiles, bootstrap intervals
}

// estimates are the three differences, each with its interval (with no
// second server, its difference is NaN and the estimate is test's own).
type estimates struct {
	added, second, est       float64 // test auth − open; the second server's auth − open; the estimate from both
	addedCI, secondCI, estCI [2]float64
}

// used is how many of the listeners a round of c has: four, or the test
// server's two when there is no second server.
func (c *config) used() int {
	if c.second == "" {
		return secondAuth
	}
	return listeners
}

// complete returns the rounds that have all their listeners, in order, and
// their indexes grouped by run.
func (c *config) complete() (rounds [][listeners]*hist, byRun [][]int) {
	keys := make([]roundKey, 0, len(c.rounds))
	for k, rd := range c.rounds {
		if !slices.Contains(rd[:c.used()], nil) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b roundKey) int { return cmp.Or(cmp.Compare(a.run, b.run), cmp.Compare(a.round, b.round)) })
	for i, k := range keys {
		rounds = append(rounds, *c.rounds[k])
		if i == 0 || k.run != keys[i-1].run {
			byRun = append(byRun, nil)
		}
		byRun[len(byRun)-1] = append(byRun[len(byRun)-1], i)
	}
	return rounds, byRun
}

// minRounds is the fewest rounds an interval is given for: a bootstrap of
// fewer says more about the resampling than about the server.
const minRounds = 10

func (c *config) analyze(p float64, resamples int, level float64) analysis {
	rounds, byRun := c.complete()
	a := analysis{rounds: len(rounds), runs: len(byRun), level: level}
	if len(rounds) == 0 {
		return a
	}
	used := c.used()
	var pools [listeners]*pool
	for l := range used {
		pools[l] = newPool(rounds, l)
	}
	percentiles := func(picked []int) (q [listeners]int64) {
		for l := range used {
			q[l] = pools[l].percentile(picked, p)
		}
		return q
	}
	second := c.second
	// Each round's own differences, indexed by round.
	var per [3][]float64
	for i := range rounds {
		for j, x := range differences(percentiles([]int{i}), second) {
			per[j] = append(per[j], x)
		}
	}
	all := make([]int, len(rounds))
	for i := range all {
		all[i] = i
	}
	a.pooledP = percentiles(all)
	a.perRound.set(medians(per, all))
	a.pooled.set(differences(a.pooledP, second))
	nan := [2]float64{math.NaN(), math.NaN()}
	if len(rounds) < minRounds {
		a.perRound.setCI([3][2]float64{nan, nan, nan})
		a.pooled.setCI([3][2]float64{nan, nan, nan})
		return a
	}
	if len(byRun) == 1 {
		// One run: the deep step's own interval for the per-round medians.
		a.perRound.setCI([3][2]float64{orderInterval(slices.Clone(per[0])),
			orderInterval(slices.Clone(per[1])), orderInterval(slices.Clone(per[2]))})
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same input gives the same interval
	var boot, bootPer [3][]float64
	var pick []int
	for range resamples {
		pick = resample(rng, byRun, pick[:0])
		for j, x := range differences(percentiles(pick), second) {
			boot[j] = append(boot[j], x)
		}
		if len(byRun) > 1 { // one run keeps the order-statistic interval
			for j, x := range medians(per, pick) {
				bootPer[j] = append(bootPer[j], x)
			}
		}
	}
	a.pooled.setCI([3][2]float64{interval(boot[0], level), interval(boot[1], level), interval(boot[2], level)})
	if len(byRun) > 1 {
		a.perRound.setCI([3][2]float64{interval(bootPer[0], level), interval(bootPer[1], level), interval(bootPer[2], level)})
	}
	return a
}

// resample appends to pick a bootstrap resample of the rounds: with one run,
// its rounds drawn with replacement; with several, the runs drawn with
// replacement and then each drawn run's rounds, so that the interval
// carries the differences between runs as well as between rounds.
func resample(rng *rand.Rand, byRun [][]int, pick []int) []int {
	for range byRun {
		run := byRun[rng.IntN(len(byRun))]
		for range run {
			pick = append(pick, run[rng.IntN(len(run))])
		}
	}
	return pick
}

// medians returns the medians of the three per-round differences over the
// rounds picked.
func medians(per [3][]float64, picked []int) (m [3]float64) {
	xs := make([]float64, len(picked))
	for j := range per {
		for i, r := range picked {
			xs[i] = per[j][r]
		}
		m[j] = median(xs)
	}
	return m
}

func (e *estimates) set(x [3]float64) {
	e.added, e.second, e.est = x[0], x[1], x[2]
}

func (e *estimates) setCI(ci [3][2]float64) {
	e.addedCI, e.secondCI, e.estCI = ci[0], ci[1], ci[2]
}

// median of xs (sorted in place).
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// orderInterval is [x(k), x(n+1−k)] of xs sorted, for the largest k for
// which it holds their median with probability 0.9 or more, as the deep
// step's awk computes it; NaNs when no k does (too few values).
func orderInterval(xs []float64) [2]float64 {
	slices.Sort(xs)
	n := len(xs)
	k, cum := 0, 0.0
	lg, _ := math.Lgamma(float64(n + 1))
	for j := 1; 2*j <= n; j++ {
		// P(Binomial(n, ½) = j−1), in logs for large n
		l1, _ := math.Lgamma(float64(j))
		l2, _ := math.Lgamma(float64(n - j + 2))
		cum += math.Exp(lg - l1 - l2 - float64(n)*math.Ln2)
		if 1-2*cum < 0.9 {
			break
		}
		k = j
	}
	if k == 0 {
		return [2]float64{math.NaN(), math.NaN()}
	}
	return [2]float64{xs[k-1], xs[n-k]}
}

// differences are, from the listeners' percentiles, the test server's
// auth − open, the second server's, and the estimate: the first less the
// second (a control), their mean (a swapped twin), or the first alone (no
// second server, whose difference is then NaN).
func differences(q [listeners]int64, second string) [3]float64 {
	added := float64(q[testAuth] - q[testOpen])
	other := float64(q[secondAuth] - q[secondOpen])
	switch second {
	case "swapped":
		return [3]float64{added, other, (added + other) / 2}
	case "":
		return [3]float64{added, math.NaN(), added}
	}
	return [3]float64{added, other, added - other}
}

// interval is the central level per cent of xs (sorted in place): for 95,
// their 2.5th and 97.5th percentiles; NaNs when xs holds a NaN.
func interval(xs []float64, level float64) [2]float64 {
	if len(xs) == 0 || slices.ContainsFunc(xs, math.IsNaN) {
		return [2]float64{math.NaN(), math.NaN()}
	}
	slices.Sort(xs)
	tail := (1 - level/100) / 2
	at := func(f float64) float64 { // 1e-9: 0.05 × 1000 is 49.999… in binary
		return xs[min(len(xs)-1, int(f*float64(len(xs))+1e-9))]
	}
	return [2]float64{at(tail), at(1 - tail)}
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
	case math.IsNaN(ci[0]):
		return "too few rounds"
	case ci[1] <= bound:
		return "met"
	case ci[0] > bound:
		return "NOT MET"
	}
	return "not resolved"
}

func report(w io.Writer, c *config, a analysis, p float64, bound time.Duration) {
	if a.rounds == 0 {
		fmt.Fprintf(w, "  %s: no round with all %d listeners\n", c.name, c.used())
		return
	}
	ms := func(us int64) string { return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) }
	fmt.Fprintf(w, "  %s: %d rounds from %d run(s); p%g added, ms\n", c.name, a.rounds, a.runs, p)
	perCI, boot := "≥ 90 % order-statistic interval", fmt.Sprintf("%g %% bootstrap over rounds", a.level)
	if a.runs > 1 {
		boot = fmt.Sprintf("%g %% bootstrap over runs, then rounds", a.level)
		perCI = boot
	}
	fmt.Fprintf(w, "    per round (median of the rounds' own differences; %s):\n", perCI)
	a.perRound.print(w, c.second, bound)
	ps := fmt.Sprintf("test auth %s, open %s", ms(a.pooledP[testAuth]), ms(a.pooledP[testOpen]))
	if c.second != "" {
		ps += fmt.Sprintf("; %s auth %s, open %s", c.second, ms(a.pooledP[secondAuth]), ms(a.pooledP[secondOpen]))
	}
	fmt.Fprintf(w, "    pooled (each listener's p%g over all rounds: %s; %s):\n", p, ps, boot)
	a.pooled.print(w, c.second, bound)
}

// print prints the estimates, labelled for the second server's kind.
func (e estimates) print(w io.Writer, second string, bound time.Duration) {
	signed := func(us float64) string { return fmt.Sprintf("%+.2f", us/1000) }
	b := float64(bound.Microseconds())
	rows := []struct {
		label   string
		x       float64
		ci      [2]float64
		verdict bool
	}{{"added", e.added, e.addedCI, true}, {"added by the control (A/A)", e.second, e.secondCI, false}, {"added, less the control", e.est, e.estCI, true}}
	switch second {
	case "swapped":
		rows[0].verdict = false // the order is in it: the mean is the estimate
		rows[1].label, rows[2].label = "added on the swapped server", "added, mean of the two"
	case "":
		rows = rows[:1] // the estimate is test's own difference
	}
	for _, r := range rows {
		fmt.Fprintf(w, "      %-28s %s", r.label, signed(r.x))
		if !math.IsNaN(r.ci[0]) {
			fmt.Fprintf(w, " [%s … %s]", signed(r.ci[0]), signed(r.ci[1]))
		}
		if r.verdict {
			fmt.Fprintf(w, " (≤ %g ms: %s)", b/1000, verdict(r.ci, b))
		}
		fmt.Fprintln(w)
	}
}
