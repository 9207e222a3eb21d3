package cognitomcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/dgraph-io/ristretto"
	"github.com/eko/gocache/lib/v4/store"
	bigcachestore "github.com/eko/gocache/store/bigcache/v4"
	gocachestore "github.com/eko/gocache/store/go_cache/v4"
	redisstore "github.com/eko/gocache/store/redis/v4"
	ristrettostore "github.com/eko/gocache/store/ristretto/v4"
	gocache "github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

// storeClock is a settable clock for MemoryStore and CacheStore.
type storeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newStoreClock() *storeClock { return &storeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *storeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *storeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// storeFixture is one Store under the conformance suite.
type storeFixture struct {
	s        Store
	atomic   bool          // whether Take must be atomic
	shortTTL time.Duration // a TTL the expiry cases wait out
	realTime bool          // the store keeps real time: cases poll, and run in parallel
	// elapse lets shortTTL pass, then requires cond.
	elapse func(t *testing.T, cond func() bool)
}

func fakeTimeFixture(s Store, clock *storeClock, atomic bool) storeFixture {
	return storeFixture{s: s, atomic: atomic, shortTTL: time.Minute, elapse: func(t *testing.T, cond func() bool) {
		t.Helper()
		clock.Add(time.Minute + time.Nanosecond)
		require.True(t, cond())
	}}
}

func realTimeFixture(s Store, atomic bool, ttl time.Duration) storeFixture {
	return storeFixture{s: s, atomic: atomic, shortTTL: ttl, realTime: true, elapse: func(t *testing.T, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, ttl+10*time.Second, 20*time.Millisecond)
	}}
}

// storeSpy wraps a gocache store, fails the test on Clear or Invalidate, and
// records the options of every Set.
type storeSpy struct {
	store.StoreInterface
	t    testing.TB
	mu   sync.Mutex
	sets []store.Options
}

func (s *storeSpy) Set(ctx context.Context, key, value any, opts ...store.Option) error {
	s.mu.Lock()
	s.sets = append(s.sets, *store.ApplyOptions(opts...))
	s.mu.Unlock()
	return s.StoreInterface.Set(ctx, key, value, opts...)
}

func (s *storeSpy) Clear(context.Context) error {
	s.t.Errorf("CacheStore called Clear (FLUSHALL on redis)")
	return errors.New("spy: Clear refused")
}

func (s *storeSpy) Invalidate(context.Context, ...store.InvalidateOption) error {
	s.t.Errorf("CacheStore called Invalidate")
	return errors.New("spy: Invalidate refused")
}

func (s *storeSpy) lastSet() store.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets[len(s.sets)-1]
}

func newGoCacheSpy(t testing.TB) *storeSpy {
	return &storeSpy{StoreInterface: gocachestore.NewGoCache(gocache.New(gocache.NoExpiration, 0)), t: t}
}

// requireNoFlush puts a key outside every prefix into Redis and checks at
// the end of the test that it survived (FLUSHALL or FLUSHDB would remove it).
func requireNoFlush(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	require.NoError(t, c.Set(t.Context(), "unrelated:canary", "x", 0).Err())
	t.Cleanup(func() {
		n, err := c.Exists(context.Background(), "unrelated:canary").Result()
		assert.NoError(t, err)
		assert.EqualValues(t, 1, n, "a key outside the prefix was removed")
	})
}

var storeKinds = []struct {
	name string
	open func(t *testing.T) storeFixture
}{
	{"memory", func(t *testing.T) storeFixture {
		s, clock := NewMemoryStore(), newStoreClock()
		s.now = clock.Now
		return fakeTimeFixture(s, clock, true)
	}},
	{"memory-capped", func(t *testing.T) storeFixture {
		s, clock := NewMemoryStoreWithOptions(MemoryStoreOptions{MaxEntries: 100_000}), newStoreClock()
		s.now = clock.Now
		return fakeTimeFixture(s, clock, true)
	}},
	{"redis", func(t *testing.T) storeFixture {
		c := testredis.Start(t).Client(t)
		requireNoFlush(t, c)
		return realTimeFixture(NewRedisStore(c, RedisStoreOptions{}), true, 1500*time.Millisecond)
	}},
	{"redis-cluster", func(t *testing.T) storeFixture {
		c := testredis.StartWithOptions(t, testredis.StartOptions{Cluster: true}).ClusterClient(t)
		requireNoFlush(t, c)
		return realTimeFixture(NewRedisStore(c, RedisStoreOptions{Prefix: "{t}:"}), true, 1500*time.Millisecond)
	}},
	{"cache/go_cache", func(t *testing.T) storeFixture {
		return realTimeFixture(NewCacheStore(newGoCacheSpy(t), CacheStoreOptions{}), false, 300*time.Millisecond)
	}},
	{"cache/go_cache-fake-clock", func(t *testing.T) storeFixture {
		s, clock := NewCacheStore(newGoCacheSpy(t), CacheStoreOptions{}), newStoreClock()
		s.now = clock.Now // the envelope expires entries go_cache still holds
		return fakeTimeFixture(s, clock, false)
	}},
	{"cache/bigcache", func(t *testing.T) storeFixture {
		b, err := bigcache.New(t.Context(), bigcache.DefaultConfig(time.Hour))
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		spy := &storeSpy{StoreInterface: bigcachestore.NewBigcache(b), t: t}
		s, clock := NewCacheStore(spy, CacheStoreOptions{}), newStoreClock()
		s.now = clock.Now // bigcache ignores TTLs: the envelope expires entries
		return fakeTimeFixture(s, clock, false)
	}},
	{"cache/ristretto", func(t *testing.T) storeFixture {
		r, err := ristretto.NewCache(&ristretto.Config{NumCounters: 1e5, MaxCost: 1 << 20, BufferItems: 64})
		require.NoError(t, err)
		t.Cleanup(r.Close)
		spy := &storeSpy{StoreInterface: ristrettostore.NewRistretto(r), t: t}
		return realTimeFixture(NewCacheStore(spy, CacheStoreOptions{}), false, 300*time.Millisecond)
	}},
	{"cache/redis", func(t *testing.T) storeFixture {
		c := testredis.Start(t).Client(t)
		requireNoFlush(t, c)
		spy := &storeSpy{StoreInterface: redisstore.NewRedis(c), t: t}
		return realTimeFixture(NewCacheStore(spy, CacheStoreOptions{}), false, 1500*time.Millisecond)
	}},
}

var storeCases = []struct {
	name string
	run  func(t *testing.T, f storeFixture, key string)
	// applies reports whether the case is one for store s (an Adder or a
	// Locker case only for stores that are): TestStoreConformance runs no
	// other, rather than skip it, so that a skip in the output means
	// something.
	applies func(s Store) bool
}{
	{"get missing is ErrNotFound", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		_, err := f.s.Get(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = f.s.Take(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound)
		assert.NoError(t, f.s.Delete(ctx, key), "deleting an absent key")
	}, nil},
	{"binary values round-trip", func(t *testing.T, f storeFixture, key string) {
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		large := make([]byte, 256<<10)
		_, _ = rand.Read(large)
		for _, tc := range []struct {
			name string
			v    []byte
		}{
			{"empty", []byte{}},
			{"nil", nil},
			{"zero bytes", []byte{0, 0, 0}},
			{"non-UTF-8", []byte{0xff, 0xfe, 0xc3, 0x28, 0x80}},
			{"NUL inside text", []byte("a\x00b\r\n")},
			{"every byte", all},
			{"256 KiB random", large},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, k := t.Context(), key+"/"+tc.name
				require.NoError(t, f.s.Set(ctx, k, tc.v, time.Hour))
				got, err := f.s.Get(ctx, k)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(tc.v, got), "Get returned other bytes")
				got, err = f.s.Take(ctx, k)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(tc.v, got), "Take returned other bytes")
			})
		}
	}, nil},
	{"values are copied in and out", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		v := []byte("secret")
		require.NoError(t, f.s.Set(ctx, key, v, time.Hour))
		v[0] = 'X'
		got, err := f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "secret", string(got))
		got[0] = 'Y'
		got, err = f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "secret", string(got))
	}, nil},
	{"set overwrites", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		require.NoError(t, f.s.Set(ctx, key, []byte("one"), time.Hour))
		require.NoError(t, f.s.Set(ctx, key, []byte("two"), time.Hour))
		got, err := f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "two", string(got))
	}, nil},
	{"ttl expires", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		require.NoError(t, f.s.Set(ctx, key+"/take", []byte("v"), f.shortTTL)) // set first: expires first
		require.NoError(t, f.s.Set(ctx, key, []byte("v"), f.shortTTL))
		require.NoError(t, f.s.Set(ctx, key+"/long", []byte("v"), f.shortTTL+time.Hour))
		got, err := f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "v", string(got))
		f.elapse(t, func() bool {
			_, err := f.s.Get(ctx, key)
			return errors.Is(err, ErrNotFound)
		})
		_, err = f.s.Take(ctx, key+"/take")
		assert.ErrorIs(t, err, ErrNotFound, "Take of an expired key")
		_, err = f.s.Get(ctx, key+"/long")
		assert.NoError(t, err, "a longer TTL is still alive")
	}, nil},
	{"ttl must be positive", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		for _, ttl := range []time.Duration{0, -time.Second} {
			err := f.s.Set(ctx, key, []byte("v"), ttl)
			assert.Error(t, err, "Set ttl=%v", ttl)
			assert.NotErrorIs(t, err, ErrNotFound)
			if a, ok := f.s.(Adder); ok {
				_, err := a.Add(ctx, key, []byte("v"), ttl)
				assert.Error(t, err, "Add ttl=%v", ttl)
			}
			if l, ok := f.s.(Locker); ok {
				_, err := l.Lock(ctx, key+"/lock", ttl)
				assert.Error(t, err, "Lock ttl=%v", ttl)
				assert.NotErrorIs(t, err, ErrLocked)
			}
		}
		_, err := f.s.Get(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound, "nothing was stored")
	}, nil},
	{"delete", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		require.NoError(t, f.s.Set(ctx, key, []byte("v"), time.Hour))
		require.NoError(t, f.s.Delete(ctx, key))
		_, err := f.s.Get(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound)
		assert.NoError(t, f.s.Delete(ctx, key), "second delete")
	}, nil},
	{"take returns the value once", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		require.NoError(t, f.s.Set(ctx, key, []byte("code"), time.Hour))
		got, err := f.s.Take(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "code", string(got))
		_, err = f.s.Take(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = f.s.Get(ctx, key)
		assert.ErrorIs(t, err, ErrNotFound)
	}, nil},
	{"take under concurrency: exactly one wins", func(t *testing.T, f storeFixture, key string) {
		at, ok := f.s.(interface{ AtomicTake() bool })
		require.True(t, ok, "every store reports AtomicTake")
		require.Equal(t, f.atomic, at.AtomicTake())
		if !f.atomic {
			return // the proxy refuses this store for single-use state
		}
		ctx := t.Context()
		for round := range 10 {
			k := fmt.Sprintf("%s/%d", key, round)
			require.NoError(t, f.s.Set(ctx, k, []byte("code"), time.Hour))
			wins := storeRace(t, 50, func() (bool, error) {
				v, err := f.s.Take(ctx, k)
				if errors.Is(err, ErrNotFound) {
					return false, nil
				}
				if err == nil && string(v) != "code" {
					err = fmt.Errorf("took %q", v)
				}
				return err == nil, err
			})
			require.Equal(t, 1, wins, "round %d", round)
		}
	}, nil},
	{"add sets only if absent", func(t *testing.T, f storeFixture, key string) {
		a := f.s.(Adder)
		ctx := t.Context()
		added, err := a.Add(ctx, key, []byte("one"), time.Hour)
		require.NoError(t, err)
		assert.True(t, added)
		added, err = a.Add(ctx, key, []byte("two"), time.Hour)
		require.NoError(t, err)
		assert.False(t, added)
		got, err := f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "one", string(got), "a refused Add changes nothing")
		require.NoError(t, f.s.Delete(ctx, key))
		added, err = a.Add(ctx, key, []byte("three"), f.shortTTL)
		require.NoError(t, err)
		assert.True(t, added, "Add after Delete")
		f.elapse(t, func() bool {
			added, err := a.Add(ctx, key, []byte("four"), time.Hour)
			return err == nil && added
		})
		got, err = f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "four", string(got), "Add over an expired value")
	}, isAdder},
	{"add under concurrency: exactly one wins", func(t *testing.T, f storeFixture, key string) {
		a := f.s.(Adder)
		ctx := t.Context()
		var winner atomic.Int64
		var n atomic.Int64
		wins := storeRace(t, 50, func() (bool, error) {
			i := n.Add(1)
			added, err := a.Add(ctx, key, []byte(fmt.Sprint(i)), time.Hour)
			if added {
				winner.Store(i)
			}
			return added, err
		})
		require.Equal(t, 1, wins)
		got, err := f.s.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(winner.Load()), string(got))
	}, isAdder},
	{"lock and unlock", func(t *testing.T, f storeFixture, key string) {
		l := f.s.(Locker)
		ctx := t.Context()
		unlock, err := l.Lock(ctx, key, time.Hour)
		require.NoError(t, err)
		_, err = l.Lock(ctx, key, time.Hour)
		assert.ErrorIs(t, err, ErrLocked)
		require.NoError(t, unlock(ctx))
		require.NoError(t, unlock(ctx), "second unlock is a no-op")
		unlock2, err := l.Lock(ctx, key, time.Hour)
		require.NoError(t, err, "lock after unlock")
		require.NoError(t, unlock2(ctx))
	}, isLocker},
	{"lock expires; a stale unlock spares the new holder", func(t *testing.T, f storeFixture, key string) {
		l := f.s.(Locker)
		ctx := t.Context()
		stale, err := l.Lock(ctx, key, f.shortTTL)
		require.NoError(t, err)
		var unlock2 func(context.Context) error
		f.elapse(t, func() bool {
			unlock2, err = l.Lock(ctx, key, time.Hour)
			return err == nil
		})
		require.NoError(t, stale(ctx), "unlocking an expired lock is not an error")
		_, err = l.Lock(ctx, key, time.Hour)
		assert.ErrorIs(t, err, ErrLocked, "the stale unlock released the new holder's lock")
		require.NoError(t, unlock2(ctx))
		unlock3, err := l.Lock(ctx, key, time.Hour)
		require.NoError(t, err)
		require.NoError(t, unlock3(ctx))
	}, isLocker},
	{"lock under concurrency: exactly one wins", func(t *testing.T, f storeFixture, key string) {
		l := f.s.(Locker)
		ctx := t.Context()
		wins := storeRace(t, 50, func() (bool, error) {
			_, err := l.Lock(ctx, key, time.Hour)
			if errors.Is(err, ErrLocked) {
				return false, nil
			}
			return err == nil, err
		})
		assert.Equal(t, 1, wins)
	}, isLocker},
	{"concurrent mixed use", func(t *testing.T, f storeFixture, key string) {
		ctx := t.Context()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					k := fmt.Sprintf("%s/%d/%d", key, g, i%5)
					v := []byte(k)
					if err := f.s.Set(ctx, k, v, time.Hour); err != nil {
						t.Errorf("Set: %v", err)
						return
					}
					if got, err := f.s.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
						t.Errorf("Get = %q, %v", got, err)
						return
					}
					if _, err := f.s.Take(ctx, k); err != nil {
						t.Errorf("Take: %v", err)
						return
					}
					_ = f.s.Set(ctx, key+"/shared", v, time.Hour)
					_, _ = f.s.Get(ctx, key+"/shared")
				}
			})
		}
		wg.Wait()
	}, nil},
}

// storeRace runs op in n goroutines released at once and returns how many
// reported a win. Any error fails the test.
func storeRace(t *testing.T, n int, op func() (bool, error)) int {
	t.Helper()
	var wins atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			won, err := op()
			if err != nil {
				t.Errorf("concurrent op: %v", err)
			}
			if won {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

func isAdder(s Store) bool  { _, ok := s.(Adder); return ok }
func isLocker(s Store) bool { _, ok := s.(Locker); return ok }

func TestStoreConformance(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			f := kind.open(t)
			if f.realTime {
				t.Parallel() // the real-time kinds mostly wait; wait together
			}
			for _, tc := range storeCases {
				if tc.applies != nil && !tc.applies(f.s) {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					if f.realTime {
						t.Parallel() // distinct keys; only waits on real time overlap
					}
					tc.run(t, f, "k/"+strings.ReplaceAll(tc.name, " ", "_"))
				})
			}
		})
	}
}

func TestMemoryStoreHonoursCancelledContext(t *testing.T) {
	s := NewMemoryStore()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Set(ctx, "k", nil, time.Hour), context.Canceled)
	_, err = s.Take(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)
	_, err = s.Lock(ctx, "k", time.Hour)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestMemoryStoreSweepsExpiredEntriesOnWrite(t *testing.T) {
	s, clock := NewMemoryStore(), newStoreClock()
	s.now = clock.Now
	ctx := t.Context()
	const n = 10_000
	for i := range n {
		require.NoError(t, s.Set(ctx, fmt.Sprint("old", i), []byte("v"), time.Minute))
	}
	clock.Add(2 * time.Minute)
	for i := range n {
		require.NoError(t, s.Set(ctx, fmt.Sprint("new", i), []byte("v"), time.Hour))
	}
	left := s.n.Load() - n
	t.Logf("%d of %d expired entries left after %d writes", left, n, n)
	assert.Less(t, left, int64(n/4), "each write sweeps a few entries")
}

func TestMemoryStoreMaxEntries(t *testing.T) {
	s, clock := NewMemoryStoreWithOptions(MemoryStoreOptions{MaxEntries: 64}), newStoreClock()
	s.now = clock.Now
	ctx := t.Context()
	for i := range 64 {
		require.NoError(t, s.Set(ctx, fmt.Sprint(i), []byte("v"), time.Minute))
	}
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"set of a new key", func() error { return s.Set(ctx, "new", []byte("v"), time.Hour) }, ErrStoreFull},
		{"add of a new key", func() error { _, err := s.Add(ctx, "new", []byte("v"), time.Hour); return err }, ErrStoreFull},
		{"lock of a new key", func() error { _, err := s.Lock(ctx, "new", time.Hour); return err }, ErrStoreFull},
		{"overwrite of a live key", func() error { return s.Set(ctx, "1", []byte("w"), time.Minute) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.op(), tc.want)
		})
	}
	got, err := s.Get(ctx, "63")
	require.NoError(t, err, "live entries are never evicted")
	assert.Equal(t, "v", string(got))

	require.NoError(t, s.Delete(ctx, "0"))
	require.NoError(t, s.Set(ctx, "new", []byte("v"), time.Hour), "a delete frees a slot")
	require.ErrorIs(t, s.Set(ctx, "new2", []byte("v"), time.Hour), ErrStoreFull)

	clock.Add(2 * time.Minute) // all but "new" expire
	for i := range 63 {
		require.NoError(t, s.Set(ctx, fmt.Sprint("after", i), []byte("v"), time.Hour), "expired entries are swept when full")
	}
	assert.LessOrEqual(t, s.n.Load(), int64(64))
}

func TestCacheStorePassesOptionsOnEverySet(t *testing.T) {
	spy := newGoCacheSpy(t)
	s := NewCacheStore(spy, CacheStoreOptions{})
	ctx := t.Context()
	for _, ttl := range []time.Duration{1500 * time.Millisecond, 90 * 24 * time.Hour} {
		require.NoError(t, s.Set(ctx, "k", []byte("v"), ttl))
		got := spy.lastSet()
		assert.Equal(t, ttl, got.Expiration)
		assert.True(t, got.SynchronousSet, "ristretto sets are asynchronous without it")
		assert.EqualValues(t, 1, got.Cost)
	}
	_, err := spy.StoreInterface.Get(ctx, "cognitomcp:k")
	assert.NoError(t, err, "default prefix")
}

func TestCacheStorePrefix(t *testing.T) {
	spy := newGoCacheSpy(t)
	a := NewCacheStore(spy, CacheStoreOptions{Prefix: "a:"})
	b := NewCacheStore(spy, CacheStoreOptions{Prefix: "b:"})
	ctx := t.Context()
	require.NoError(t, a.Set(ctx, "k", []byte("A"), time.Hour))
	_, err := b.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = spy.StoreInterface.Get(ctx, "a:k")
	assert.NoError(t, err)
}

func TestCacheStoreEnforcesTTLOverAStoreThatIgnoresIt(t *testing.T) {
	// bigcache and others ignore per-item expiry; the envelope still holds.
	s, clock := NewCacheStore(&storeFake{m: map[string]any{}}, CacheStoreOptions{}), newStoreClock()
	s.now = clock.Now
	ctx := t.Context()
	require.NoError(t, s.Set(ctx, "k", []byte("v"), time.Minute))
	clock.Add(time.Minute)
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Take(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestCacheStoreGetValueTypes(t *testing.T) {
	clock := newStoreClock()
	envelope := func(v string) []byte {
		b := binary.BigEndian.AppendUint64([]byte{cacheStoreEnvVersion}, uint64(clock.Now().Add(time.Hour).UnixNano()))
		return append(b, v...)
	}
	tests := []struct {
		name    string
		stored  any
		want    string
		wantErr string
	}{
		{"bytes", envelope("v"), "v", ""},
		{"string (redis)", string(envelope("v")), "v", ""},
		{"int", 42, "", "unexpected value type int"},
		{"nil", nil, "", "unexpected value type <nil>"},
		{"struct", struct{ Secret string }{"hunter2"}, "", "unexpected value type struct"},
		{"bytes without envelope", []byte("hunter2"), "", "malformed value"},
		{"envelope of another version", append([]byte{9}, envelope("hunter2")[1:]...), "", "malformed value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewCacheStore(&storeFake{m: map[string]any{"cognitomcp:k": tc.stored}}, CacheStoreOptions{})
			s.now = clock.Now
			got, err := s.Get(t.Context(), "k")
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, string(got))
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			assert.NotErrorIs(t, err, ErrNotFound)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestCacheStoreTakeKeepsValueWhenDeleteFails(t *testing.T) {
	fake := &storeFake{m: map[string]any{}, deleteErr: errors.New("backend down")}
	s := NewCacheStore(fake, CacheStoreOptions{})
	ctx := t.Context()
	require.NoError(t, s.Set(ctx, "k", []byte("code"), time.Hour))
	v, err := s.Take(ctx, "k")
	assert.ErrorContains(t, err, "backend down")
	assert.Nil(t, v, "no value unless the delete succeeded")
}

func TestCacheStoreKeepsValuesOutOfErrors(t *testing.T) {
	secret := []byte("tok_5ecret-value")
	tests := []struct {
		name   string
		setErr func(key, value any) error
		is     error
	}{
		{"ristretto's message", func(key, value any) error {
			return fmt.Errorf("An error has occurred while setting value '%v' on key '%v'", value, key)
		}, nil},
		{"as string", func(_, value any) error { return fmt.Errorf("bad value %s", value) }, nil},
		{"as hex", func(_, value any) error { return fmt.Errorf("bad value %x", value) }, nil},
		{"as quoted", func(_, value any) error { return fmt.Errorf("bad value %q", value) }, nil},
		{"wrapping a cause", func(_, value any) error {
			return fmt.Errorf("%w: %s", context.DeadlineExceeded, value)
		}, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewCacheStore(&storeFake{m: map[string]any{}, setErr: tc.setErr}, CacheStoreOptions{})
			err := s.Set(t.Context(), "k", secret, time.Hour)
			require.Error(t, err)
			storeAssertNoValue(t, err, secret)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is, "the cause stays visible to errors.Is")
			}
		})
	}
	t.Run("a clean error keeps its text", func(t *testing.T) {
		s := NewCacheStore(&storeFake{m: map[string]any{}, setErr: func(_, _ any) error { return errors.New("connection refused") }}, CacheStoreOptions{})
		assert.ErrorContains(t, s.Set(t.Context(), "k", secret, time.Hour), "cognitomcp: cache set: connection refused")
	})
}

// storeAssertNoValue fails if err's text shows v in any common form.
func storeAssertNoValue(t *testing.T, err error, v []byte) {
	t.Helper()
	text := err.Error()
	for _, form := range []string{string(v), fmt.Sprint(v), strings.Trim(fmt.Sprint(v), "[]"), hex.EncodeToString(v), base64.StdEncoding.EncodeToString(v)} {
		assert.NotContains(t, text, form)
	}
}

func TestGocacheTTL(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	tests := []struct {
		name string
		kind string
		ttl  time.Duration
		want time.Duration
	}{
		{"redis unchanged", "redis", 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"go-cache unchanged", "go-cache", 90 * 24 * time.Hour, 90 * 24 * time.Hour},
		{"memcache sub-second rounds up, not to never", "memcache", 300 * time.Millisecond, time.Second},
		{"memcache rounds up to whole seconds", "memcache", 1500 * time.Millisecond, 2 * time.Second},
		{"memcache 30 days stays relative", "memcache", 30 * 24 * time.Hour, 30 * 24 * time.Hour},
		{"memcache over 30 days becomes absolute", "memcache", 90 * 24 * time.Hour, time.Duration(now.Unix()+90*24*3600) * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, gocacheTTL(tc.kind, tc.ttl, now))
		})
	}
}

func TestCacheStoreOverGocacheRedisSetsExpiryInRedis(t *testing.T) {
	c := testredis.Start(t).Client(t)
	s := NewCacheStore(redisstore.NewRedis(c), CacheStoreOptions{})
	ctx := t.Context()
	require.NoError(t, s.Set(ctx, "k", []byte("v"), 90*time.Second))
	ttl, err := c.PTTL(ctx, "cognitomcp:k").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 80*time.Second)
	assert.LessOrEqual(t, ttl, 90*time.Second)
}

func TestRedisStorePrefixIsolation(t *testing.T) {
	c := testredis.Start(t).Client(t)
	a := NewRedisStore(c, RedisStoreOptions{Prefix: "a:"})
	b := NewRedisStore(c, RedisStoreOptions{Prefix: "b:"})
	def := NewRedisStore(c, RedisStoreOptions{})
	ctx := t.Context()

	require.NoError(t, a.Set(ctx, "k", []byte("A"), time.Hour))
	require.NoError(t, b.Set(ctx, "k", []byte("B"), time.Hour))
	require.NoError(t, def.Set(ctx, "k", []byte("D"), time.Hour))
	for prefix, want := range map[string]string{"a:k": "A", "b:k": "B", "cognitomcp:k": "D"} {
		got, err := c.Get(ctx, prefix).Result()
		require.NoError(t, err, prefix)
		assert.Equal(t, want, got, prefix)
	}

	got, err := a.Take(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "A", string(got))
	got, err = b.Get(ctx, "k")
	require.NoError(t, err, "a Take under one prefix spares the other")
	assert.Equal(t, "B", string(got))

	added, err := a.Add(ctx, "k", []byte("A2"), time.Hour)
	require.NoError(t, err)
	assert.True(t, added, "Add sees only its own prefix")
	unlock, err := a.Lock(ctx, "l", time.Hour)
	require.NoError(t, err)
	unlockB, err := b.Lock(ctx, "l", time.Hour)
	require.NoError(t, err, "locks are per prefix")
	require.NoError(t, unlock(ctx))
	require.NoError(t, unlockB(ctx))

	require.NoError(t, b.Delete(ctx, "k"))
	got, err = def.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "D", string(got))
}

// TestRedisOutage kills Redis mid-flow: every operation fails with an error
// that is neither ErrNotFound nor ErrLocked and does not show the value; after
// a restart the stores work again and acknowledged writes are still there.
func TestRedisOutage(t *testing.T) {
	srv := testredis.StartWithOptions(t, testredis.StartOptions{Persist: true})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	secret := []byte("refresh-token-s3cr3t")
	stores := []struct {
		name string
		s    Store
	}{
		{"redis", NewRedisStore(c, RedisStoreOptions{})},
		{"cache/redis", NewCacheStore(&storeSpy{StoreInterface: redisstore.NewRedis(c), t: t}, CacheStoreOptions{Prefix: "cache:"})},
	}
	ctx := t.Context()
	for _, st := range stores {
		require.NoError(t, st.s.Set(ctx, "kept", secret, time.Hour), st.name)
	}

	srv.Stop()
	for _, st := range stores {
		t.Run(st.name+"/down", func(t *testing.T) {
			ops := map[string]func() error{
				"get":    func() error { _, err := st.s.Get(ctx, "kept"); return err },
				"set":    func() error { return st.s.Set(ctx, "k", secret, time.Hour) },
				"delete": func() error { return st.s.Delete(ctx, "kept") },
				"take":   func() error { _, err := st.s.Take(ctx, "kept"); return err },
			}
			if a, ok := st.s.(Adder); ok {
				ops["add"] = func() error { _, err := a.Add(ctx, "k", secret, time.Hour); return err }
			}
			if l, ok := st.s.(Locker); ok {
				ops["lock"] = func() error { _, err := l.Lock(ctx, "l", time.Hour); return err }
			}
			for name, op := range ops {
				err := op()
				require.Error(t, err, name)
				assert.NotErrorIs(t, err, ErrNotFound, name)
				assert.NotErrorIs(t, err, ErrLocked, name)
				assert.True(t, strings.HasPrefix(err.Error(), "cognitomcp: "), "%s: %v", name, err)
				storeAssertNoValue(t, err, secret)
			}
		})
	}

	srv.Restart(t)
	for _, st := range stores {
		t.Run(st.name+"/restarted", func(t *testing.T) {
			var got []byte
			require.Eventually(t, func() bool {
				var err error
				got, err = st.s.Get(ctx, "kept")
				return err == nil
			}, 10*time.Second, 20*time.Millisecond)
			assert.Equal(t, secret, got, "acknowledged write survived (appendfsync always)")
			got, err := st.s.Take(ctx, "kept")
			require.NoError(t, err)
			assert.Equal(t, secret, got)
			require.NoError(t, st.s.Set(ctx, "k", secret, time.Hour))
		})
	}
}

func TestRedisStoreUnlockAfterOutage(t *testing.T) {
	srv := testredis.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	s := NewRedisStore(c, RedisStoreOptions{})
	unlock, err := s.Lock(t.Context(), "l", time.Hour)
	require.NoError(t, err)
	srv.Stop()
	err = unlock(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cognitomcp: redis unlock: ")
	srv.Restart(t) // no persistence: the script cache is empty, so unlock falls back to EVAL
	require.Eventually(t, func() bool {
		u, err := s.Lock(t.Context(), "l2", time.Hour)
		return err == nil && u(t.Context()) == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// TestRedisStoreLockSurvivesALostReply: go-redis sends a command again when
// its connection broke after sending it (MaxRetries, 3 by default). A Lock
// whose first reply was lost that way still gets the lock, rather than
// finding it held by itself and leaving the grant's refreshes waiting for
// the lock's expiry.
func TestRedisStoreLockSurvivesALostReply(t *testing.T) {
	srv := testredis.Start(t)
	d := newReplyDropper(t, srv.Addr)
	c := redis.NewClient(&redis.Options{Addr: d.addr()})
	t.Cleanup(func() { _ = c.Close() })
	s := NewRedisStore(c, RedisStoreOptions{})
	ctx := t.Context()
	require.NoError(t, redisLock.Load(ctx, c).Err()) // so that its first run is the one that loses its reply

	d.arm("lock:g")
	unlock, err := s.Lock(ctx, "lock:g", time.Minute)
	require.NoError(t, err, "the only Lock of a free lock was refused against its own token")
	assert.True(t, d.dropped(), "a reply was lost")
	require.NoError(t, unlock(ctx))
	unlock, err = s.Lock(ctx, "lock:g", time.Minute)
	require.NoError(t, err, "and released")
	_, err = s.Lock(ctx, "lock:g", time.Minute)
	assert.ErrorIs(t, err, ErrLocked, "held by another")
	require.NoError(t, unlock(ctx))
}

// replyDropper is a TCP proxy to Redis that, once armed with a string, lets
// the first command holding it reach Redis and then closes the client's
// connection instead of passing the reply on: a reply lost to a reset.
type replyDropper struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	armed  string
	drops  int
}

func newReplyDropper(t *testing.T, target string) *replyDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &replyDropper{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			go d.serve(cc)
		}
	}()
	return d
}

func (d *replyDropper) addr() string { return d.ln.Addr().String() }

func (d *replyDropper) arm(s string) { d.mu.Lock(); d.armed = s; d.mu.Unlock() }

func (d *replyDropper) dropped() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.drops > 0 }

func (d *replyDropper) serve(cc net.Conn) {
	defer cc.Close()
	sc, err := net.Dial("tcp", d.target)
	if err != nil {
		return
	}
	defer sc.Close()
	drop := make(chan struct{}, 1)
	go func() { // client → Redis, spotting the armed command
		buf := make([]byte, 64<<10)
		for {
			n, err := cc.Read(buf)
			if n > 0 {
				d.mu.Lock()
				hit := d.armed != "" && bytes.Contains(buf[:n], []byte(d.armed))
				if hit {
					d.armed = ""
					d.drops++
				}
				d.mu.Unlock()
				if hit {
					drop <- struct{}{}
				}
				if _, err := sc.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := sc.Read(buf)
		if n > 0 {
			select {
			case <-drop: // Redis ran it; the client never hears
				return
			default:
			}
			if _, err := cc.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestStoreConstructorsPanicOnNil(t *testing.T) {
	assert.PanicsWithValue(t, "cognitomcp: NewCacheStore: nil store", func() { NewCacheStore(nil, CacheStoreOptions{}) })
	assert.PanicsWithValue(t, "cognitomcp: NewRedisStore: nil client", func() { NewRedisStore(nil, RedisStoreOptions{}) })
}

// storeFake is a gocache store with injectable behaviour.
type storeFake struct {
	mu        sync.Mutex
	m         map[string]any
	setErr    func(key, value any) error
	deleteErr error
}

func (f *storeFake) Get(_ context.Context, key any) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[key.(string)]
	if !ok {
		return nil, store.NotFoundWithCause(errors.New("fake: missing"))
	}
	return v, nil
}

func (f *storeFake) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	v, err := f.Get(ctx, key)
	return v, 0, err
}

func (f *storeFake) Set(_ context.Context, key, value any, _ ...store.Option) error {
	if f.setErr != nil {
		return f.setErr(key, value)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[key.(string)] = value // ignores the TTL, like bigcache
	return nil
}

func (f *storeFake) Delete(_ context.Context, key any) error {
	if f.deleteErr != nil {
		return f.deleteErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key.(string))
	return nil
}

func (f *storeFake) Invalidate(context.Context, ...store.InvalidateOption) error {
	panic("storeFake: Invalidate")
}
func (f *storeFake) Clear(context.Context) error { panic("storeFake: Clear") }
func (f *storeFake) GetType() string             { return "fake" }

// errBackendMiss is a backend's own "no such key", which gocache does not wrap.
var errBackendMiss = errors.New("backend: no such key")

// storeOwnMiss is storeFake answering a miss with errBackendMiss.
type storeOwnMiss struct{ *storeFake }

func (s storeOwnMiss) Get(ctx context.Context, key any) (any, error) {
	v, err := s.storeFake.Get(ctx, key)
	if errors.Is(err, store.NotFound{}) {
		return nil, errBackendMiss
	}
	return v, err
}

// TestCacheStoreIsNotFound: a backend's own miss error is ErrNotFound when
// CacheStoreOptions.IsNotFound recognises it (at Get and at Delete), and a
// backend error otherwise, as any other error is.
func TestCacheStoreIsNotFound(t *testing.T) {
	is := func(err error) bool { return errors.Is(err, errBackendMiss) }
	s := NewCacheStore(storeOwnMiss{&storeFake{m: map[string]any{}, deleteErr: errBackendMiss}}, CacheStoreOptions{IsNotFound: is})
	_, err := s.Get(t.Context(), "k")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.NoError(t, s.Delete(t.Context(), "k"), "deleting an absent key is no error")

	s = NewCacheStore(storeOwnMiss{&storeFake{m: map[string]any{}, deleteErr: errBackendMiss}}, CacheStoreOptions{})
	_, err = s.Get(t.Context(), "k")
	assert.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound, "an error not recognised is the backend's")
	assert.Error(t, s.Delete(t.Context(), "k"))
}

// TestLocalLockBounded: with a store that is not a Locker, the in-process
// lock serialises holders of one name, and a waiter gives up after its wait
// (ErrUnavailable) or when its context ends, instead of queueing for ever.
func TestLocalLockBounded(t *testing.T) {
	fx := newRegisterTestProxy(t, func(cfg *ProxyConfig) {
		cfg.Store = NewCacheStore(newGoCacheSpy(t), CacheStoreOptions{})
		cfg.InsecureAllowNonAtomicStore = true // one process: the fallback is all the locking there is
	})
	p := fx.p
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- p.withLock(t.Context(), "grant:a", time.Second, func(context.Context) error {
			close(entered)
			<-release
			return nil
		})
	}()
	<-entered

	ran := false
	err := p.withLock(t.Context(), "grant:a", 20*time.Millisecond, func(context.Context) error { ran = true; return nil })
	assert.ErrorIs(t, err, ErrUnavailable, "a waiter gives up after its wait")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = p.withLock(ctx, "grant:a", time.Minute, func(context.Context) error { ran = true; return nil })
	assert.ErrorIs(t, err, context.Canceled, "a waiter gives up when its request ends")
	assert.ErrorIs(t, err, ErrUnavailable, "a 503 (a request's deadline is no server error)")
	assert.False(t, ran, "no waiter ran while the lock was held")

	close(release)
	require.NoError(t, <-done)
	require.NoError(t, p.withLock(t.Context(), "grant:a", 20*time.Millisecond, func(context.Context) error { ran = true; return nil }))
	assert.True(t, ran, "the lock is free once its holder is done")
}

// TestGrantLockWorkEndsBeforeTheLock: the work under a grant's lock goes on
// when the client goes away, and ends (its context's deadline) before the
// lock could expire, with the shared lock and the in-process one: a store
// write that hangs is abandoned rather than landing after another replica
// could have taken the lock and revoked the grant.
func TestGrantLockWorkEndsBeforeTheLock(t *testing.T) {
	defer func(old time.Duration) { lockTTL = old }(lockTTL)
	lockTTL = 600 * time.Millisecond
	for name, store := range map[string]Store{
		"shared lock":     NewMemoryStore(),
		"in-process lock": NewCacheStore(newGoCacheSpy(t), CacheStoreOptions{}),
	} {
		t.Run(name, func(t *testing.T) {
			fx := newRegisterTestProxy(t, func(cfg *ProxyConfig) { cfg.Store, cfg.InsecureAllowNonAtomicStore = store, true })
			ctx, cancel := context.WithCancel(t.Context())
			start := time.Now()
			var goneOn bool
			var deadline time.Time
			err := fx.p.withGrantLock(ctx, "g", func(ctx context.Context) error {
				cancel() // the client goes away
				goneOn = ctx.Err() == nil
				deadline, _ = ctx.Deadline()
				select { // a store write that hangs
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(5 * time.Second):
					return nil
				}
			})
			assert.True(t, goneOn, "the client's going away does not end the work")
			assert.ErrorIs(t, err, context.DeadlineExceeded, "the hanging write is abandoned")
			assert.True(t, !deadline.IsZero() && deadline.Before(start.Add(lockTTL)), "deadline %v, lock until %v", deadline, start.Add(lockTTL))
		})
	}
}

// TestRevokedTokensRememberedHere: an access token revoked on this replica
// is remembered here, by jti, for as long as a check of it that read "not
// revoked" can still be running (lockWait+lockTTL) once the store has the
// revocation, and until the token expires when the store could not take
// it; a cache entry such a check writes afterwards is never served.
func TestRevokedTokensRememberedHere(t *testing.T) {
	for _, storeFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("store fails=%v", storeFails), func(t *testing.T) {
			fx := newRegisterTestProxy(t, nil)
			p := fx.p
			if storeFails {
				p.store = failingSetStore{p.store}
			}
			now := p.now()
			exp := now.Add(time.Hour)
			raw, err := p.keys.signer.Sign(&proxyClaims{Issuer: p.issuer, Audience: p.resource, Subject: "s", ClientID: "c1",
				ID: "jti-1", IssuedAt: now.Unix(), Expiry: exp.Unix(), GrantID: "g1"})
			require.NoError(t, err)
			err = p.revokeAccessToken(t.Context(), &clientRecord{ID: "c1"}, raw)
			until := p.revokedTokensHere.ids.m["jti-1"].until
			if storeFails {
				assert.Error(t, err)
				assert.Equal(t, exp.Add(proxyTokenSkew), until, "the only guard here: until the token expires")
			} else {
				require.NoError(t, err)
				assert.Equal(t, now.Add(lockWait+lockTTL), until, "as long as a check in flight can run")
			}
			// A check in flight writes its cache entry after the revocation.
			p.tokens.put(raw, &Claims{Subject: "s", grantID: "g1", tokenID: "jti-1", Expiry: exp}, exp, now)
			_, ok := p.cachedToken(raw, now)
			assert.False(t, ok, "never served from the cache")
		})
	}
}

// failingSetStore is a Store whose writes fail.
type failingSetStore struct{ Store }

func (failingSetStore) Set(context.Context, string, []byte, time.Duration) error {
	return errors.New("store write failed")
}
