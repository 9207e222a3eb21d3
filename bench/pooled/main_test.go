package main

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPercentile: wrk's rule, the smallest value whose cumulative count
// reaches round(p/100 × n + 0.5), over the rounds picked, a round picked
// twice counting twice.
func TestPercentile(t *testing.T) {
	in := "c test auth 1 100 98 200 1 300 1\n" + // 100 requests: p99 is the 100th (rank round(99.5))
		"c test auth 2 150 50 400 50\n" // 100 more: pooled, p99 the 199th of 200
	configs, err := parse(strings.NewReader(in))
	require.NoError(t, err)
	rounds := make([][listeners]*hist, 2)
	for i := range rounds {
		rounds[i][testAuth] = configs[0].rounds[roundKey{0, i + 1}][testAuth]
	}
	p := newPool(rounds, testAuth)
	assert.Equal(t, []int64{100, 150, 200, 300, 400}, p.values)
	assert.Equal(t, int64(300), p.percentile([]int{0}, 99))
	assert.Equal(t, int64(200), p.percentile([]int{0}, 98.5)) // rank round(99): the 99th
	assert.Equal(t, int64(100), p.percentile([]int{0}, 50))
	assert.Equal(t, int64(400), p.percentile([]int{0, 1}, 99))
	assert.Equal(t, int64(150), p.percentile([]int{0, 1}, 50))    // rank 101: 98 at 100, then 150
	assert.Equal(t, int64(150), p.percentile([]int{1, 1, 0}, 40)) // rank 121 of 300: 98, then 100 at 150
}

// synth describes synthetic rounds: four listeners whose latencies are
// drawn from one distribution, scaled per round (the machine's wander,
// shared by the round's four runs); the test server's two listeners 1 ms
// slower than the control's (so that mixing the servers up shows), its auth
// listener adding shift µs more, and the control's auth listener control µs.
// With swapped, the second server is the test server's swapped twin: its
// auth listener adds shift µs too, and on each server the listener first in
// order (test's auth, swapped's open) order µs more.
type synth struct {
	rounds, first  int // how many, and the number of the first
	shift, control int64
	swapped        bool
	order          int64
	alone          bool // the test server only (DEEP_CONTROL=off)
	seed           uint64
}

func (sy synth) String() string {
	rng := rand.New(rand.NewPCG(7, sy.seed))
	var b strings.Builder
	ls := []string{"test auth", "test open", "control auth", "control open"}
	add := map[string]int64{"test auth": 1000 + sy.shift, "test open": 1000, "control auth": sy.control, "control open": 0}
	if sy.swapped {
		ls = []string{"test auth", "test open", "swapped auth", "swapped open"}
		add = map[string]int64{"test auth": 1000 + sy.shift + sy.order, "test open": 1000, "swapped auth": sy.shift, "swapped open": sy.order}
	}
	if sy.alone {
		ls = ls[:2]
	}
	for r := sy.first; r < sy.first+sy.rounds; r++ {
		scale := 0.8 + 0.4*rng.Float64()
		for _, l := range ls {
			counts := map[int64]int64{}
			for range 2000 {
				counts[int64(scale*(5000+rng.ExpFloat64()*2000))+add[l]]++ // a p99 near 14 ms
			}
			fmt.Fprintf(&b, "cfg/0 %s %d", l, r)
			for _, v := range slices.Sorted(maps.Keys(counts)) {
				fmt.Fprintf(&b, " %d %d", v, counts[v])
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestAnalyze: known shifts of the auth listeners are found, within
// intervals that hold them, and get the verdicts they should: 2 ms added is
// NOT MET against 1 ms, 0.3 ms is met, none at all is met; and a control
// that adds 1.5 ms of its own leaves 0.5 ms less the control.
func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		shift, control int64
		verdict        string
	}{{2000, 0, "NOT MET"}, {300, 0, "met"}, {0, 0, "met"}, {2000, 1500, "NOT MET"}} {
		t.Run(fmt.Sprint(tc.shift, tc.control), func(t *testing.T) {
			sy := synth{rounds: 30, first: 1, shift: tc.shift, control: tc.control, seed: uint64(tc.shift + tc.control)}
			configs, err := parse(strings.NewReader(sy.String()))
			require.NoError(t, err)
			require.Len(t, configs, 1)
			a := configs[0].analyze(99, 200, 95)
			assert.Equal(t, 30, a.rounds)
			s, c := float64(tc.shift), float64(tc.control)
			for name, e := range map[string]estimates{"pooled": a.pooled, "per round": a.perRound} {
				assert.InDelta(t, s, e.added, 400, "%s: added %v", name, e.added)
				assert.LessOrEqual(t, e.addedCI[0], s, name)
				assert.GreaterOrEqual(t, e.addedCI[1], s, name)
				assert.InDelta(t, c, e.second, 400, "%s: control %v", name, e.second)
				assert.InDelta(t, s-c, e.est, 600, "%s: less the control %v", name, e.est)
				assert.Equal(t, tc.verdict, verdict(e.addedCI, 1000), name)
			}
			for l := range listeners {
				assert.Equal(t, naiveP99(configs[0], l), a.pooledP[l], "listener %d", l)
			}
			var out bytes.Buffer
			report(&out, configs[0], a, 99, time.Millisecond)
			assert.Contains(t, out.String(), "≤ 1 ms: "+tc.verdict)
			assert.Contains(t, out.String(), "order-statistic")
		})
	}
}

// TestAnalyzeSwapped: with a swapped twin for second server, an order that
// favours each server's first listener by 1.5 ms shows in each server's own
// difference (+1.8 ms on the test server, −1.2 ms on the twin) and cancels
// in their mean, which finds the 0.3 ms the auth listener adds and meets
// 1 ms; the report labels the rows for the twin.
func TestAnalyzeSwapped(t *testing.T) {
	sy := synth{rounds: 30, first: 1, shift: 300, swapped: true, order: 1500, seed: 3}
	configs, err := parse(strings.NewReader(sy.String()))
	require.NoError(t, err)
	require.Len(t, configs, 1)
	a := configs[0].analyze(99, 200, 95)
	for name, e := range map[string]estimates{"pooled": a.pooled, "per round": a.perRound} {
		assert.InDelta(t, 1800, e.added, 400, "%s: added %v", name, e.added)
		assert.InDelta(t, -1200, e.second, 400, "%s: on the twin %v", name, e.second)
		assert.InDelta(t, 300, e.est, 300, "%s: mean %v", name, e.est)
		assert.Equal(t, "met", verdict(e.estCI, 1000), "%s: %v", name, e.estCI)
		assert.Equal(t, "NOT MET", verdict(e.addedCI, 1000), "%s: %v", name, e.addedCI)
	}
	var out bytes.Buffer
	report(&out, configs[0], a, 99, time.Millisecond)
	assert.Contains(t, out.String(), "added on the swapped server")
	assert.Contains(t, out.String(), "added, mean of the two")
	assert.Equal(t, 2, strings.Count(out.String(), "≤ 1 ms: met"), out.String()) // the mean's, per round and pooled; not the test server's alone
	assert.NotContains(t, out.String(), "control")
}

// naiveP99 is listener l's p99 over every round of c, by wrk's rule, from
// every request's latency listed and sorted.
func naiveP99(c *config, l int) int64 {
	var all []int64
	for _, rd := range c.rounds {
		for i, v := range rd[l].values {
			for range rd[l].counts[i] {
				all = append(all, v)
			}
		}
	}
	slices.Sort(all)
	rank := int(math.Round(0.99*float64(len(all)) + 0.5))
	return all[rank-1]
}

// TestInterval: the middle level per cent of the bootstrap's values; none
// of a NaN (the missing second server's).
func TestInterval(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(999 - i)
	}
	assert.Equal(t, [2]float64{25, 975}, interval(xs, 95))
	assert.Equal(t, [2]float64{8, 991}, interval(xs, 98.33)) // int(0.00835 × 1000), int(0.99165 × 1000)
	assert.Equal(t, [2]float64{50, 950}, interval(xs, 90))
	assert.True(t, math.IsNaN(interval([]float64{1, math.NaN(), 2}, 95)[1]))
}

// TestAnalyzeAlone: the test server alone (DEEP_CONTROL=off), two
// listeners a round: its rounds count, the 0.3 ms its auth listener adds is
// found and meets 1 ms, 2 ms does not, the report has no second server's
// rows, and a wider level gives a wider interval around the same estimate.
func TestAnalyzeAlone(t *testing.T) {
	for _, tc := range []struct {
		shift   int64
		verdict string
	}{{300, "met"}, {2000, "NOT MET"}} {
		t.Run(fmt.Sprint(tc.shift), func(t *testing.T) {
			configs, err := parse(strings.NewReader(synth{rounds: 30, first: 1, shift: tc.shift, alone: true, seed: 3}.String()))
			require.NoError(t, err)
			require.Len(t, configs, 1)
			assert.Equal(t, "", configs[0].second)
			a := configs[0].analyze(99, 200, 95)
			assert.Equal(t, 30, a.rounds)
			for name, e := range map[string]estimates{"pooled": a.pooled, "per round": a.perRound} {
				assert.InDelta(t, float64(tc.shift), e.added, 400, "%s: added %v", name, e.added)
				assert.Equal(t, e.added, e.est, name)
				assert.True(t, math.IsNaN(e.second), name)
				assert.Equal(t, tc.verdict, verdict(e.addedCI, 1000), name)
			}
			var out bytes.Buffer
			report(&out, configs[0], a, 99, time.Millisecond)
			assert.Equal(t, 2, strings.Count(out.String(), "≤ 1 ms: "+tc.verdict), out.String())
			assert.NotContains(t, out.String(), "control")
			assert.NotContains(t, out.String(), "NaN")
			wide := configs[0].analyze(99, 200, 99.9)
			assert.Equal(t, a.pooled.added, wide.pooled.added)
			assert.Less(t, wide.pooled.addedCI[0]-1, a.pooled.addedCI[0])
			assert.Greater(t, wide.pooled.addedCI[1], a.pooled.addedCI[1]-1)
			assert.Greater(t, wide.pooled.addedCI[1]-wide.pooled.addedCI[0], a.pooled.addedCI[1]-a.pooled.addedCI[0])
			out.Reset()
			report(&out, configs[0], wide, 99, time.Millisecond)
			assert.Contains(t, out.String(), "99.9 % bootstrap over rounds")
		})
	}
}

// TestAnalyzeTooFewRounds: below minRounds no interval and no verdict.
func TestAnalyzeTooFewRounds(t *testing.T) {
	configs, err := parse(strings.NewReader(synth{rounds: minRounds - 1, first: 1}.String()))
	require.NoError(t, err)
	a := configs[0].analyze(99, 50, 95)
	for _, ci := range [][2]float64{a.pooled.addedCI, a.pooled.estCI, a.perRound.addedCI, a.perRound.estCI} {
		assert.True(t, math.IsNaN(ci[0]) && math.IsNaN(ci[1]), "%v", ci)
	}
	var out bytes.Buffer
	report(&out, configs[0], a, 99, time.Millisecond)
	assert.NotContains(t, out.String(), "met")
	assert.Equal(t, 4, strings.Count(out.String(), "too few rounds"), out.String())
}

// TestAnalyzeIncompleteRounds: a round missing a listener (a run that
// failed) is left out, not half counted.
func TestAnalyzeIncompleteRounds(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(synth{rounds: 3, first: 1}.String()), "\n")
	configs, err := parse(strings.NewReader(strings.Join(lines[:len(lines)-1], "\n")))
	require.NoError(t, err)
	rounds, byRun := configs[0].complete()
	assert.Len(t, rounds, 2)
	assert.Equal(t, [][]int{{0, 1}}, byRun)
	assert.Equal(t, 2, configs[0].analyze(99, 10, 95).rounds)
}

// TestRunsWiden: two runs that disagree (+1.5 ms and −1.5 ms added), read
// as two runs, keep the rounds of each distinct and get an interval that
// carries their disagreement: wider than the same rounds read as one run,
// and no verdict of met.
func TestRunsWiden(t *testing.T) {
	dir := t.TempDir()
	var names []string
	var one strings.Builder
	for i, shift := range []int64{1500, -1500} {
		sy := synth{rounds: 20, first: 1, shift: shift, seed: uint64(i)}
		names = append(names, filepath.Join(dir, fmt.Sprint(i)))
		require.NoError(t, os.WriteFile(names[i], []byte(sy.String()), 0o600))
		sy.first = 1 + 20*i // the same rounds, numbered apart, in one file
		one.WriteString(sy.String())
	}
	in, err := load(names)
	require.NoError(t, err)
	require.Len(t, in.order, 1)
	two := in.order[0].analyze(99, 300, 95)
	assert.Equal(t, 40, two.rounds)
	assert.Equal(t, 2, two.runs)
	configs, err := parse(strings.NewReader(one.String()))
	require.NoError(t, err)
	single := configs[0].analyze(99, 300, 95)
	assert.Equal(t, 1, single.runs)
	width := func(ci [2]float64) float64 { return ci[1] - ci[0] }
	for name, e := range map[string][2]estimates{"pooled": {two.pooled, single.pooled}, "per round": {two.perRound, single.perRound}} {
		assert.Greater(t, width(e[0].addedCI), width(e[1].addedCI), "%s: %v against %v", name, e[0].addedCI, e[1].addedCI)
		assert.Less(t, e[0].addedCI[0], -1000.0, "%s: %v", name, e[0].addedCI)
		assert.Greater(t, e[0].addedCI[1], 1000.0, "%s: %v", name, e[0].addedCI)
		assert.Equal(t, "not resolved", verdict(e[0].addedCI, 1000), name)
	}
}

// TestLoad: a file given twice would count its rounds twice, and no
// histogram at all is an error, not an empty report.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "run")
	require.NoError(t, os.WriteFile(name, []byte(synth{rounds: 2, first: 1}.String()), 0o600))
	_, err := load([]string{name, dir + "/./run"})
	assert.ErrorContains(t, err, "given twice")
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(name, link))
	_, err = load([]string{name, link})
	assert.ErrorContains(t, err, "given twice", "the same file by another name")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n\n"), 0o600))
	_, err = load([]string{empty})
	assert.ErrorContains(t, err, "no histograms")
	_, err = load([]string{filepath.Join(dir, "missing")})
	assert.Error(t, err)
}

// TestOrderInterval: the deep step's interval, the 42nd and 59th of 100
// sorted values; none for 3.
func TestOrderInterval(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // sorted by orderInterval
	}
	assert.Equal(t, [2]float64{42, 59}, orderInterval(xs))
	assert.Equal(t, 50.5, median(xs))
	assert.True(t, math.IsNaN(orderInterval([]float64{1, 2, 3})[0]))
	assert.Equal(t, "too few rounds", verdict(orderInterval([]float64{1, 2, 3}), 1000))
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"no pairs":            "c test auth 1\n",
		"odd pairs":           "c test auth 1 100 1 200\n",
		"unknown listener":    "c test middle 1 100 1\n",
		"round":               "c test auth x 100 1\n",
		"not a number":        "c test auth 1 100 y\n",
		"negative":            "c test auth 1 100 -1\n",
		"not ascending":       "c test auth 1 200 1 100 1\n",
		"listener repeated":   "c test auth 1 100 1\nc test auth 1 100 1\n",
		"control and swapped": "c control auth 1 100 1\nc swapped open 1 100 1\n",
	} {
		_, err := parse(strings.NewReader(in))
		assert.Error(t, err, name)
	}
}

func TestVerdict(t *testing.T) {
	assert.Equal(t, "met", verdict([2]float64{-500, 1000}, 1000))
	assert.Equal(t, "NOT MET", verdict([2]float64{1001, 3000}, 1000))
	assert.Equal(t, "not resolved", verdict([2]float64{200, 1500}, 1000))
}
