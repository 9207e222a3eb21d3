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

// synthetic writes rounds of four listeners whose latencies are drawn from
// one distribution, scaled per round (the machine's wander, shared by the
// round's four runs), the test server's auth listener then adding shift µs
// to every request.
func synthetic(t *testing.T, rounds int, shift int64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(shift)))
	var b strings.Builder
	for r := 1; r <= rounds; r++ {
		scale := 0.8 + 0.4*rng.Float64()
		for _, l := range []string{"test auth", "test open", "control auth", "control open"} {
			counts := map[int64]int64{}
			for range 2000 {
				v := int64(scale * (5000 + rng.ExpFloat64()*2000)) // a p99 near 14 ms
				if l == "test auth" {
					v += shift
				}
				counts[v]++
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

// TestAnalyze: a known shift of the auth listener is found, within an
// interval that holds it, and gets the verdict it should: 2 ms added is NOT
// MET against 1 ms, 0.3 ms is met, and none at all is met with the A/A
// control's difference near zero.
func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		shift   int64
		verdict string
	}{{2000, "NOT MET"}, {300, "met"}, {0, "met"}} {
		t.Run(fmt.Sprint(tc.shift), func(t *testing.T) {
			configs, err := parse(strings.NewReader(synthetic(t, 30, tc.shift)))
			require.NoError(t, err)
			require.Len(t, configs, 1)
			a := configs[0].analyze(99, 200)
			assert.Equal(t, 30, a.rounds)
			s := float64(tc.shift)
			for name, e := range map[string]estimates{"pooled": a.pooled, "per round": a.perRound} {
				assert.InDelta(t, s, e.added, 400, "%s: added %v", name, e.added)
				assert.LessOrEqual(t, e.addedCI[0], s, name)
				assert.GreaterOrEqual(t, e.addedCI[1], s, name)
				assert.InDelta(t, s, e.less, 600, "%s: less the control %v", name, e.less)
				assert.InDelta(t, 0, e.control, 400, "%s: control %v", name, e.control)
				assert.Equal(t, tc.verdict, verdict(e.addedCI, 1000), name)
			}
			var out bytes.Buffer
			report(&out, configs[0], a, 99, time.Millisecond)
			assert.Contains(t, out.String(), "≤ 1 ms: "+tc.verdict)
		})
	}
}

// TestAnalyzeIncompleteRounds: a round missing a listener (a run that
// failed) is left out, not half counted.
func TestAnalyzeIncompleteRounds(t *testing.T) {
	in := synthetic(t, 3, 0)
	lines := strings.Split(strings.TrimSpace(in), "\n")
	configs, err := parse(strings.NewReader(strings.Join(lines[:len(lines)-1], "\n")))
	require.NoError(t, err)
	assert.Len(t, configs[0].complete(), 2)
	assert.Equal(t, 2, configs[0].analyze(99, 10).rounds)
}

// TestRuns: the rounds of two runs (files) of the same configuration are
// distinct rounds, the same round number in both included.
func TestRuns(t *testing.T) {
	dir := t.TempDir()
	var in runs
	for i, shift := range []int64{0, 2000} {
		name := filepath.Join(dir, fmt.Sprint(i))
		require.NoError(t, os.WriteFile(name, []byte(synthetic(t, 5, shift)), 0o600))
		require.NoError(t, in.readFile(name, i))
	}
	require.Len(t, in.order, 1)
	a := in.order[0].analyze(99, 10)
	assert.Equal(t, 10, a.rounds)
	assert.Equal(t, 2, a.runs)
	require.Error(t, in.readFile(filepath.Join(dir, "0"), 0), "the same run read twice repeats its rounds")
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
		"no pairs":          "c test auth 1\n",
		"odd pairs":         "c test auth 1 100 1 200\n",
		"unknown listener":  "c test middle 1 100 1\n",
		"round":             "c test auth x 100 1\n",
		"not a number":      "c test auth 1 100 y\n",
		"negative":          "c test auth 1 100 -1\n",
		"not ascending":     "c test auth 1 200 1 100 1\n",
		"listener repeated": "c test auth 1 100 1\nc test auth 1 100 1\n",
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
