package cognitomcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// proxyTokenSkew tolerates small clock differences between replicas.
const proxyTokenSkew = 5 * time.Second

// verifyAccessToken verifies an access token of this proxy and returns the
// claims of the user and the MCP client behind it. A token verified before
// on this replica is served from the cache for at most
// RevocationCheckInterval (and never past its exp); then the store is asked
// again whether it was revoked and whether its grant still lives.
func (p *Proxy) verifyAccessToken(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > maxJWSLen {
		return nil, tokenError(fmt.Errorf("%w: %w", ErrInvalidSignature, errJWTTooLarge), "invalid token")
	}
	now := p.now()
	if c, ok := p.cachedToken(raw, now); ok {
		return c, nil
	}
	var tc proxyClaims
	if err := p.keys.signer.Verify(raw, &tc); err != nil {
		return nil, tokenError(fmt.Errorf("%w: %w", ErrInvalidSignature, err), "invalid token")
	}
	if err := p.checkProxyClaims(&tc, now); err != nil {
		return nil, err
	}
	if p.revokedHere.has(tc.GrantID, now) { // even if the store still has the grant
		return nil, tokenError(fmt.Errorf("%w: grant revoked", ErrTokenRevoked), "token revoked")
	}
	g, err := p.liveGrant(ctx, &tc, now)
	if err != nil {
		return nil, err
	}
	c := &Claims{
		Issuer: g.User.Issuer, Subject: g.User.Subject, Username: g.User.Username, ClientID: g.User.AppID,
		TokenUse: AccessToken, Groups: g.User.Groups, Scopes: scopesIn(strings.Fields(tc.Scope), g.Scopes), Email: g.User.Email,
		Expiry: time.Unix(tc.Expiry, 0), IssuedAt: time.Unix(tc.IssuedAt, 0),
		MCPClient: &ClientInfo{ID: g.ClientID, Name: g.ClientName}, raw: g.User.Raw, grantID: g.ID, tokenID: tc.ID,
	}
	until := earliest(c.Expiry.Add(proxyTokenSkew), now.Add(p.revocationCheck), g.Upstream.Expiry)
	p.tokens.put(raw, c, until, now)
	// A revocation of this token here since the store was read: it deleted
	// the cache entry before this put, or is seen now.
	if p.revokedTokensHere.has(tc.ID, now) {
		p.tokens.delete(raw)
		return nil, tokenError(ErrTokenRevoked, "token revoked")
	}
	return c, nil
}

// proxyTokens is the TokenVerifier of the proxy's own access tokens that
// the proxy's RequireToken uses: verifyAccessToken, and its cache as a
// tokenLookup.
type proxyTokens struct{ p *Proxy }

func (t proxyTokens) Verify(ctx context.Context, raw string) (*Claims, error) {
	return t.p.verifyAccessToken(ctx, raw)
}

func (t proxyTokens) cached(raw string) (*Claims, bool) {
	return t.p.cachedToken(raw, t.p.now())
}

// cachedToken returns the cached claims of a token verified before, unless
// this replica has since revoked the token's grant.
func (p *Proxy) cachedToken(raw string, now time.Time) (*Claims, bool) {
	c, ok := p.tokens.get(raw, now)
	if !ok || p.revokedHere.has(c.grantID, now) || p.revokedTokensHere.has(c.tokenID, now) {
		return nil, false
	}
	return c, true
}

// revokedGrants remembers ids this replica revoked, until a time. As
// revokedHere, grants: for one RevocationCheckInterval, long enough for
// every cache entry made before the revocation to expire, so those tokens
// stop here at once rather than within the interval; a grant the store
// could not delete, until it expires, so that its tokens stop at least
// here. As revokedTokensHere, access tokens' jti: as long as a check of the
// token that read "not revoked" before the revocation was stored can still
// be running (lockWait+lockTTL), or until the token expires when the store
// write failed. It holds at most maxRevokedHere ids; past that the interval
// bound still holds.
type revokedGrants struct{ ids recent[struct{}] }

// add remembers gid until until, and reports whether it could (false when
// full).
func (r *revokedGrants) add(gid string, until, now time.Time) bool {
	return r.ids.put(gid, struct{}{}, until, now)
}

func (r *revokedGrants) has(gid string, now time.Time) bool {
	_, ok := r.ids.get(gid, now)
	return ok
}

// maxRevokedHere bounds each recent: revoked grants, revoked access tokens,
// Cognito refresh tokens kept for their grant.
const maxRevokedHere = 10_000

// recent remembers values by id, each until a time of its own, at most
// maxRevokedHere of them; the expired ones go when a value is added. Safe
// for concurrent use; get takes no lock while it is empty.
type recent[V any] struct {
	n  atomic.Int32 // len(m), read without the lock on the hot path
	mu sync.RWMutex
	m  map[string]timed[V]
}

type timed[V any] struct {
	v     V
	until time.Time
}

// put remembers v for id until until, and reports whether it could (false
// when full and id is not known).
func (r *recent[V]) put(id string, v V, until, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]timed[V])
	}
	for k, x := range r.m {
		if !now.Before(x.until) {
			delete(r.m, k)
		}
	}
	_, known := r.m[id]
	ok := known || len(r.m) < maxRevokedHere
	if ok {
		r.m[id] = timed[V]{v, until}
	}
	r.n.Store(int32(len(r.m)))
	return ok
}

// get returns the value remembered for id, if it has not expired.
func (r *recent[V]) get(id string, now time.Time) (V, bool) {
	var zero V
	if id == "" || r.n.Load() == 0 {
		return zero, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	x, ok := r.m[id]
	if !ok || !now.Before(x.until) {
		return zero, false
	}
	return x.v, true
}

// take is get, and forgets id.
func (r *recent[V]) take(id string, now time.Time) (V, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.m[id]
	delete(r.m, id)
	r.n.Store(int32(len(r.m)))
	if !ok || !now.Before(x.until) {
		var zero V
		return zero, false
	}
	return x.v, true
}

// checkProxyClaims checks iss, the exact audience (RFC 8707: a token for
// another resource is refused), exp and iat.
func (p *Proxy) checkProxyClaims(tc *proxyClaims, now time.Time) error {
	switch {
	case tc.Issuer != p.issuer:
		return tokenError(fmt.Errorf("%w: %.80q", ErrWrongIssuer, tc.Issuer), "invalid token")
	case tc.Audience != p.resource:
		return tokenError(fmt.Errorf("%w: %.80q", ErrWrongAudience, tc.Audience), "invalid token")
	case tc.Expiry == 0 || tc.ID == "" || tc.GrantID == "":
		return tokenError(fmt.Errorf("%w: missing exp, jti or gid", ErrMalformedToken), "invalid token")
	case now.After(time.Unix(tc.Expiry, 0).Add(proxyTokenSkew)):
		return tokenError(ErrTokenExpired, "token expired")
	case time.Unix(tc.IssuedAt, 0).After(now.Add(proxyTokenSkew)):
		return tokenError(ErrTokenNotYetValid, "token not yet valid")
	}
	return nil
}

// liveGrant checks the token was not revoked and loads its grant,
// refreshing Cognito's tokens first when they have expired.
func (p *Proxy) liveGrant(ctx context.Context, tc *proxyClaims, now time.Time) (*grantRecord, error) {
	if err := p.checkNotRevoked(ctx, tc.ID); err != nil {
		return nil, err
	}
	var g grantRecord
	switch err := p.get(ctx, storeKey(kindGrant, tc.GrantID), &g); {
	case errors.Is(err, ErrNotFound):
		return nil, tokenError(fmt.Errorf("%w: grant revoked or expired", ErrTokenRevoked), "token revoked")
	case err != nil:
		return nil, err
	}
	if g.ClientID != tc.ClientID || g.User.Subject != tc.Subject {
		return nil, tokenError(fmt.Errorf("%w: token does not match its grant", ErrInvalidToken), "invalid token")
	}
	if !now.Before(g.ExpiresAt) { // the sign-in ended; a store's expiry may lag
		return nil, tokenError(fmt.Errorf("%w: grant expired", ErrTokenRevoked), "token revoked")
	}
	if now.Before(g.Upstream.Expiry.Add(-proxyTokenSkew)) {
		return &g, nil
	}
	fresh, err := p.refreshForRequest(ctx, tc.GrantID, now)
	if err != nil {
		return nil, err
	}
	// Waiting for the grant's lock, and for Cognito, can take seconds: a
	// revocation of the token meanwhile, on another replica, counts too.
	if err := p.checkNotRevoked(ctx, tc.ID); err != nil {
		return nil, err
	}
	return fresh, nil
}

// checkNotRevoked checks that no revocation of the access token jti is
// stored. Any value under its revocation key revokes it, read without
// opening: one sealed under a key this replica does not have yet (an
// encryption key rolled out elsewhere first) must not read as absent.
func (p *Proxy) checkNotRevoked(ctx context.Context, jti string) error {
	switch _, err := p.store.Get(ctx, storeKey(kindRevoked, jti)); {
	case err == nil:
		return tokenError(ErrTokenRevoked, "token revoked")
	case !errors.Is(err, ErrNotFound):
		return storeError("get", err)
	}
	return nil
}

// refreshForRequest refreshes an expired Cognito token behind a request,
// once per grant across replicas: whoever waited for the lock finds the
// grant already refreshed.
func (p *Proxy) refreshForRequest(ctx context.Context, gid string, now time.Time) (*grantRecord, error) {
	var g grantRecord
	var e *Error
	err := p.withGrantLock(ctx, gid, func(ctx context.Context) error {
		if err := p.get(ctx, storeKey(kindGrant, gid), &g); err != nil {
			if errors.Is(err, ErrNotFound) {
				e = tokenError(fmt.Errorf("%w: grant revoked", ErrTokenRevoked), "token revoked")
				return nil
			}
			return err
		}
		if now.Before(g.Upstream.Expiry.Add(-proxyTokenSkew)) {
			return nil
		}
		stored := g.Upstream.RefreshToken
		if e = p.refreshUpstreamIfDue(ctx, &g, now); e != nil {
			return nil
		}
		return p.putGrant(ctx, &g, stored, now)
	})
	switch {
	case err != nil:
		return nil, err
	case e != nil && e.Code == CodeInvalidGrant:
		return nil, tokenError(fmt.Errorf("%w: %w", ErrTokenRevoked, e.Err), "token revoked")
	case e != nil && e.Status == http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, e.Err)
	case e != nil:
		return nil, e
	}
	return &g, nil
}

// earliest returns the earliest of ts.
func earliest(ts ...time.Time) time.Time {
	e := ts[0]
	for _, t := range ts[1:] {
		if t.Before(e) {
			e = t
		}
	}
	return e
}
