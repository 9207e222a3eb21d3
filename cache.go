package cognitomcp

import (
	"encoding/binary"
	"sync"
	"time"
)

// tokenCache maps the SHA-256 of a token to its verified claims until a
// deadline. It is bounded: each shard holds at most its share of the
// entries, and a full shard drops expired entries first, then arbitrary
// ones. Lookups do not allocate.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	claims *Claims
	until  time.Time
}

// newTokenCache returns a cache of about size entries; nil when size < 0.
func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	per := max(size/cacheShards, 1)
	c := &tokenCache{perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(key [32]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint32(key[:4])%cacheShards]
}

// get returns the claims cached under key if now is before their deadline.
func (c *tokenCache) get(key [32]byte, now time.Time) (*Claims, bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.claims, true
}

// put caches claims under key until the deadline.
func (c *tokenCache) put(key [32]byte, claims *Claims, until, now time.Time) {
	if c == nil || !now.Before(until) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		s.evict(now, c.perShard)
	}
	s.m[key] = cacheEntry{claims: claims, until: until}
}

// delete drops key, so a token revoked on this replica is refused at once.
func (c *tokenCache) delete(key [32]byte) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// evict makes room for one entry: expired entries go first; if none had
// expired, one arbitrary entry goes (map order is random).
func (s *cacheShard) evict(now time.Time, limit int) {
	for k, e := range s.m {
		if !now.Before(e.until) {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) < limit {
			return
		}
		delete(s.m, k)
	}
}
