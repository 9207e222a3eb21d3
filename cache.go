package cognitomcp

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// tokenCache maps tokens to their verified claims until a deadline, which
// the caller sets no later than the token's exp (and, behind the proxy, the
// revocation bound). An entry is found by the SHA-256 of the end of the
// token, where its signature is, and used only if the rest of the token is
// the one the entry holds, byte for byte (see tokenKey). It holds only
// RFC 6750 b64tokens of at most maxCachedToken bytes, so a hit also answers
// the middleware's syntax check of the Authorization header. It is bounded
// twice, each of its shards holding at most its share of both: in entries,
// and in bytes as estimated by entrySize. A full shard drops the expired
// entries among a sample first, then arbitrary ones (map order is random).
// Lookups take a shard's read lock and do not allocate.
type tokenCache struct {
	maxEntries int   // per shard
	maxBytes   int64 // per shard
	shards     [cacheShards]cacheShard
}

const (
	cacheShards = 32

	// defaultCacheBytes bounds a cache's estimated memory: room for the
	// default 10,000 entries with tokens of up to about 5 KiB.
	defaultCacheBytes = 64 << 20

	// evictSample is how many entries a full shard inspects for expired ones
	// before it evicts live ones: eviction costs O(evictSample), not O(shard).
	evictSample = 32

	// maxCachedToken bounds the tokens the cache hashes and holds: longer
	// ones (which neither verifier accepts) miss at once.
	maxCachedToken = 16 << 10
)

type cacheShard struct {
	mu    sync.RWMutex
	m     map[[32]byte]cacheEntry
	bytes int64    // sum of the entries' sizes
	_     [24]byte // one shard per cache line: readers of two shards do not contend
}

type cacheEntry struct {
	claims *Claims
	prefix string // the token but for its hashed end (see tokenKey)
	until  int64  // unix nanoseconds
	size   int64  // entrySize
}

// newTokenCache returns a cache of about entries tokens and at most
// defaultCacheBytes; nil when entries < 0.
func newTokenCache(entries int) *tokenCache {
	return newTokenCacheBytes(entries, defaultCacheBytes)
}

// newTokenCacheBytes returns a cache of about entries tokens and maxBytes
// estimated bytes; nil when entries < 0.
func newTokenCacheBytes(entries int, maxBytes int64) *tokenCache {
	if entries < 0 {
		return nil
	}
	c := &tokenCache{maxEntries: max(entries/cacheShards, 1), maxBytes: max(maxBytes/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cacheEntry)
	}
	return c
}

// hashedSuffix is how much of a token the cache hashes: its last 119 bytes,
// the most SHA-256 takes in two blocks.
const hashedSuffix = 119

// tokenKey splits raw for the cache: key is the SHA-256 of its last
// hashedSuffix bytes (of all of it when shorter), prefix the rest, which an
// entry keeps and a hit must match byte for byte. As raw = prefix+suffix, a
// hit is exactly a token verified before.
//
// The suffix is where a compact JWS keeps its signature, the part that makes
// it a credential: all of an HS256 or ES256 signature (43 or 86 bytes), and
// the last 710 bits of an RS256 one, which no known method recovers from
// the rest of the token (Coppersmith's needs e ≤ 3 here, and the key set
// accepts only e ≥ 65537; guessing is 2^710 tries), provided the token has
// nothing but base64url and dots in it, which both verifiers insist on
// (isJWSText). So the cache holds nothing a client could present, and a
// request hashes two SHA-256 blocks, not the six of an RS256 signature nor
// the seventeen of a whole Cognito access token. Callers bound len(raw) by
// maxCachedToken.
func tokenKey(raw string) (key [32]byte, prefix string) {
	i := max(len(raw)-hashedSuffix, 0)
	return sha256String(raw[i:]), raw[:i]
}

// sha256String is sha256.Sum256 of s without the copy of []byte(s): Sum256
// only reads its argument, so it may read s's bytes in place.
func sha256String(s string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (c *tokenCache) shard(key [32]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint32(key[:4])%cacheShards]
}

// get returns the claims cached for the token raw, if now is before their
// deadline.
func (c *tokenCache) get(raw string, now time.Time) (*Claims, bool) {
	if c == nil || len(raw) > maxCachedToken {
		return nil, false
	}
	key, prefix := tokenKey(raw)
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	if !ok || e.prefix != prefix || now.UnixNano() >= e.until {
		return nil, false
	}
	return e.claims, true
}

// put caches claims for the token raw until the deadline. A token that is
// no b64token, longer than maxCachedToken, or whose claims exceed a shard's
// share of the byte bound is not cached.
func (c *tokenCache) put(raw string, claims *Claims, until, now time.Time) {
	if c == nil || !now.Before(until) || len(raw) > maxCachedToken || !isB64Token(raw) {
		return
	}
	key, prefix := tokenKey(raw)
	e := cacheEntry{claims: claims, until: unixNanos(until), size: entrySize(claims) + int64(len(prefix))}
	if e.size > c.maxBytes {
		return
	}
	e.prefix = strings.Clone(prefix) // not a substring that would keep the whole token alive
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[key]; ok {
		s.remove(key, old)
	}
	s.makeRoom(now.UnixNano(), e.size, c.maxEntries, c.maxBytes)
	s.m[key] = e
	s.bytes += e.size
}

// delete drops the token raw, so a token revoked on this replica is refused
// at once.
func (c *tokenCache) delete(raw string) {
	if c == nil || len(raw) > maxCachedToken {
		return
	}
	key, prefix := tokenKey(raw)
	s := c.shard(key)
	s.mu.Lock()
	if e, ok := s.m[key]; ok && e.prefix == prefix {
		s.remove(key, e)
	}
	s.mu.Unlock()
}

// stats returns the number of entries and their estimated bytes.
func (c *tokenCache) stats() (entries int, bytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.m)
		bytes += s.bytes
		s.mu.RUnlock()
	}
	return entries, bytes
}

// makeRoom evicts until one more entry of size bytes fits: first the expired
// entries among evictSample of them, then arbitrary ones. s.mu must be held.
func (s *cacheShard) makeRoom(now, size int64, maxEntries int, maxBytes int64) {
	full := func() bool { return len(s.m) >= maxEntries || s.bytes+size > maxBytes }
	if !full() {
		return
	}
	seen := 0
	for k, e := range s.m {
		if seen++; seen > evictSample {
			break
		}
		if now >= e.until {
			s.remove(k, e)
		}
	}
	for k, e := range s.m {
		if !full() {
			return
		}
		s.remove(k, e)
	}
}

// remove deletes the entry e under k. s.mu must be held.
func (s *cacheShard) remove(k [32]byte, e cacheEntry) {
	delete(s.m, k)
	s.bytes -= e.size
}

// Sizes for entrySize, in bytes on 64-bit platforms: calibrated so that the
// estimate of a Cognito access token's entry matches its measured heap
// (BenchmarkTokenCacheHeap), allocator size classes included. put adds the
// token prefix the entry keeps.
const (
	entryOverhead = 512 // the map slot, the Claims struct and size-class rounding
	sliceElem     = 16  // a string header in Groups or Scopes
	clientInfo    = 48  // a ClientInfo
)

// entrySize estimates the memory an entry keeps alive: its map slot, the
// Claims and what they point to. Each cached Claims is a copy of its own, so
// the estimates add up.
func entrySize(c *Claims) int64 {
	n := entryOverhead + len(c.raw) + len(c.Issuer) + len(c.Subject) + len(c.Username) +
		len(c.ClientID) + len(c.TokenUse) + len(c.Email)
	for _, g := range c.Groups {
		n += sliceElem + len(g)
	}
	for _, s := range c.Scopes {
		n += sliceElem + len(s)
	}
	if c.MCPClient != nil {
		n += clientInfo + len(c.MCPClient.ID) + len(c.MCPClient.Name)
	}
	return int64(n)
}

// unixNanos is t in unix nanoseconds, saturated at the int64 range.
func unixNanos(t time.Time) int64 {
	if t.After(maxUnixNano) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var maxUnixNano = time.Unix(0, math.MaxInt64)
