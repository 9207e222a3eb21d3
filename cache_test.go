package cognitomcp

import (
	"crypto/sha256"
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
	long := strings.Repeat("h", 91) + "." + strings.Repeat("p", 615) + "." + strings.Repeat("s", 342) // RS256-sized
	tests := []struct {
		name, raw, prefix string
	}{
		{name: "RS256-sized JWS: the last 119 bytes are hashed", raw: long, prefix: long[:len(long)-119]},
		{name: "HS256-sized JWS: all hashed", raw: "aGRy.cGF5bG9hZA." + strings.Repeat("s", 43), prefix: ""},
		{name: "exactly 119 bytes: all hashed", raw: strings.Repeat("a", 119), prefix: ""},
		{name: "120 bytes: one byte kept", raw: "b" + strings.Repeat("a", 119), prefix: "b"},
		{name: "empty", raw: "", prefix: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, prefix := tokenKey(tc.raw)
			assert.Equal(t, tc.prefix, prefix)
			assert.Equal(t, sha256.Sum256([]byte(tc.raw[len(prefix):])), key)
		})
	}
}

// TestTokenKeyCoversTheSignature: the hashed end holds all of an HS256 or
// ES256 signature and at least 119 base64url characters of an RS256 one
// (710 bits: the last character carries 2), so what an entry keeps cannot
// be presented.
func TestTokenKeyCoversTheSignature(t *testing.T) {
	for _, sigBytes := range []int{32, 64, 256, 384, 512} { // HS256, ES256, RS256 with 2048-, 3072-, 4096-bit keys
		raw := "aGRy.cGF5bG9hZA." + randomSignature(sigBytes)
		sig := raw[strings.LastIndexByte(raw, '.')+1:]
		_, prefix := tokenKey(raw)
		hashed := len(raw) - len(prefix)
		assert.GreaterOrEqual(t, hashed, min(len(sig), 119), "%d-byte signature", sigBytes)
	}
}

func TestTokenCacheHitNeedsTheExactToken(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := newTokenCache(100)
	header, payload, sig := "aGRy", "cGF5bG9hZA", randomSignature(256)
	tok := header + "." + payload + "." + sig
	c.put(tok, cacheClaims("alice", 10), now.Add(time.Minute), now)
	flip := func(s string, i int) string { // s with its i-th byte changed
		b := []byte(s)
		b[i] ^= 'A' ^ 'B'
		return string(b)
	}

	tests := []struct {
		name string
		raw  string
		hit  bool
	}{
		{"the same token", tok, true},
		{"another payload, same signature", header + ".cGF5bG9hZB." + sig, false},
		{"first signature byte changed (kept part)", header + "." + payload + "." + flip(sig, 0), false},
		{"signature byte changed just before the hashed end", flip(tok, len(tok)-120), false},
		{"signature byte changed in the hashed end", flip(tok, len(tok)-119), false},
		{"last signature byte changed", flip(tok, len(tok)-1), false},
		{"a prefix", tok[:len(tok)-1], false},
		{"one byte fewer in the kept part", tok[:5] + tok[6:], false},
		{"one byte more in the kept part", tok[:5] + "A" + tok[5:], false},
		{"one byte more", tok + "A", false},
		{"the signature alone", sig, false},
		{"moved dots", header + payload + "." + "." + sig, false},
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
	sig := randomSignature(256)
	tok := "a.b." + sig
	c.put(tok, cacheClaims("alice", 10), now.Add(time.Minute), now)

	c.delete("x.y." + sig) // same signature, another token: stays
	_, ok := c.get(tok, now)
	assert.True(t, ok)

	c.delete(tok)
	_, ok = c.get(tok, now)
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
		tok := "h.p." + strings.Repeat("s", 200)
		c.put(tok, cacheClaims("a", 100), now.Add(time.Hour), now)
		c.put(tok, cacheClaims("a", 200), now.Add(time.Hour), now)
		n, bytes := c.stats()
		assert.Equal(t, 1, n)
		assert.Equal(t, entrySize(cacheClaims("a", 200))+int64(len(tok)-hashedSuffix), bytes)
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

// TestRevokedGrantsBounded: the grants a replica revoked are remembered
// until their time, at most maxRevokedHere of them; past that a new one is
// not (add says so), one already known is updated, and expired ones make
// room.
func TestRevokedGrantsBounded(t *testing.T) {
	var r revokedGrants
	now := time.Unix(1000, 0)
	for i := range maxRevokedHere {
		require.True(t, r.add("g"+strconv.Itoa(i), now.Add(time.Minute), now))
	}
	assert.False(t, r.add("one-too-many", now.Add(time.Hour), now), "full")
	assert.False(t, r.has("one-too-many", now))
	assert.True(t, r.add("g0", now.Add(time.Hour), now), "a known grant is updated")
	assert.True(t, r.has("g0", now.Add(30*time.Minute)))
	assert.False(t, r.has("g1", now.Add(2*time.Minute)), "expired")
	later := now.Add(2 * time.Minute)
	assert.True(t, r.add("one-too-many", later.Add(time.Hour), later), "expired entries make room")
	assert.True(t, r.has("one-too-many", later))
}
