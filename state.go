package cognitomcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// What the proxy keeps in its Store (design §4). Every value is JSON sealed
// with AES-256-GCM under the store key as associated data, so a value copied
// to another key does not open and a store dump reads as noise. Lookup keys
// of codes, tokens and transactions are hashes of the secret, so a dump holds
// nothing a client could present.

// Store key prefixes, one per record kind.
const (
	kindClient  = "client"
	kindTxn     = "txn"
	kindCSRF    = "csrf"
	kindCode    = "code"
	kindUsed    = "codeused"
	kindGrant   = "grant"
	kindRevoked = "revoked"
	kindLock    = "lock"
)

// storeKey is the store key of a record: its kind and the hash of its id.
func storeKey(kind, id string) string { return kind + ":" + hashKey(kind, id) }

// clientRecord is a registered MCP client (RFC 7591), or one synthesised
// from a client ID metadata document or the upstream-client allow-list.
type clientRecord struct {
	ID                      string    `json:"id"`
	Name                    string    `json:"name,omitempty"`
	RedirectURIs            []string  `json:"redirect_uris"`
	Scopes                  []string  `json:"scopes,omitempty"`
	GrantTypes              []string  `json:"grant_types,omitempty"`
	ResponseTypes           []string  `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string    `json:"auth_method,omitempty"`
	ApplicationType         string    `json:"application_type,omitempty"`
	ClientURI               string    `json:"client_uri,omitempty"`
	LogoURI                 string    `json:"logo_uri,omitempty"`
	SoftwareID              string    `json:"software_id,omitempty"`
	SoftwareVersion         string    `json:"software_version,omitempty"`
	IssuedAt                time.Time `json:"issued_at"`
	// Touched is when the record was last stored: lookups re-store it (and
	// so extend its TTL) once it is a day old, once it is Used.
	Touched time.Time `json:"touched,omitzero"`
	// Used is set when a sign-in through the client first completes: until
	// then a registration lives unusedClientTTL, not ClientTTL, or
	// presentedClientTTL once Presented.
	Used bool `json:"used,omitempty"`
	// Presented is set when a valid authorization request first names the
	// client (clientPresented).
	Presented bool `json:"presented,omitempty"`
	// Metadata is true for a client ID metadata document (CIMD) client.
	Metadata bool `json:"metadata,omitempty"`
	// registered: the record is a registration, read from the store.
	registered bool
}

// used reports whether a sign-in has completed through the client: Used,
// or, in a record from before Used, Touched (set then at registration).
func (c *clientRecord) used() bool { return c.Used || !c.Touched.IsZero() }

// transaction is one authorization in progress, from /authorize to the
// Cognito callback. Its id is the upstream state.
type transaction struct {
	ClientID          string    `json:"client_id"`
	ClientName        string    `json:"client_name,omitempty"`
	RedirectURI       string    `json:"redirect_uri"`
	RedirectURIGiven  bool      `json:"redirect_uri_given,omitempty"` // must then be repeated at /token
	State             string    `json:"state,omitempty"`
	CodeChallenge     string    `json:"code_challenge"`
	Scopes            []string  `json:"scopes"`
	Resource          string    `json:"resource"`
	UpstreamVerifier  string    `json:"upstream_verifier"`
	UpstreamNonce     string    `json:"upstream_nonce"`
	CreatedAt         time.Time `json:"created_at"`
	PromptConsentSeen bool      `json:"prompt_consent,omitempty"`
	Approved          bool      `json:"approved,omitempty"` // the user approved it on the consent page
}

// codeRecord is an authorization code the proxy issued to an MCP client.
type codeRecord struct {
	GrantID          string    `json:"grant_id"`
	ClientID         string    `json:"client_id"`
	RedirectURI      string    `json:"redirect_uri"`
	RedirectURIGiven bool      `json:"redirect_uri_given,omitempty"`
	CodeChallenge    string    `json:"code_challenge"`
	Scopes           []string  `json:"scopes"`
	Resource         string    `json:"resource"`
	ExpiresAt        time.Time `json:"exp"`
}

// grantRecord is one sign-in: the Cognito tokens (sealed at rest with the
// rest of the record), the Cognito claims verified at the callback, and the
// MCP client it was granted to. Its refresh tokens form one family, named by
// generation: a refresh token is the grant id, a generation and an HMAC of
// both under the grant's Secret. Only the token of the current Generation
// refreshes; an older one is a replay (the same answer again within the
// grace period after its rotation, the whole family revoked after it). So
// no refresh token is stored at all, and every replay of any old generation
// is detected for the family's whole life.
type grantRecord struct {
	ID         string         `json:"id"`
	Secret     string         `json:"secret"`
	ClientID   string         `json:"client_id"`
	ClientName string         `json:"client_name,omitempty"`
	Scopes     []string       `json:"scopes"`
	Resource   string         `json:"resource"`
	User       userClaims     `json:"user"`
	Upstream   upstreamTokens `json:"upstream"`
	Generation int            `json:"gen"`
	// The last rotation: when, and the scopes of the access token it issued,
	// so a duplicate within the grace period gets the same tokens again.
	RotatedAt     time.Time `json:"rotated_at,omitzero"`
	RotatedScopes []string  `json:"rotated_scopes,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"exp"` // end of the family's life
}

// userClaims are the Cognito user's verified claims.
type userClaims struct {
	Subject  string          `json:"sub"`
	Username string          `json:"username,omitempty"`
	Groups   []string        `json:"groups,omitempty"`
	Email    string          `json:"email,omitempty"`
	Issuer   string          `json:"iss"`
	AppID    string          `json:"app_client"`
	Raw      json.RawMessage `json:"raw,omitempty"` // access-token claims merged with ID-token claims
}

// upstreamTokens is what the proxy keeps of Cognito's tokens for a grant:
// the refresh token, and when the access token expires. The access and ID
// tokens themselves are verified at the callback and dropped (their claims
// live on in userClaims), which keeps a grant near 2.5 KB.
type upstreamTokens struct {
	RefreshToken string    `json:"rt,omitempty"`
	Expiry       time.Time `json:"exp"` // of Cognito's access token
}

// storeError wraps a store failure; ErrNotFound passes through.
func storeError(op string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// put seals v and stores it under key for ttl.
func (p *Proxy) put(ctx context.Context, key string, v any, ttl time.Duration) error {
	b, err := p.seal(key, v)
	if err != nil {
		return err
	}
	return storeError("set", p.store.Set(ctx, key, b, ttl))
}

// seal encodes v as JSON, without escaping <, > and & (a record is never
// HTML: escaped, a registration's URIs full of & would be stored six times
// their size), and seals it for key.
func (p *Proxy) seal(key string, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("cognitomcp: encode %s: %w", key, err)
	}
	return p.keys.sealer.Seal(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), p.aad(key))
}

// aad is the associated data a record is sealed with: this server's issuer
// and the record's key. A record then opens only under its own key, and only
// at the server that wrote it: two servers sharing a store and a master
// secret do not read each other's clients and grants (a refresh token of
// one would otherwise mint access tokens for the other).
func (p *Proxy) aad(key string) []byte { return []byte(p.issuer + " " + key) }

// get loads and opens the record under key into v.
func (p *Proxy) get(ctx context.Context, key string, v any) error {
	b, err := p.store.Get(ctx, key)
	if err != nil {
		return storeError("get", err)
	}
	return p.open(key, b, v)
}

// take atomically loads, deletes and opens the record under key into v.
func (p *Proxy) take(ctx context.Context, key string, v any) error {
	b, err := p.store.Take(ctx, key)
	if err != nil {
		return storeError("take", err)
	}
	return p.open(key, b, v)
}

// open decrypts and decodes a stored value. A value that does not open
// (tampered, moved, or under a dropped key) counts as absent.
func (p *Proxy) open(key string, b []byte, v any) error {
	plain, err := p.keys.sealer.Open(b, p.aad(key))
	if err != nil {
		p.logger.Warn("cognitomcp: stored value does not open; treated as absent (do all replicas share the same KeyConfig and BaseURL?)", "kind", kindOf(key), "reason", err.Error())
		return ErrNotFound
	}
	if err := json.Unmarshal(plain, v); err != nil {
		p.logger.Warn("cognitomcp: stored value does not decode; treated as absent", "kind", kindOf(key))
		return ErrNotFound
	}
	return nil
}

func (p *Proxy) del(ctx context.Context, key string) error {
	return storeError("delete", p.store.Delete(ctx, key))
}

func kindOf(key string) string {
	kind, _, _ := strings.Cut(key, ":")
	return kind
}

// withLock runs fn holding the lock name, shared by every replica when the
// store is a Locker, and per process otherwise. It waits for a held lock up
// to wait, and no longer than ctx. Once the lock is held, fn's context is
// ctx's values without its cancellation (work begun under the lock is
// finished even if the client goes away), with a deadline lockTTL/6 before
// the lock could expire: no write of fn's lands after another replica could
// have taken the lock.
func (p *Proxy) withLock(ctx context.Context, name string, wait time.Duration, fn func(context.Context) error) error {
	held := func() error { return fmt.Errorf("%w: lock %s held too long", ErrUnavailable, kindOf(name)) }
	l, ok := p.store.(Locker)
	if !ok {
		sem := p.localLocks[hashIndex(name, len(p.localLocks))]
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-t.C:
			return held()
		}
		defer func() { <-sem }()
		return underLock(ctx, time.Now(), fn)
	}
	key := storeKey(kindLock, name)
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		asked := time.Now() // the lock's life starts later, when the store takes it
		unlock, err := l.Lock(ctx, key, lockTTL)
		if err == nil {
			defer func() { _ = unlock(context.WithoutCancel(ctx)) }()
			return underLock(ctx, asked, fn)
		}
		if !errors.Is(err, ErrLocked) {
			return storeError("lock", err)
		}
		if time.Now().After(deadline) {
			return held()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done(): // a request's deadline: a 503, not a 500
			t.Stop()
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// hashIndex spreads names over n stripes (FNV-1a).
func hashIndex(name string, n int) int {
	h := uint32(2166136261)
	for i := range len(name) {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return int(h % uint32(n))
}

// underLock runs fn with the context withLock gives it, for a lock taken
// at (or after) taken.
func underLock(ctx context.Context, taken time.Time, fn func(context.Context) error) error {
	work, cancel := context.WithDeadline(context.WithoutCancel(ctx), taken.Add(lockTTL-lockTTL/6))
	defer cancel()
	return fn(work)
}

// lockTTL bounds how long a crashed replica can hold a lock. The work under
// a grant's lock has its own bounds, well inside lockTTL-lockTTL/6 (50 s):
// a call to Cognito's token endpoint 15 s (upstreamTimeout), a JWKS fetch
// and a revocation 10 s each, and a few store operations.
var lockTTL = 60 * time.Second
