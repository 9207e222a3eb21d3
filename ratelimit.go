package cognitomcp

import (
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default per-IP limits, in requests per minute; the burst equals the rate.
const (
	defaultRegisterPerMinute  = 10
	defaultAuthorizePerMinute = 60
	defaultTokenPerMinute     = 120
	defaultMaxTrackedIPs      = 100_000

	limiterMaxShards = 32
	// limiterSweepEvery bounds how often a full shard is scanned for idle
	// buckets; between scans a full shard evicts an arbitrary bucket.
	limiterSweepEvery = time.Second
)

// limiters are the proxy's per-client-IP rate limits. A nil limiter (a
// negative RateLimits field) allows everything.
type limiters struct{ register, authorize, token *rateLimiter }

// newLimiters builds the limits of cfg: a zero field takes its default
// (Register 10, Authorize 60, Token 120 per minute; MaxTrackedIPs 100,000),
// a negative one disables that limit.
func newLimiters(cfg RateLimits, now func() time.Time) limiters {
	maxIPs := cfg.MaxTrackedIPs
	if maxIPs <= 0 {
		maxIPs = defaultMaxTrackedIPs
	}
	mk := func(perMinute, def int) *rateLimiter {
		switch {
		case perMinute < 0:
			return nil
		case perMinute == 0:
			perMinute = def
		}
		return newRateLimiter(perMinute, maxIPs, now)
	}
	return limiters{
		register:  mk(cfg.Register, defaultRegisterPerMinute),
		authorize: mk(cfg.Authorize, defaultAuthorizePerMinute),
		token:     mk(cfg.Token, defaultTokenPerMinute),
	}
}

// rateLimiter is a token bucket per key: perMinute requests a minute, with a
// burst of perMinute, kept exactly in integer nanoseconds as GCRA does (one
// "theoretical arrival time" per key). IPv6 addresses count per /64, the
// block one host usually gets. Memory is bounded: about maxKeys buckets,
// spread over shards; a full shard first drops buckets that have refilled
// (no different from absent ones), at most once a second, and otherwise
// evicts an arbitrary bucket, so a flood of addresses weakens the limit of
// some of them rather than growing memory. No goroutines; safe for
// concurrent use; allow does not allocate for a key it already tracks.
type rateLimiter struct {
	interval  int64 // nanoseconds one request's token takes to refill
	tolerance int64 // (burst-1) × interval
	perShard  int
	now       func() time.Time
	seed      maphash.Seed
	shards    []limiterShard
}

type limiterShard struct {
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep int64
	_         [40]byte // keeps shards on separate cache lines
}

// bucket holds the time at which the key's bucket will be full again; at or
// before now it is full.
type bucket struct{ tat int64 }

func newRateLimiter(perMinute, maxKeys int, now func() time.Time) *rateLimiter {
	if now == nil {
		now = time.Now
	}
	n := min(limiterMaxShards, maxKeys)
	interval := max(1, int64(time.Minute)/int64(perMinute))
	l := &rateLimiter{
		interval:  interval,
		tolerance: interval * int64(perMinute-1),
		perShard:  (maxKeys + n - 1) / n,
		now:       now,
		seed:      maphash.MakeSeed(),
		shards:    make([]limiterShard, n),
	}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// allow takes one token from key's bucket and reports whether there was one.
// A nil limiter allows everything.
func (l *rateLimiter) allow(key string) bool {
	if l == nil {
		return true
	}
	var prefix [9]byte
	v6 := ipv6Prefix(key, &prefix)
	var h uint64
	if v6 {
		h = maphash.Bytes(l.seed, prefix[:])
	} else {
		h = maphash.String(l.seed, key)
	}
	sh := &l.shards[h%uint64(len(l.shards))]
	now := l.now().UnixNano()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	var b *bucket
	if v6 {
		b = sh.buckets[string(prefix[:])] // the conversion does not allocate in a lookup
	} else {
		b = sh.buckets[key]
	}
	if b == nil {
		if len(sh.buckets) >= l.perShard {
			l.makeRoom(sh, now)
		}
		b = &bucket{tat: now}
		if v6 {
			key = string(prefix[:])
		}
		sh.buckets[key] = b
	}
	tat := max(b.tat, now)
	if tat-now > l.tolerance {
		return false
	}
	b.tat = tat + l.interval
	return true
}

// ipv6Prefix writes 0xff and the /64 of key to dst if key is an IPv6 address
// (not an IPv4-mapped one). No IPv4 address or host name starts with 0xff.
func ipv6Prefix(key string, dst *[9]byte) bool {
	if strings.IndexByte(key, ':') < 0 {
		return false
	}
	a, err := netip.ParseAddr(key)
	if err != nil || !a.Is6() || a.Is4In6() {
		return false
	}
	b := a.As16()
	dst[0] = 0xff
	copy(dst[1:], b[:8])
	return true
}

// makeRoom frees at least one slot of a full shard.
func (l *rateLimiter) makeRoom(sh *limiterShard, now int64) {
	if now-sh.lastSweep >= int64(limiterSweepEvery) || now < sh.lastSweep {
		sh.lastSweep = now
		for k, b := range sh.buckets {
			if b.tat <= now {
				delete(sh.buckets, k)
			}
		}
	}
	for k := range sh.buckets {
		if len(sh.buckets) < l.perShard {
			break
		}
		delete(sh.buckets, k) // map order is unspecified: an arbitrary one
	}
}

// retryAfter is how long one request's token takes to refill.
func (l *rateLimiter) retryAfter() time.Duration {
	if l == nil {
		return time.Second
	}
	return time.Duration(l.interval)
}

// writeRateLimited answers 429 with Retry-After and the OAuth error
// temporarily_unavailable.
func writeRateLimited(w http.ResponseWriter, l *rateLimiter) {
	setRetryAfter(w, l)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusTooManyRequests, map[string]string{
		"error":             CodeTemporarilyUnavailable,
		"error_description": "too many requests from this address; retry later",
	})
}

// rateLimited is the error of a request over its limit, answered 429 with
// Retry-After (see setRetryAfter). Its code is temporarily_unavailable, not
// RFC 8628's slow_down: an MCP client (the TypeScript SDK, and mcp-remote,
// Claude Code and the Inspector through it) reads a code it does not know
// at /token as a server error and answers it by sending the user back to
// sign in; temporarily_unavailable it reports, and retries later.
func rateLimited() *Error {
	return oauthError(http.StatusTooManyRequests, CodeTemporarilyUnavailable, "too many requests from this address; retry later", nil)
}

// setRetryAfter sets Retry-After to the whole seconds one request's budget
// of l takes to refill.
func setRetryAfter(w http.ResponseWriter, l *rateLimiter) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(l.retryAfter().Seconds())))))
}
