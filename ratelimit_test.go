package cognitomcp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stepClock is a manual clock for the rate-limit, registration and CIMD tests.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func newStepClock() *stepClock { return &stepClock{t: time.Unix(1_900_000_000, 0)} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func allowN(l *rateLimiter, key string, n int) int {
	ok := 0
	for range n {
		if l.allow(key) {
			ok++
		}
	}
	return ok
}

func TestRateLimitDefaultsAndDisabling(t *testing.T) {
	clock := newStepClock()
	cases := []struct {
		name  string
		cfg   RateLimits
		burst [3]int // register, authorize, token; -1 = unlimited
	}{
		{"zero takes defaults", RateLimits{}, [3]int{10, 60, 120}},
		{"configured", RateLimits{Register: 2, Authorize: 3, Token: 4}, [3]int{2, 3, 4}},
		{"negative disables", RateLimits{Register: -1, Authorize: -1, Token: 5}, [3]int{-1, -1, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ls := newLimiters(tc.cfg, clock.Now)
			for i, l := range []*rateLimiter{ls.register, ls.authorize, ls.token} {
				if tc.burst[i] < 0 {
					assert.Nil(t, l)
					assert.Equal(t, 500, allowN(l, "192.0.2.1", 500), "a disabled limit allows everything")
					continue
				}
				assert.Equal(t, tc.burst[i], allowN(l, "192.0.2.1", 500), "burst of limiter %d", i)
			}
		})
	}
}

func TestRateLimitTokenBucket(t *testing.T) {
	clock := newStepClock()
	l := newRateLimiter(10, 1000, clock.Now)
	require.Equal(t, 10, allowN(l, "192.0.2.1", 10))

	t.Run("the 11th request in a minute is refused", func(t *testing.T) {
		assert.False(t, l.allow("192.0.2.1"))
	})
	t.Run("another address has its own bucket", func(t *testing.T) {
		assert.True(t, l.allow("192.0.2.2"))
	})
	t.Run("one token refills in six seconds", func(t *testing.T) {
		clock.Advance(5999 * time.Millisecond)
		assert.False(t, l.allow("192.0.2.1"))
		clock.Advance(time.Millisecond)
		assert.True(t, l.allow("192.0.2.1"))
		assert.False(t, l.allow("192.0.2.1"))
	})
	t.Run("refill stops at the burst", func(t *testing.T) {
		clock.Advance(time.Hour)
		assert.Equal(t, 10, allowN(l, "192.0.2.1", 50))
	})
	t.Run("a clock going backwards adds nothing", func(t *testing.T) {
		clock.Advance(-time.Hour)
		assert.False(t, l.allow("192.0.2.1"))
	})
	t.Run("retry after one token's time", func(t *testing.T) {
		assert.Equal(t, 6*time.Second, l.retryAfter())
	})
}

func TestRateLimitIPv6CountsPerSlash64(t *testing.T) {
	l := newRateLimiter(3, 1000, newStepClock().Now)
	cases := []struct {
		name string
		key  string
		want bool
	}{
		{"first address of the /64", "2001:db8:1:2::1", true},
		{"second address of the /64", "2001:db8:1:2::2", true},
		{"third address of the /64", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"fourth address of the /64 is over", "2001:db8:1:2:abcd::9", false},
		{"another /64 is separate", "2001:db8:1:3::1", true},
		{"IPv4 is separate", "192.0.2.1", true},
		{"an IPv4-mapped address counts alone", "::ffff:192.0.2.1", true},
		{"a non-address key counts alone", "not-an-ip", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, l.allow(tc.key))
		})
	}
}

func TestRateLimitBoundedMemory(t *testing.T) {
	clock := newStepClock()
	const maxKeys = 64
	l := newRateLimiter(10, maxKeys, clock.Now)
	for i := range 10_000 {
		l.allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i%100 == 0 {
			clock.Advance(10 * time.Millisecond)
		}
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].buckets)
		assert.LessOrEqual(t, len(l.shards[i].buckets), l.perShard)
	}
	assert.LessOrEqual(t, total, maxKeys+len(l.shards))
}

func TestRateLimitEvictionPrefersRefilledBuckets(t *testing.T) {
	clock := newStepClock()
	l := newRateLimiter(10, 1000, clock.Now)
	now := clock.Now().UnixNano()
	sh := &limiterShard{buckets: map[string]*bucket{
		"refilled": {tat: now - 1},
		"busy-1":   {tat: now + int64(time.Minute)},
		"busy-2":   {tat: now + int64(time.Second)},
	}}
	l.perShard = 3

	l.makeRoom(sh, now)
	assert.NotContains(t, sh.buckets, "refilled")
	assert.Contains(t, sh.buckets, "busy-1")
	assert.Contains(t, sh.buckets, "busy-2")

	// Within a second of the last sweep a full shard evicts an arbitrary bucket.
	sh.buckets["busy-3"] = &bucket{tat: now + int64(time.Minute)}
	l.makeRoom(sh, now+int64(time.Millisecond))
	assert.Len(t, sh.buckets, 2)
}

func TestRateLimitConcurrent(t *testing.T) {
	l := newRateLimiter(100, 1000, newStepClock().Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for i := range 200 {
				if l.allow(fmt.Sprintf("192.0.2.%d", (g*200+i)%4)) {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, 4*100, allowed, "four addresses, a burst of 100 each, a frozen clock")
}

func TestRateLimitAllowDoesNotAllocate(t *testing.T) {
	l := newRateLimiter(1_000_000, 1000, newStepClock().Now)
	for _, key := range []string{"203.0.113.9", "2001:db8::1"} {
		l.allow(key)
		assert.Zero(t, testing.AllocsPerRun(100, func() { l.allow(key) }), key)
	}
}

func TestRateLimitResponse(t *testing.T) {
	l := newRateLimiter(10, 10, newStepClock().Now)
	w := httptest.NewRecorder()
	writeRateLimited(w, l)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "6", w.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	var body map[string]string
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	assert.Equal(t, CodeTemporarilyUnavailable, body["error"])
}

func BenchmarkRateLimitAllow(b *testing.B) {
	l := newRateLimiter(1_000_000_000, defaultMaxTrackedIPs, time.Now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		keys := []string{"192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1"}
		for pb.Next() {
			l.allow(keys[i&3])
			i++
		}
	})
}
