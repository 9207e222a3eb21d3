package cognitomcp

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cacheClaims(sub string, rawBytes int) *Claims {
	return &Claims{Subject: sub, raw: make([]byte, rawBytes)}
}

func TestTokenKey(t *testing.T) {
	tests := []struct {
		name, raw, input string
	}{
		{name: "JWS", raw: "aGRy.cGF5bG9hZA.c2ln", input: "aGRy.cGF5bG9hZA."},
		{name: "extra dots stay in the hashed part", raw: "a.b.c.d", input: "a.b."},
		{name: "empty signature", raw: "a.b.", input: "a.b."},
		{name: "one dot: all hashed", raw: "a.b", input: ""},
		{name: "no dot: all hashed", raw: "abc", input: ""},
		{name: "empty", raw: "", input: ""},
	}
	seen := map[[32]byte]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, input := tokenKey(tc.raw)
			assert.Equal(t, tc.input, input)
			again, _ := tokenKey(tc.raw)
			assert.Equal(t, key, again, "deterministic")
			if other, ok := seen[key]; ok {
				// Same key: the inputs must then tell the tokens apart.
				_, otherInput := tokenKey(other)
				assert.NotEqual(t, otherInput, input, "%q and %q", other, tc.raw)
			}
			seen[key] = tc.raw
		})
	}
}

func TestTokenCacheHitNeedsTheExactToken(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := newTokenCache(100)
	tok := "aGRy.cGF5bG9hZA.c2lnbmF0dXJl"
	c.put(tok, cacheClaims("alice", 10), now.Add(time.Minute), now)

	tests := []struct {
		name string
		raw  string
		hit  bool
	}{
		{"the same token", tok, true},
		{"another signing input, same signature", "aGRy.cGF5bG9hZB.c2lnbmF0dXJl", false},
		{"another signature, same signing input", "aGRy.cGF5bG9hZA.c2lnbmF0dXJm", false},
		{"a prefix", tok[:len(tok)-1], false},
		{"the signature alone", "c2lnbmF0dXJl", false},
		{"moved dots", "aGRy.cGF5bG9hZAc2.lnbmF0dXJl", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := c.get(tc.raw, now)
			assert.Equal(t, tc.hit, ok)
		})
	}
}

// TestTokenCacheHoldsOnlyB64Tokens: the middleware skips its syntax check
// on a hit, so a token that fails it is never cached, whoever verified it.
func TestTokenCacheHoldsOnlyB64Tokens(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := newTokenCache(100)
	for _, raw := range []string{"a.b.c\n", "a.b.c\r", "a b.c.d", "a.b=.c", "", "a.b.c" + strings.Repeat("x", maxCachedToken)} {
		c.put(raw, cacheClaims("u", 10), now.Add(time.Minute), now)
		_, ok := c.get(raw, now)
		assert.False(t, ok, "%.20q", raw)
	}
	n, _ := c.stats()
	assert.Zero(t, n)
	c.put("a.b.c==", cacheClaims("u", 10), now.Add(time.Minute), now)
	_, ok := c.get("a.b.c==", now)
	assert.True(t, ok, "padding is allowed")
}

func TestTokenCacheNeverOutlivesTheDeadline(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := newTokenCache(100)
	until := now.Add(10 * time.Second)
	c.put("a.b.c", cacheClaims("alice", 10), until, now)

	_, ok := c.get("a.b.c", until.Add(-time.Nanosecond))
	assert.True(t, ok, "just before the deadline")
	_, ok = c.get("a.b.c", until)
	assert.False(t, ok, "at the deadline")
	_, ok = c.get("a.b.c", until.Add(time.Hour))
	assert.False(t, ok, "after it")

	// A deadline already passed is not cached at all.
	c.put("a.b.d", cacheClaims("bob", 10), now, now)
	_, ok = c.get("a.b.d", now.Add(-time.Second))
	assert.False(t, ok)
	n, _ := c.stats()
	assert.Equal(t, 1, n)
}

func TestTokenCacheDelete(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := newTokenCache(100)
	c.put("a.b.c", cacheClaims("alice", 10), now.Add(time.Minute), now)

	c.delete("x.y.c") // same signature, another token: stays
	_, ok := c.get("a.b.c", now)
	assert.True(t, ok)

	c.delete("a.b.c")
	_, ok = c.get("a.b.c", now)
	assert.False(t, ok, "a revoked token is refused at once")
	n, bytes := c.stats()
	assert.Zero(t, n)
	assert.Zero(t, bytes)
}

func TestTokenCacheBounds(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	t.Run("entries", func(t *testing.T) {
		c := newTokenCache(320)
		for i := range 5000 {
			c.put("h.p."+strconv.Itoa(i), cacheClaims("u", 10), now.Add(time.Hour), now)
		}
		n, _ := c.stats()
		assert.LessOrEqual(t, n, 320)
		assert.Greater(t, n, 200, "shards fill up")
	})
	t.Run("bytes", func(t *testing.T) {
		const maxBytes = 1 << 20
		c := newTokenCacheBytes(100_000, maxBytes)
		for i := range 5000 {
			c.put("h.p."+strconv.Itoa(i), cacheClaims("u", 4000), now.Add(time.Hour), now)
		}
		n, bytes := c.stats()
		assert.LessOrEqual(t, bytes, int64(maxBytes))
		assert.Greater(t, bytes, int64(maxBytes/2))
		assert.Less(t, n, 250, "about 1 MiB of 4.5 KiB entries")
		for i := range c.shards {
			s := &c.shards[i]
			var sum int64
			for _, e := range s.m {
				sum += e.size
			}
			assert.Equal(t, s.bytes, sum, "shard %d accounts its bytes", i)
		}
	})
	t.Run("an entry above a shard's share is not cached", func(t *testing.T) {
		c := newTokenCacheBytes(100, 32*1024)
		c.put("h.p.s", cacheClaims("u", 2000), now.Add(time.Hour), now)
		_, ok := c.get("h.p.s", now)
		assert.False(t, ok)
	})
	t.Run("expired entries go first", func(t *testing.T) {
		c := newTokenCache(2 * cacheShards) // two entries per shard
		var toks []string
		for i := 0; len(toks) < 3; i++ { // three tokens of shard 0
			raw := "h.p." + strconv.Itoa(i)
			if key, _ := tokenKey(raw); c.shard(key) == &c.shards[0] {
				toks = append(toks, raw)
			}
		}
		c.put(toks[0], cacheClaims("expiring", 10), now.Add(time.Second), now)
		c.put(toks[1], cacheClaims("live", 10), now.Add(time.Hour), now)
		later := now.Add(time.Minute)
		c.put(toks[2], cacheClaims("new", 10), later.Add(time.Hour), later)
		for _, raw := range toks[1:] {
			_, ok := c.get(raw, later)
			assert.True(t, ok, "the live entries stay")
		}
		assert.Len(t, c.shards[0].m, 2)
	})
	t.Run("re-putting a token replaces its entry", func(t *testing.T) {
		c := newTokenCache(100)
		c.put("h.p.s", cacheClaims("a", 100), now.Add(time.Hour), now)
		c.put("h.p.s", cacheClaims("a", 200), now.Add(time.Hour), now)
		n, bytes := c.stats()
		assert.Equal(t, 1, n)
		assert.Equal(t, entrySize(cacheClaims("a", 200))+int64(len("h.p.")), bytes)
	})
}

func TestTokenCacheNil(t *testing.T) {
	var c *tokenCache = newTokenCache(-1)
	require.Nil(t, c)
	c.put("a.b.c", cacheClaims("u", 1), time.Now().Add(time.Hour), time.Now())
	_, ok := c.get("a.b.c", time.Now())
	assert.False(t, ok)
	c.delete("a.b.c")
}

// isB64TokenReference is RFC 6750's b64token, spelled out.
func isB64TokenReference(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for _, c := range []byte(body) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

func TestIsB64Token(t *testing.T) {
	for _, s := range []string{"", "=", "==", "a", "a=", "a==", "=a", "a=b", "a b", "ab\x00", "é", "a.b.c", "-._~+/", "abcdefgh", "abcdefghi",
		"abcdefg\x7f", "abcdefgh=", "abcdefghijklmnop=", "abcdefg=h", strings.Repeat("A", 1000) + "\n", strings.Repeat("z", 64) + "=="} {
		assert.Equal(t, isB64TokenReference(s), isB64Token(s), "%q", s)
	}
	// Every byte at every position of a 17-byte token (two 8-byte blocks and a tail).
	for c := range 256 {
		for pos := range 17 {
			b := []byte("abcdefghijklmnopq")
			b[pos] = byte(c)
			assert.Equal(t, isB64TokenReference(string(b)), isB64Token(string(b)), "byte %#x at %d", c, pos)
		}
	}
}

func FuzzIsB64Token(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.sig==")
	f.Add("a=b")
	f.Fuzz(func(t *testing.T, s string) {
		if isB64Token(s) != isB64TokenReference(s) {
			t.Fatalf("%q", s)
		}
	})
}
