package cognitomcp

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet holds a pool's RSA signing keys by kid. It replaces go-oidc's
// RemoteKeySet, which refetches the JWKS on every miss (a bad signature under
// a known kid included) with no rate limit (go-oidc PR #482 was closed): here
// only an unknown kid refetches, at most once per interval, and concurrent
// refetches merge into one.
type keySet struct {
	url      string
	client   *http.Client
	now      func() time.Time
	interval time.Duration

	mu        sync.RWMutex
	keys      map[string]*rsa.PublicKey
	lastFetch time.Time     // when the last fetch started
	lastErr   error         // its outcome
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
}

// maxJWKSBytes bounds a JWKS response.
const maxJWKSBytes = 1 << 20

// fetchTimeout bounds one JWKS fetch, whatever the callers' contexts say.
const fetchTimeout = 10 * time.Second

func newKeySet(url string, client *http.Client, now func() time.Time, interval time.Duration) *keySet {
	return &keySet{url: url, client: client, now: now, interval: interval}
}

// load fetches the keys once, at construction.
func (ks *keySet) load(ctx context.Context) error {
	ks.mu.Lock()
	ks.lastFetch = ks.now()
	ks.mu.Unlock()
	keys, err := ks.fetch(ctx)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.lastErr = err
	if err == nil {
		ks.keys = keys
	}
	return err
}

// key returns the key for kid, refetching the JWKS when kid is unknown and
// the rate limit allows. It fails with ErrUnknownKey when the keys are fresh
// and lack kid, and with ErrKeySetUnavailable when they could not be fetched.
func (ks *keySet) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if kid == "" {
		return nil, fmt.Errorf("%w: no kid", ErrUnknownKey)
	}
	ks.mu.RLock()
	k := ks.keys[kid]
	ks.mu.RUnlock()
	if k != nil {
		return k, nil
	}
	return ks.refetchFor(ctx, kid)
}

func (ks *keySet) refetchFor(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	ks.mu.Lock()
	if k := ks.keys[kid]; k != nil {
		ks.mu.Unlock()
		return k, nil
	}
	wait := ks.inflight
	if wait == nil {
		if ks.now().Sub(ks.lastFetch) < ks.interval {
			err := ks.lastErr
			ks.mu.Unlock()
			return nil, missError(err)
		}
		wait = make(chan struct{})
		ks.inflight = wait
		ks.lastFetch = ks.now()
		ks.mu.Unlock()
		go ks.refresh(ctx, wait) // so that this caller, too, waits no longer than its ctx
	} else {
		ks.mu.Unlock()
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrKeySetUnavailable, ctx.Err())
	}
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if k := ks.keys[kid]; k != nil {
		return k, nil
	}
	return nil, missError(ks.lastErr)
}

// missError is the error for a kid that the current keys lack.
func missError(lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("%w: %w", ErrKeySetUnavailable, lastErr)
	}
	return ErrUnknownKey
}

// refresh runs one fetch, publishes its outcome and wakes the waiters. The
// fetch is detached from the caller's cancellation, since others wait on it,
// and bounded by fetchTimeout. A panic in the fetch (an HTTPClient's
// transport of one's own) is its error: it is published, the waiters wake,
// and later fetches can run.
func (ks *keySet) refresh(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	// err stays this unless the fetch returns (a Goexit in a transport of
	// one's own, a panic(nil)): no keys are published then.
	keys, err := map[string]*rsa.PublicKey(nil), errors.New("fetch JWKS: did not complete")
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fetch JWKS: panic: %v", r)
		}
		ks.mu.Lock()
		ks.lastErr = err
		if err == nil {
			ks.keys = keys
		}
		ks.inflight = nil
		ks.mu.Unlock()
		close(done)
	}()
	keys, err = ks.fetch(ctx)
}

// Bounds on the RSA keys a key set keeps. Cognito's keys are 2048-bit with
// e = 65537; a smaller exponent would also weaken the token cache, which
// relies on the last 710 bits of an RS256 signature not being recoverable
// from the rest (see tokenKey).
const (
	minRSABits     = 2048
	minRSAExponent = 65537
)

// fetch GETs the JWKS and keeps its RS256 signing keys.
func (ks *keySet) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("fetch JWKS: malformed JSON")
	}
	keys := make(map[string]*rsa.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || k.KeyID == "" || (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != "RS256") ||
			pub.N.BitLen() < minRSABits || pub.E < minRSAExponent {
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("fetch JWKS: no RS256 signing key of at least %d bits with e ≥ %d", minRSABits, minRSAExponent)
	}
	return keys, nil
}
