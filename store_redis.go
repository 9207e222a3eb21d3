package cognitomcp

import (
	"context"
	"errors"
	"fmt"
	"time"

	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/redis/go-redis/v9"
)

// Every UniversalClient (single node, Cluster, Sentinel) fits gocache's redis store.
var _ redisstore.RedisClientInterface = redis.UniversalClient(nil)

var (
	_ Store  = (*RedisStore)(nil)
	_ Adder  = (*RedisStore)(nil)
	_ Locker = (*RedisStore)(nil)
)

// RedisStoreOptions configures NewRedisStore.
type RedisStoreOptions struct {
	// Prefix is prepended to every key, so that several proxies (or other
	// programs) can share one Redis. Default "cognitomcp:".
	Prefix string
}

// RedisStore is a Store, Adder and Locker over Redis, shared by every replica
// of the proxy. It works with any redis.UniversalClient: single node,
// Cluster and Sentinel (every operation touches one key, so no command
// crosses hash slots).
//
// Get, Set and Delete go through gocache's redis store; Take is GETDEL (Redis
// 6.2 or later), atomic across replicas; Add is SET NX PX; Lock a Lua SET PX
// if free, and unlock a Lua compare-and-delete. Values are binary-safe. TTLs
// are whole milliseconds (at least 1ms). Backend failures are returned
// wrapped ("cognitomcp: redis get: …"), never as ErrNotFound, and never with
// the value in the text. RedisStore never runs FLUSHALL or any other command
// on keys outside its prefix.
//
// Atomicity holds on one Redis primary. Replication is asynchronous, so a
// failover can lose an acknowledged write (a Take, a Lock); and a client
// that reads from replicas (ReadOnly, RouteByLatency, RouteRandomly) may Get
// a value that was just deleted. Point the store at primaries.
type RedisStore struct {
	c      redis.UniversalClient
	s      *redisstore.RedisStore
	prefix string
}

// NewRedisStore returns a RedisStore over c, which the caller keeps and
// closes. It panics if c is nil.
func NewRedisStore(c redis.UniversalClient, opts RedisStoreOptions) *RedisStore {
	if c == nil {
		panic("cognitomcp: NewRedisStore: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultStorePrefix
	}
	return &RedisStore{c: c, s: redisstore.NewRedis(c), prefix: opts.Prefix}
}

// AtomicTake reports true: Take is a single GETDEL.
func (r *RedisStore) AtomicTake() bool { return true }

// Get returns the value of key, or ErrNotFound when absent or expired.
func (r *RedisStore) Get(ctx context.Context, key string) ([]byte, error) {
	return gocacheGet(ctx, r.s, "redis", r.prefix+key, nil)
}

// Set stores v under key for ttl, which must be positive.
func (r *RedisStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := storeTTL(ttl); err != nil {
		return err
	}
	return gocacheSet(ctx, r.s, "redis", r.prefix+key, v, v, redisTTL(ttl))
}

// Delete removes key; an absent key is not an error.
func (r *RedisStore) Delete(ctx context.Context, key string) error {
	return gocacheDelete(ctx, r.s, "redis", r.prefix+key, nil)
}

// Take gets and deletes key with one GETDEL, or returns ErrNotFound. Of
// concurrent Takes of one key from any number of replicas, exactly one gets
// the value. A GETDEL whose reply is lost to a broken connection, and which
// go-redis then sends again (its default MaxRetries), answers ErrNotFound:
// the step of the sign-in that took it fails, and the user starts again.
func (r *RedisStore) Take(ctx context.Context, key string) ([]byte, error) {
	v, err := r.c.GetDel(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: redis take: %w", err)
	}
	return v, nil
}

// Add stores v under key for ttl with SET NX PX and reports whether it did.
func (r *RedisStore) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	if err := storeTTL(ttl); err != nil {
		return false, err
	}
	ok, err := r.c.SetNX(ctx, r.prefix+key, v, redisTTL(ttl)).Result()
	if err != nil {
		return false, storeRedact("cognitomcp: redis add", err, v)
	}
	return ok, nil
}

// redisUnlock deletes KEYS[1] only if it still holds this holder's token.
var redisUnlock = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// redisLock sets KEYS[1] to this holder's token for ARGV[2] ms if it is
// free, and answers 1 if the holder has the lock: also when the key already
// holds its token, so that a command go-redis sends again (its reply lost to
// a broken connection) does not find the lock taken by itself.
var redisLock = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then return 1 end
if v then return 0 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1`)

// Lock takes the lock named key for ttl with a random token (a Lua SET PX if
// free, idempotent when retried), or returns ErrLocked when another holder
// has it. unlock runs a Lua compare-and-delete, so it never releases a lock
// that expired and was taken by another holder.
func (r *RedisStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	if err := storeTTL(ttl); err != nil {
		return nil, err
	}
	key = r.prefix + key
	token := storeLockToken()
	ok, err := redisLock.Run(ctx, r.c, []string{key}, token, redisTTL(ttl).Milliseconds()).Int()
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: redis lock: %w", err)
	}
	if ok != 1 {
		return nil, ErrLocked
	}
	return func(ctx context.Context) error {
		if err := redisUnlock.Run(ctx, r.c, []string{key}, token).Err(); err != nil {
			return fmt.Errorf("cognitomcp: redis unlock: %w", err)
		}
		return nil
	}, nil
}

// redisTTL keeps go-redis from logging about, and rounding, sub-millisecond TTLs.
func redisTTL(ttl time.Duration) time.Duration { return max(ttl, time.Millisecond) }
