package cognitomcp_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
)

// TestVerifierCacheNeverOutlivesExp verifies a token with the cache on, then
// presents it again just before and just after exp+ClockSkew: the cached
// verification ends with the token.
func TestVerifierCacheNeverOutlivesExp(t *testing.T) {
	f := newVerifierFixture(t, 0)
	const skew = 30 * time.Second
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, ClockSkew: skew,
		HTTPClient: f.pool.HTTPClient(), Now: f.clock.Now, CacheSize: 100, CacheMaxBytes: 1 << 20,
	})
	require.NoError(t, err)
	tok := f.accessToken(nil) // lives one hour
	c, err := v.Verify(t.Context(), tok)
	require.NoError(t, err)
	again, err := v.Verify(t.Context(), tok)
	require.NoError(t, err)
	assert.Same(t, c, again, "served from the cache")

	f.clock.Advance(time.Hour + skew)
	_, err = v.Verify(t.Context(), tok)
	require.NoError(t, err, "exp+skew is still valid")
	f.clock.Advance(time.Second)
	_, err = v.Verify(t.Context(), tok)
	assert.ErrorIs(t, err, cognitomcp.ErrTokenExpired)
}

func TestVerifierCacheMaxBytesValidated(t *testing.T) {
	f := newVerifierFixture(t, 0)
	_, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, HTTPClient: f.pool.HTTPClient(), CacheMaxBytes: -1,
	})
	assert.ErrorContains(t, err, "VerifierConfig.CacheMaxBytes")
}

// TestProxyTokenCacheNeverOutlivesExp uses the shortest access tokens and the
// longest revocation bound: the cached verification still ends at exp (with
// the proxy's 5 s skew), not at the bound.
func TestProxyTokenCacheNeverOutlivesExp(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.AccessTokenTTL = time.Minute
		cfg.RevocationCheckInterval = 5 * time.Minute
	})
	access, _ := f.register(loopbackRedirect).login()
	resp, _ := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	f.clock.Advance(time.Minute + 5*time.Second)
	resp, _ = f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, "exp+skew is still valid")
	f.clock.Advance(time.Second)
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error_description="token expired"`)
}

// TestProxyTokenCacheEndsAtTheRevocationBound revokes a token in the store
// behind this replica's back (as another replica would): the replica serves
// its cached verification until RevocationCheckInterval has passed, and
// refuses the token from then on.
func TestProxyTokenCacheEndsAtTheRevocationBound(t *testing.T) {
	store := cognitomcp.NewMemoryStore()
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = store
		cfg.RevocationCheckInterval = 10 * time.Second
	})
	c := f.register(loopbackRedirect)
	access, _ := c.login()
	resp, _ := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Another replica, same store and keys, revokes the token.
	other, err := cognitomcp.NewProxy(t.Context(), f.cfg)
	require.NoError(t, err)
	form := url.Values{"client_id": {c.id}, "token": {access}, "token_type_hint": {"access_token"}}
	req := httptest.NewRequest(http.MethodPost, f.srv.URL+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	other.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	f.clock.Advance(10*time.Second - time.Millisecond)
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "within the bound the cached verification may serve")
	f.clock.Advance(time.Millisecond)
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "at the bound it is refused")
}

// TestRequireTokenCacheHitKeepsTheSyntaxCheck: RequireToken checks that a
// token is a b64token only when the verifier's cache misses, so a token with
// a line break in it (which Go's base64 decoders would skip) must get 400
// through the middleware, before and after the genuine token is cached; and
// the Verifier, called directly, refuses it too, with the genuine token
// cached or not, so that no two strings are one token and no line breaks
// can push the signature out of the end the cache hashes.
func TestRequireTokenCacheHitKeepsTheSyntaxCheck(t *testing.T) {
	f := newVerifierFixture(t, 0)
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, HTTPClient: f.pool.HTTPClient(), Now: f.clock.Now,
	})
	require.NoError(t, err)
	good := f.accessToken(nil)
	i := strings.LastIndexByte(good, '.') + 1
	odd := good[:i] + "\n" + good[i:]
	trailing := good + strings.Repeat("\n", 119)
	for _, raw := range []string{odd, trailing} {
		_, err = v.Verify(t.Context(), raw)
		require.ErrorIs(t, err, cognitomcp.ErrMalformedToken, "before %.20q…", raw)
	}
	_, err = v.Verify(t.Context(), good)
	require.NoError(t, err)
	for _, raw := range []string{odd, trailing} {
		_, err = v.Verify(t.Context(), raw)
		require.ErrorIs(t, err, cognitomcp.ErrMalformedToken, "after %.20q…", raw)
	}

	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v})(echoClaims)
	for _, tc := range []struct {
		token string
		want  int
	}{{odd, http.StatusBadRequest}, {good, http.StatusOK}, {odd, http.StatusBadRequest}} {
		req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		req.Header["Authorization"] = []string{"Bearer " + tc.token}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, tc.want, rec.Code, "%.60q", tc.token)
	}
}
