package cognitomcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// defaultStorePrefix is the key prefix of CacheStore and RedisStore.
const defaultStorePrefix = "cognitomcp:"

// CacheStoreOptions configures NewCacheStore.
type CacheStoreOptions struct {
	// Prefix is prepended to every key, so that the proxy's keys cannot
	// collide with others in a shared store. Default "cognitomcp:".
	Prefix string
	// IsNotFound reports whether an error of the store's Get or Delete
	// means that the key is absent, for a store that does not return
	// gocache's store.NotFound then. Default: bigcache's ErrEntryNotFound,
	// which gocache's bigcache store returns as is (also behind a
	// cache.Cache).
	IsNotFound func(error) bool
}

// bigcacheNotFound recognises bigcache's ErrEntryNotFound by its text, so
// that the package does not depend on bigcache.
func bigcacheNotFound(err error) bool { return err.Error() == "Entry not found" }

// CacheStore is a Store over any gocache store (github.com/eko/gocache):
// go_cache, ristretto, memcache, bigcache, redis and others.
//
// It prefixes every key; copies values in and out; passes
// store.WithExpiration, store.WithSynchronousSet and store.WithCost(1) on
// every Set (so go_cache's ignored defaults and ristretto's asynchronous sets
// do no harm); stores the expiry beside the value and checks it on every
// read, so TTLs hold even over a store that ignores them (bigcache); accepts
// []byte or string from Get and treats anything else as an error; maps
// gocache's store.NotFound to ErrNotFound, and bigcache's own miss error,
// which gocache's bigcache store returns unwrapped (or whatever
// CacheStoreOptions.IsNotFound recognises); withholds any backend error text
// that contains the value (ristretto puts the value in its error); and never
// calls Clear or Invalidate (the redis store's Clear runs FLUSHALL).
//
// Its Take is a Get then a Delete, and is NOT atomic: two replicas, or two
// goroutines, may both take one value. AtomicTake reports false, and the
// proxy refuses such a store for single-use state (codes, transactions, CSRF
// tokens, refresh tokens) unless told otherwise. For Redis use RedisStore,
// whose Take is atomic.
type CacheStore struct {
	s        store.StoreInterface
	prefix   string
	kind     string           // store.GetType(), fixed at construction
	notFound func(error) bool // CacheStoreOptions.IsNotFound, or bigcacheNotFound
	now      func() time.Time // tests replace it
}

var _ Store = (*CacheStore)(nil)

// NewCacheStore returns a CacheStore over s. It panics if s is nil.
func NewCacheStore(s store.StoreInterface, opts CacheStoreOptions) *CacheStore {
	if s == nil {
		panic("cognitomcp: NewCacheStore: nil store")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultStorePrefix
	}
	c := &CacheStore{s: s, prefix: opts.Prefix, kind: s.GetType(), notFound: opts.IsNotFound, now: time.Now}
	if c.notFound == nil {
		c.notFound = bigcacheNotFound
	}
	return c
}

// AtomicTake reports false: Take is a Get then a Delete.
func (c *CacheStore) AtomicTake() bool { return false }

// cacheStoreEnvVersion starts every value a CacheStore writes: a version
// byte, the expiry in big-endian Unix nanoseconds, then the value.
const (
	cacheStoreEnvVersion = 1
	cacheStoreEnvLen     = 1 + 8
)

// Get returns the value of key, or ErrNotFound when absent or expired.
func (c *CacheStore) Get(ctx context.Context, key string) ([]byte, error) {
	raw, err := gocacheGet(ctx, c.s, "cache", c.prefix+key, c.notFound)
	if err != nil {
		return nil, err
	}
	return c.open(raw)
}

// Set stores v under key for ttl, which must be positive.
func (c *CacheStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := storeTTL(ttl); err != nil {
		return err
	}
	now := c.now()
	exp := int64(math.MaxInt64)
	if int64(ttl) < math.MaxInt64-now.UnixNano() {
		exp = now.UnixNano() + int64(ttl)
	}
	buf := make([]byte, cacheStoreEnvLen, cacheStoreEnvLen+len(v))
	buf[0] = cacheStoreEnvVersion
	binary.BigEndian.PutUint64(buf[1:], uint64(exp))
	buf = append(buf, v...)
	return gocacheSet(ctx, c.s, "cache", c.prefix+key, buf, v, gocacheTTL(c.kind, ttl, now))
}

// Delete removes key; an absent key is not an error.
func (c *CacheStore) Delete(ctx context.Context, key string) error {
	return gocacheDelete(ctx, c.s, "cache", c.prefix+key, c.notFound)
}

// Take returns the value of key after deleting it, or ErrNotFound. It is not
// atomic (see CacheStore); it returns the value only once the Delete has
// succeeded.
func (c *CacheStore) Take(ctx context.Context, key string) ([]byte, error) {
	v, err := c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := c.Delete(ctx, key); err != nil {
		return nil, err
	}
	return v, nil
}

// open checks the envelope of a stored value and returns the value.
func (c *CacheStore) open(raw []byte) ([]byte, error) {
	if len(raw) < cacheStoreEnvLen || raw[0] != cacheStoreEnvVersion {
		return nil, errors.New("cognitomcp: cache get: malformed value (not written by CacheStore)")
	}
	if int64(binary.BigEndian.Uint64(raw[1:])) <= c.now().UnixNano() {
		return nil, ErrNotFound
	}
	return raw[cacheStoreEnvLen:], nil
}

// gocacheGet reads key from s and returns a private copy of its bytes. An
// error that is gocache's store.NotFound, or that notFound (when not nil)
// recognises, is ErrNotFound.
func gocacheGet(ctx context.Context, s store.StoreInterface, kind, key string, notFound func(error) bool) ([]byte, error) {
	v, err := s.Get(ctx, key)
	if isNotFound(err, notFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: %s get: %w", kind, err)
	}
	switch v := v.(type) {
	case []byte:
		return bytes.Clone(v), nil // memory stores hand back the slice they hold
	case string:
		return []byte(v), nil // Redis hands back strings
	default:
		return nil, fmt.Errorf("cognitomcp: %s get: unexpected value type %T, want []byte or string", kind, v)
	}
}

// gocacheSet writes stored (which the caller owns) under key; v is the
// caller's value, used only to keep it out of error messages.
func gocacheSet(ctx context.Context, s store.StoreInterface, kind, key string, stored, v []byte, exp time.Duration) error {
	err := s.Set(ctx, key, stored, store.WithExpiration(exp), store.WithSynchronousSet(), store.WithCost(1))
	if err != nil {
		return storeRedact(fmt.Sprintf("cognitomcp: %s set", kind), err, v, stored)
	}
	return nil
}

func gocacheDelete(ctx context.Context, s store.StoreInterface, kind, key string, notFound func(error) bool) error {
	if err := s.Delete(ctx, key); err != nil && !isNotFound(err, notFound) {
		return fmt.Errorf("cognitomcp: %s delete: %w", kind, err)
	}
	return nil
}

func isNotFound(err error, notFound func(error) bool) bool {
	return err != nil && (errors.Is(err, store.NotFound{}) || notFound != nil && notFound(err))
}

// memcacheMaxRelative is the longest expiry memcached reads as relative;
// it reads a larger number as an absolute Unix time.
const memcacheMaxRelative = 30 * 24 * time.Hour

// gocacheTTL adapts ttl to the store. gocache's memcache store truncates the
// expiry to whole seconds (so a sub-second TTL becomes "never") and passes
// more than 30 days through, which memcached reads as a Unix time in 1970.
func gocacheTTL(kind string, ttl time.Duration, now time.Time) time.Duration {
	if kind != "memcache" {
		return ttl
	}
	secs := (ttl + time.Second - 1) / time.Second
	if secs*time.Second > memcacheMaxRelative {
		return time.Duration(now.Unix()+int64(secs)) * time.Second
	}
	return secs * time.Second
}

// storeRedact wraps err under msg, unless err's text shows any of the values
// in a form a library might print (raw, %v, hex, base64, quoted); then the text
// is withheld, while errors.Is still sees the cause.
func storeRedact(msg string, err error, values ...[]byte) error {
	text := err.Error()
	for _, v := range values {
		if len(v) > 0 && storeLeaks(text, v) {
			return &storeRedactedError{msg: msg + ": error text withheld (it contained the value)", cause: err}
		}
	}
	return fmt.Errorf("%s: %w", msg, err)
}

func storeLeaks(text string, v []byte) bool {
	quoted := strconv.Quote(string(v))
	forms := []string{
		string(v), strings.Trim(fmt.Sprint(v), "[]"), hex.EncodeToString(v), strings.ToUpper(hex.EncodeToString(v)),
		base64.StdEncoding.EncodeToString(v), base64.RawURLEncoding.EncodeToString(v),
		quoted[1 : len(quoted)-1],
	}
	for _, f := range forms {
		if strings.Contains(text, f) {
			return true
		}
	}
	return false
}

// storeRedactedError hides its cause's text but not its identity: errors.Is
// matches the cause (context.Canceled, net errors), errors.Unwrap does not
// return it, so the text cannot be printed by accident.
type storeRedactedError struct {
	msg   string
	cause error
}

func (e *storeRedactedError) Error() string        { return e.msg }
func (e *storeRedactedError) Is(target error) bool { return errors.Is(e.cause, target) }
