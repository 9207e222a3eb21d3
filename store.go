package cognitomcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is returned by a Store when a key is absent or expired. It is
// never returned for a connection or backend failure.
var ErrNotFound = errors.New("cognitomcp: not found")

// ErrLocked is returned by Locker.Lock when another holder has the lock.
var ErrLocked = errors.New("cognitomcp: locked")

// ErrStoreFull is returned by a MemoryStore with MemoryStoreOptions.MaxEntries
// set when a new key would exceed the cap. Live entries are never evicted to
// make room: dropping a revocation or a refresh-token record would weaken
// security.
var ErrStoreFull = errors.New("cognitomcp: store full")

// Store persists the proxy's state. Values are opaque bytes: the proxy
// encrypts secrets before Set, and keys are already hashed and prefixed by the
// proxy. Implementations must be safe for concurrent use, must never put a
// value into an error message, and must return ErrNotFound only for a key
// that is absent or expired (never for a backend failure).
//
// Take must be atomic: of concurrent Takes of one key, across every replica
// sharing the store, at most one returns the value. A Store says whether it
// is by being an AtomicTaker: the proxy refuses one reporting false (unless
// ProxyConfig.InsecureAllowNonAtomicStore is set) and warns at start about
// one that is not an AtomicTaker.
//
// A Store shared by several replicas should also be a Locker; the proxy
// warns at start when it is not. A type that wraps a Store (for metrics or
// tracing) by embedding the Store interface hides AtomicTake and Lock: give
// the wrapper AtomicTake and Lock methods that call the wrapped store's, so
// that it is an AtomicTaker and a Locker exactly when the store is.
type Store interface {
	// Get returns the value of key, or ErrNotFound when absent or expired.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores v under key for ttl, which must be positive.
	Set(ctx context.Context, key string, v []byte, ttl time.Duration) error
	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Take gets and deletes key in one step, or returns ErrNotFound.
	Take(ctx context.Context, key string) ([]byte, error)
}

// Adder is implemented by stores that can set a key only if it is absent,
// atomically across every replica sharing the store (Redis SET NX).
type Adder interface {
	// Add stores v under key for ttl (positive) and reports true, unless key
	// already holds a live value, in which case it changes nothing and
	// reports false.
	Add(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error)
}

// AtomicTaker is implemented by stores that say whether their Take is
// atomic across every replica sharing the store. Implement it, returning
// true, on a Store whose Take is atomic (a single GETDEL, a transaction);
// a wrapper around a Store should forward it. NewProxy refuses a store whose
// AtomicTake reports false unless ProxyConfig.InsecureAllowNonAtomicStore
// is set, and warns at start about a store that is not an AtomicTaker.
type AtomicTaker interface {
	// AtomicTake reports whether Take is atomic: of concurrent Takes of one
	// key, across every replica, at most one returns the value.
	AtomicTake() bool
}

// Locker is implemented by stores that offer a lock with expiry shared by
// every replica.
type Locker interface {
	// Lock takes the lock named key for ttl (positive), or returns ErrLocked
	// when another holder has it. The lock lives in the store's key space, so
	// use a key that names no value. unlock releases the lock only if this
	// holder still owns it (compare-and-delete); once the lock has expired,
	// and perhaps been taken by another holder, unlock does nothing and
	// returns nil. unlock is safe to call more than once.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(context.Context) error, err error)
}

var (
	_ Store       = (*MemoryStore)(nil)
	_ Adder       = (*MemoryStore)(nil)
	_ Locker      = (*MemoryStore)(nil)
	_ AtomicTaker = (*MemoryStore)(nil)
	_ AtomicTaker = (*RedisStore)(nil)
	_ AtomicTaker = (*CacheStore)(nil)
)

// storeTTL rejects a ttl that would store a value forever or not at all.
func storeTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("cognitomcp: store: ttl must be positive, got %v", ttl)
	}
	return nil
}

// storeLockToken returns a random token that identifies one lock holder.
func storeLockToken() []byte { return []byte(rand.Text()) }

const (
	memShardCount  = 32  // power of two
	memSweepStep   = 4   // entries inspected per write
	memSweepOnFull = 512 // entries inspected, over all shards, before ErrStoreFull
)

// MemoryStoreOptions configures NewMemoryStoreWithOptions. The zero value is
// what NewMemoryStore uses.
type MemoryStoreOptions struct {
	// MaxEntries caps the number of entries, expired ones not yet swept
	// included. When a write of a new key would pass the cap, a few expired
	// entries of every shard are swept first; if that frees nothing, the
	// write fails with ErrStoreFull. Default 0: no cap.
	MaxEntries int
}

// MemoryStore is an in-process Store, Adder and Locker for tests and
// single-replica deployments: its state dies with the process and is not
// shared with other replicas. It is safe for concurrent use, honours TTLs on
// every read, copies values in and out (callers may reuse their slices), and
// frees expired entries a few at a time on each write, with no background
// goroutine, so it needs no Close. Use NewMemoryStore; the zero value is
// not ready for use.
type MemoryStore struct {
	shards [memShardCount]memShard
	seed   maphash.Seed
	max    int64
	n      atomic.Int64     // entries in all shards, expired ones included
	now    func() time.Time // tests replace it
}

type memShard struct {
	mu sync.RWMutex
	m  map[string]memEntry
	_  [32]byte // keeps shards on separate cache lines
}

type memEntry struct {
	v   []byte
	exp int64 // unix nanoseconds
}

// NewMemoryStore returns an empty MemoryStore with no entry cap.
func NewMemoryStore() *MemoryStore { return NewMemoryStoreWithOptions(MemoryStoreOptions{}) }

// NewMemoryStoreWithOptions returns an empty MemoryStore configured by opts.
func NewMemoryStoreWithOptions(opts MemoryStoreOptions) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), max: int64(max(opts.MaxEntries, 0)), now: time.Now}
	for i := range s.shards {
		s.shards[i].m = make(map[string]memEntry)
	}
	return s
}

// AtomicTake reports true: Take is atomic within the process.
func (s *MemoryStore) AtomicTake() bool { return true }

// Get returns a copy of the value of key, or ErrNotFound when absent or expired.
func (s *MemoryStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(key)
	now := s.now().UnixNano()
	sh.mu.RLock()
	e, ok := sh.m[key]
	sh.mu.RUnlock()
	if !ok || e.exp <= now {
		return nil, ErrNotFound
	}
	return bytes.Clone(e.v), nil
}

// Set stores a copy of v under key for ttl, which must be positive.
func (s *MemoryStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	_, err := s.put(ctx, key, v, ttl, false)
	return err
}

// Add stores a copy of v under key for ttl unless key holds a live value.
func (s *MemoryStore) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	return s.put(ctx, key, v, ttl, true)
}

// Delete removes key; an absent key is not an error.
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	s.remove(sh, key)
	sh.mu.Unlock()
	return nil
}

// Take removes key and returns its value, or ErrNotFound when absent or
// expired. Of concurrent Takes of one key, exactly one gets the value.
func (s *MemoryStore) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(key)
	now := s.now().UnixNano()
	sh.mu.Lock()
	e, ok := sh.m[key]
	if ok {
		s.remove(sh, key)
	}
	sh.mu.Unlock()
	if !ok || e.exp <= now {
		return nil, ErrNotFound
	}
	return e.v, nil // already a private copy, and no longer in the map
}

// Lock takes the lock named key for ttl, or returns ErrLocked when it is held.
func (s *MemoryStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	token := storeLockToken()
	ok, err := s.put(ctx, key, token, ttl, true)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrLocked
	}
	return func(context.Context) error {
		sh := s.shard(key)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if e, ok := sh.m[key]; ok && e.exp > s.now().UnixNano() && bytes.Equal(e.v, token) {
			s.remove(sh, key)
		}
		return nil
	}, nil
}

// put stores v under key; with onlyIfAbsent it leaves a live value alone and
// reports false.
func (s *MemoryStore) put(ctx context.Context, key string, v []byte, ttl time.Duration, onlyIfAbsent bool) (bool, error) {
	if err := storeTTL(ttl); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now().UnixNano()
	exp := int64(math.MaxInt64)
	if int64(ttl) < math.MaxInt64-now {
		exp = now + int64(ttl)
	}
	e := memEntry{v: bytes.Clone(v), exp: exp}
	if e.v == nil {
		e.v = []byte{}
	}
	if s.max > 0 && s.n.Load() >= s.max {
		s.sweepAll(now) // before taking sh.mu: sweepAll locks each shard in turn
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweep(sh, now, memSweepStep)
	old, exists := sh.m[key]
	if onlyIfAbsent && exists && old.exp > now {
		return false, nil
	}
	if !exists && !s.reserve() {
		return false, ErrStoreFull
	}
	sh.m[key] = e
	return true, nil
}

// reserve counts one more entry, unless that would pass MaxEntries.
func (s *MemoryStore) reserve() bool {
	for {
		n := s.n.Load()
		if s.max > 0 && n >= s.max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// sweepAll sweeps a few entries of every shard, memSweepOnFull in all.
func (s *MemoryStore) sweepAll(now int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		s.sweep(sh, now, memSweepOnFull/memShardCount)
		sh.mu.Unlock()
	}
}

// sweep deletes the expired entries among up to limit entries of sh. Map
// iteration starts at a random position, so repeated small sweeps sample the
// whole shard, as Redis's active expiry does. sh.mu must be held.
func (s *MemoryStore) sweep(sh *memShard, now int64, limit int) {
	for k, e := range sh.m {
		if limit--; limit < 0 {
			return
		}
		if e.exp <= now {
			s.remove(sh, k)
		}
	}
}

// remove deletes key from sh and keeps the entry count. sh.mu must be held.
func (s *MemoryStore) remove(sh *memShard, key string) {
	if _, ok := sh.m[key]; ok {
		delete(sh.m, key)
		s.n.Add(-1)
	}
}

func (s *MemoryStore) shard(key string) *memShard {
	return &s.shards[maphash.String(s.seed, key)&(memShardCount-1)]
}
