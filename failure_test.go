package cognitomcp_test

// Failure of the parts around the proxy: the fake Cognito slow, answering
// 5xx or malformed JSON, its JWKS unreachable, its keys rotated mid-flow, and
// a store write failing half-way through a rotation. Each ends in a clear
// error (server_error to the client's redirect URI at the callback, 503
// temporarily_unavailable with Retry-After at /token and the MCP endpoint,
// an error from NewProxy at start-up), then recovers by itself, with nothing
// acknowledged lost: a refresh token that got a 503 still works afterwards.
// The real Redis stopped and restarted mid-flow is TestRedisOutageProxy
// (store_proxy_test.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// failureTransport makes requests whose path ends with a given suffix fail
// as if Cognito's host were unreachable, while set.
type failureTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	down map[string]bool
}

func (f *failureTransport) set(suffix string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down == nil {
		f.down = map[string]bool{}
	}
	f.down[suffix] = down
}

func (f *failureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	var down bool
	for suffix, on := range f.down {
		down = down || on && strings.HasSuffix(r.URL.Path, suffix)
	}
	f.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	}
	return f.base.RoundTrip(r)
}

const jwksPath = "/.well-known/jwks.json"

// failureRefresh is a refresh of rt by c: status and body.
func failureRefresh(c *oauthClient, rt string) (int, map[string]any) {
	return c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// assertUpstreamDown: a 503 temporarily_unavailable with Retry-After.
func assertUpstreamDown(t *testing.T, status int, out map[string]any) {
	t.Helper()
	assert.Equal(t, http.StatusServiceUnavailable, status, out)
	assert.Equal(t, "temporarily_unavailable", out["error"])
}

// assertCallbackFailed: the sign-in ended at the client's redirect URI with
// server_error and no code.
func assertCallbackFailed(t *testing.T, q url.Values) {
	t.Helper()
	assert.Equal(t, "server_error", q.Get("error"), q)
	assert.Empty(t, q.Get("code"), "no code without verified Cognito tokens")
	assert.Equal(t, "client-state", q.Get("state"))
}

// failureScenario drives a sign-in with Cognito misbehaving in the way
// inject sets up: the callback fails, a due refresh is tolerated while
// Cognito's access token lives, then answers 503 without consuming the
// refresh token, an MCP request behind which Cognito must refresh gets 503
// with Retry-After; after clear, everything recovers with the same tokens.
func failureScenario(t *testing.T, mod func(*cognitomcp.ProxyConfig), inject, clear func(f *proxyFixture), bound time.Duration) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.AccessTokenTTL = 3 * time.Hour // outlives Cognito's 1 h token
		if mod != nil {
			mod(cfg)
		}
	})
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	inject(f)

	start := time.Now()
	assertCallbackFailed(t, c.signIn(nil))
	assert.Less(t, time.Since(start), bound, "the callback waited too long for Cognito")

	// Cognito's access token has 4 minutes left: a refresh is due, fails,
	// and is tolerated.
	f.clock.Advance(56 * time.Minute)
	status, out := failureRefresh(c, rt)
	require.Equal(t, http.StatusOK, status, out)
	rt = out["refresh_token"].(string)
	assert.Contains(t, f.logs.String(), "Cognito refresh failed; its access token is still valid")

	// Cognito's access token expired: no tokens without Cognito.
	f.clock.Advance(5 * time.Minute)
	start = time.Now()
	status, out = failureRefresh(c, rt)
	assertUpstreamDown(t, status, out)
	resp, body := f.mcp(access)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	assert.Less(t, time.Since(start), 2*bound)

	clear(f)
	status, out = failureRefresh(c, rt)
	assert.Equal(t, http.StatusOK, status, "the refresh token that got a 503 still works: %v", out)
	resp, body = f.mcp(access)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	_, rt2 := c.login()
	assert.NotEmpty(t, rt2, "new sign-ins work again")
	assert.NotContains(t, f.logs.String(), "upstream-secret-value")
}

func TestFailureCognitoSlow(t *testing.T) {
	// The bound is the proxy's HTTP client timeout (default 10 s;
	// configurable through ProxyConfig.HTTPClient).
	failureScenario(t,
		func(cfg *cognitomcp.ProxyConfig) {
			cfg.HTTPClient = &http.Client{Transport: cfg.HTTPClient.Transport, Timeout: 300 * time.Millisecond}
		},
		func(f *proxyFixture) {
			f.pool.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Delay: 10 * time.Second})
		},
		func(f *proxyFixture) { f.pool.ClearFaults() },
		3*time.Second)
}

func TestFailureCognito5xx(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			failureScenario(t, nil,
				func(f *proxyFixture) {
					f.pool.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Status: status})
				},
				func(f *proxyFixture) { f.pool.ClearFaults() },
				3*time.Second)
		})
	}
}

func TestFailureCognitoMalformedJSON(t *testing.T) {
	failureScenario(t, nil,
		func(f *proxyFixture) {
			f.pool.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{MalformedJSON: true})
		},
		func(f *proxyFixture) { f.pool.ClearFaults() },
		3*time.Second)
}

func TestFailureCognitoUnreachable(t *testing.T) {
	tr := &failureTransport{}
	failureScenario(t,
		func(cfg *cognitomcp.ProxyConfig) {
			tr.base = cfg.HTTPClient.Transport
			cfg.HTTPClient = &http.Client{Transport: tr}
		},
		func(*proxyFixture) { tr.set("/oauth2/token", true) },
		func(*proxyFixture) { tr.set("/oauth2/token", false) },
		3*time.Second)
}

// deadlineTransport records, for requests to Cognito's token endpoint, how
// far off their context's deadline was.
type deadlineTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	left []time.Duration // -1 for no deadline
}

func (d *deadlineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		left := time.Duration(-1)
		if dl, ok := r.Context().Deadline(); ok {
			left = time.Until(dl)
		}
		d.mu.Lock()
		d.left = append(d.left, left)
		d.mu.Unlock()
	}
	return d.base.RoundTrip(r)
}

// TestFailureCognitoBoundedWithoutClientTimeout: a ProxyConfig.HTTPClient
// with no Timeout still puts a deadline (15 s) on the code exchange and on
// refreshes at Cognito, so a hung Cognito cannot hold a callback, a /token
// request or a grant's lock for ever.
func TestFailureCognitoBoundedWithoutClientTimeout(t *testing.T) {
	tr := &deadlineTransport{}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		tr.base = cfg.HTTPClient.Transport
		cfg.HTTPClient = &http.Client{Transport: tr} // no Timeout
	})
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	f.clock.Advance(61 * time.Minute)
	status, out := failureRefresh(c, rt)
	require.Equal(t, http.StatusOK, status, out)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Len(t, tr.left, 2, "the exchange and the refresh")
	for _, left := range tr.left {
		assert.Greater(t, left, time.Duration(0), "a deadline")
		assert.LessOrEqual(t, left, 15*time.Second)
	}
}

// TestFailureCognitoRevocationDown: /revoke still ends the sign-in when
// Cognito's revocation endpoint fails; the failure is logged.
func TestFailureCognitoRevocationDown(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	f.pool.InjectFault(cognitotest.EndpointRevoke, cognitotest.Fault{Status: http.StatusInternalServerError})
	resp, err := http.PostForm(f.srv.URL+"/revoke", url.Values{"client_id": {c.id}, "token": {rt}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	status, out := failureRefresh(c, rt)
	assert.Equal(t, http.StatusUnauthorized, status, out)
	assert.Equal(t, "invalid_grant", out["error"])
	mcp, _ := f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, mcp.StatusCode, "the grant is gone, and Cognito's refresh token with it")
	assert.Contains(t, f.logs.String(), "revoking Cognito's refresh token failed")
}

// TestFailureStartup: discovery or the JWKS failing at start-up makes
// NewProxy and NewVerifier fail closed, with an error that says so.
func TestFailureStartup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(pool *cognitotest.UserPool, tr *failureTransport)
	}{
		{"discovery 5xx", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointDiscovery, cognitotest.Fault{Status: http.StatusInternalServerError})
		}},
		{"discovery malformed JSON", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointDiscovery, cognitotest.Fault{MalformedJSON: true})
		}},
		{"JWKS 5xx", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: http.StatusBadGateway})
		}},
		{"JWKS malformed JSON", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{MalformedJSON: true})
		}},
		{"JWKS unreachable", func(_ *cognitotest.UserPool, tr *failureTransport) { tr.set(jwksPath, true) }},
		{"JWKS slow", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Delay: 10 * time.Second})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := cognitotest.NewUserPool(cognitotest.Options{})
			t.Cleanup(pool.Close)
			app := pool.AddClient(cognitotest.Client{Secret: "s", CallbackURLs: []string{"http://127.0.0.1:1/auth/callback"}})
			tr := &failureTransport{base: pool.Transport()}
			tc.inject(pool, tr)
			client := &http.Client{Transport: tr, Timeout: 300 * time.Millisecond}
			start := time.Now()
			_, err := cognitomcp.NewProxy(t.Context(), cognitomcp.ProxyConfig{IssuerURL: pool.Issuer, ClientID: app.ID,
				ClientSecret: "s", BaseURL: "http://127.0.0.1:1", Keys: cognitomcp.KeyConfig{MasterSecret: testMasterSecret},
				HTTPClient: client})
			require.Error(t, err)
			assert.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
			_, err = cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{IssuerURL: pool.Issuer,
				ClientIDs: []string{app.ID}, HTTPClient: client})
			assert.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
			assert.Less(t, time.Since(start), 3*time.Second, "bounded by the client's timeout")
		})
	}
}

// TestFailureJWKSDuringRotation: Cognito rotates its keys while its JWKS is
// unreachable or broken. The resource server answers 503 (never a pass, never
// a 401 that would make clients drop good tokens) for the new kid and keeps
// verifying the old one; the proxy's callback fails with server_error. Once
// the JWKS is back, the next refetch window recovers both.
func TestFailureJWKSDuringRotation(t *testing.T) {
	for _, tc := range []struct {
		name          string
		inject, clear func(pool *cognitotest.UserPool, tr *failureTransport)
	}{
		{"unreachable", func(_ *cognitotest.UserPool, tr *failureTransport) { tr.set(jwksPath, true) },
			func(_ *cognitotest.UserPool, tr *failureTransport) { tr.set(jwksPath, false) }},
		{"5xx", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: http.StatusInternalServerError})
		}, func(pool *cognitotest.UserPool, _ *failureTransport) { pool.ClearFaults() }},
		{"malformed JSON", func(pool *cognitotest.UserPool, _ *failureTransport) {
			pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{MalformedJSON: true})
		}, func(pool *cognitotest.UserPool, _ *failureTransport) { pool.ClearFaults() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &failureTransport{}
			f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
				tr.base = cfg.HTTPClient.Transport
				cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 2 * time.Second}
			})
			v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{IssuerURL: f.pool.Issuer,
				ClientIDs: []string{f.app.ID}, HTTPClient: &http.Client{Transport: tr}, Now: f.clock.Now, CacheSize: -1})
			require.NoError(t, err)
			rs := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v})(echoClaims)
			present := func(tok string) (int, string) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/rs", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				rs.ServeHTTP(rec, req)
				return rec.Code, rec.Header().Get("Retry-After")
			}
			c := f.register(loopbackRedirect)
			oldToken := f.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.app.ID})

			f.pool.RotateKeys()
			tc.inject(f.pool, tr)
			f.clock.Advance(2 * time.Minute) // past the start-up fetch's window
			newToken := f.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.app.ID})
			status, retry := present(newToken)
			assert.Equal(t, http.StatusServiceUnavailable, status, "a new kid with the JWKS down")
			assert.Equal(t, "5", retry)
			status, _ = present(oldToken)
			assert.Equal(t, http.StatusOK, status, "known keys keep working")
			q := c.signIn(nil)
			assert.Equal(t, "temporarily_unavailable", q.Get("error"), "the client may try again: %v", q)
			assert.Empty(t, q.Get("code"))
			assert.NotContains(t, f.logs.String(), "failed verification", "the keys were out of reach, not the configuration wrong")

			tc.clear(f.pool, tr)
			f.clock.Advance(2 * time.Minute) // the next refetch window
			status, _ = present(newToken)
			assert.Equal(t, http.StatusOK, status, "recovered")
			_, rt := c.login()
			assert.NotEmpty(t, rt, "sign-ins work again")
		})
	}
}

// TestFailureKeysRotatedMidFlow: Cognito rotates its keys between a user's
// consent and the callback, then drops the old ones. The sign-in in flight
// completes (one JWKS refetch), sign-ins from before keep working (the proxy
// verified Cognito's tokens once, at their callback), and a later refresh at
// Cognito verifies under the new keys. A rotation within the refetch window
// of the last fetch fails the callback with server_error until the window
// has passed: the price of rate-limiting refetches.
func TestFailureKeysRotatedMidFlow(t *testing.T) {
	t.Run("rotation between consent and callback", func(t *testing.T) {
		f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.AccessTokenTTL = 3 * time.Hour })
		c := f.register(loopbackRedirect)
		access1, rt1 := c.login()
		f.clock.Advance(2 * time.Minute)

		callback := inFlight(t, c).String()
		f.pool.RotateKeys()
		jwks := f.pool.Requests(cognitotest.EndpointJWKS)
		resp, body := c.get(callback)
		require.Equal(t, http.StatusFound, resp.StatusCode, body)
		code := location(t, resp).Query().Get("code")
		require.NotEmpty(t, code, "the sign-in in flight completes under the new keys")
		assert.Equal(t, jwks+1, f.pool.Requests(cognitotest.EndpointJWKS), "one refetch for the new kid")
		access2, rt2 := c.redeem(code)

		f.pool.DropOldKeys()
		for _, tok := range []string{access1, access2} {
			resp, out := f.mcp(tok)
			assert.Equal(t, http.StatusOK, resp.StatusCode, out)
		}
		status, out := failureRefresh(c, rt1)
		assert.Equal(t, http.StatusOK, status, out)

		f.clock.Advance(61 * time.Minute) // Cognito's tokens expire: a refresh at Cognito
		grants := f.pool.TokenGrants("refresh_token")
		status, out = failureRefresh(c, rt2)
		require.Equal(t, http.StatusOK, status, out)
		assert.Equal(t, grants+1, f.pool.TokenGrants("refresh_token"))
		resp, claims := f.mcp(out["access_token"].(string))
		assert.Equal(t, http.StatusOK, resp.StatusCode, claims)
	})
	t.Run("rotation right after a fetch", func(t *testing.T) {
		f := newProxyFixture(t, nil)
		c := f.register(loopbackRedirect)
		f.pool.RotateKeys() // the proxy fetched the JWKS a moment ago, at start-up
		assertCallbackFailed(t, c.signIn(nil))
		f.clock.Advance(61 * time.Second)
		_, rt := c.login()
		assert.NotEmpty(t, rt, "the next window refetches the keys")
	})
}

// failureStore is a MemoryStore whose writes (sets and deletes) of one
// record kind fail while set, as a store can fail half-way through a
// request.
type failureStore struct {
	*cognitomcp.MemoryStore
	mu   sync.Mutex
	kind string
}

func (s *failureStore) failWrites(kind string) {
	s.mu.Lock()
	s.kind = kind
	s.mu.Unlock()
}

func (s *failureStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.mu.Lock()
	kind := s.kind
	s.mu.Unlock()
	if kind != "" && strings.HasPrefix(key, kind+":") {
		return errors.New("store write failed")
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func (s *failureStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	kind := s.kind
	s.mu.Unlock()
	if kind != "" && strings.HasPrefix(key, kind+":") {
		return errors.New("store delete failed")
	}
	return s.MemoryStore.Delete(ctx, key)
}

// TestFailureStoreWriteDuringRotation: the write of a rotated grant fails.
// The refresh answers 503 and nothing moved: the refresh token presented
// still works once the store does, and no replay is detected. A code whose
// grant could not be written answers 503 too; it was taken (single use), so
// the client starts a new sign-in, and nothing was issued from it.
func TestFailureStoreWriteDuringRotation(t *testing.T) {
	store := &failureStore{MemoryStore: cognitomcp.NewMemoryStore()}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	code := c.signIn(nil).Get("code")

	store.failWrites("grant")
	status, out := failureRefresh(c, rt)
	assertUpstreamDown(t, status, out)
	status, out = c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {c.verifier},
		"redirect_uri": {c.redirect}})
	assertUpstreamDown(t, status, out)

	store.failWrites("")
	status, out = failureRefresh(c, rt)
	require.Equal(t, http.StatusOK, status, "the refresh token that got a 503: %v", out)
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "no family revoked")
	status, out = c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {c.verifier},
		"redirect_uri": {c.redirect}})
	assert.Equal(t, http.StatusUnauthorized, status, "the code was taken; the client signs in again: %v", out)
	assert.NotContains(t, f.logs.String(), "authorization code replayed", "the code issued nothing: no replay to revoke")
	assert.Equal(t, "invalid_grant", out["error"])
}

// TestFailureStoreWriteAfterCognitoRotated: with refresh-token rotation at
// Cognito, a refresh whose call to Cognito succeeded but whose grant write
// failed answers 503, and the same refresh token works once the store does:
// Cognito's new refresh token (it no longer takes the stored one) stayed
// with the replica for the grant's next refresh.
func TestFailureStoreWriteAfterCognitoRotated(t *testing.T) {
	store := &failureStore{MemoryStore: cognitomcp.NewMemoryStore()}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	f.pool.SetRefreshTokenRotation(true)
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	f.clock.Advance(time.Hour + time.Minute) // Cognito's access token expired: the refresh goes to Cognito

	store.failWrites("grant")
	status, out := failureRefresh(c, rt)
	assertUpstreamDown(t, status, out)
	assert.Equal(t, 1, f.pool.TokenGrants("refresh_token"), "Cognito refreshed, and rotated")

	store.failWrites("")
	status, out = failureRefresh(c, rt)
	require.Equal(t, http.StatusOK, status, "the refresh token that got a 503 still works: %v", out["error"])
	assert.NotContains(t, f.logs.String(), "Cognito refused the refresh token", "the sign-in goes on")
	resp, _ := f.mcp(out["access_token"].(string))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	f.clock.Advance(time.Hour + time.Minute) // and Cognito takes what is stored now
	status, out = failureRefresh(c, out["refresh_token"].(string))
	assert.Equal(t, http.StatusOK, status, "%v", out["error"])
}

// TestFailureRotationRetriedOnAnotherReplica: with Cognito's rotation
// grace period (RetryGracePeriodSeconds, here 60 s), a refresh whose grant
// write failed after Cognito rotated its refresh token can be retried on
// another replica, which holds only the old one: Cognito still takes it
// within the grace. Without a grace the retry there ends the sign-in (the
// replica that got the new token keeps it for its own retries only).
func TestFailureRotationRetriedOnAnotherReplica(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("grace %v", grace), func(t *testing.T) {
			store := &failureStore{MemoryStore: cognitomcp.NewMemoryStore()}
			f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
			f.pool.SetRefreshTokenRotation(true)
			f.pool.SetRefreshTokenRotationGrace(grace)
			other, err := cognitomcp.NewProxy(t.Context(), f.cfg)
			require.NoError(t, err)
			c := f.register(loopbackRedirect)
			_, rt := c.login()
			f.clock.Advance(time.Hour + time.Minute) // the refresh goes to Cognito

			store.failWrites("grant")
			status, out := failureRefresh(c, rt)
			assertUpstreamDown(t, status, out)
			store.failWrites("")

			w := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"},
				"refresh_token": {rt}, "client_id": {c.id}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			other.Handler(mcpEcho).ServeHTTP(w, req)
			if grace > 0 {
				assert.Equal(t, http.StatusOK, w.Code, "within Cognito's grace the old refresh token still works")
			} else {
				assert.Equal(t, http.StatusUnauthorized, w.Code, "Cognito no longer takes the old refresh token")
			}
		})
	}
}

// TestFailureStoreLostARotation: a refresh token of a generation newer than
// the stored grant (the store acknowledged the rotation, then lost it in a
// failover) can only mean the store went back: it refreshes, as no replay,
// and the generation before it is then the replay.
func TestFailureStoreLostARotation(t *testing.T) {
	store := cognitomcp.NewMemoryStore()
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	key := strings.TrimPrefix(redisKey("grant", grantID(t, rt)), "cognitomcp:")
	before, err := store.Get(t.Context(), key)
	require.NoError(t, err)
	status, out := failureRefresh(c, rt)
	require.Equal(t, http.StatusOK, status, out["error"])
	next := out["refresh_token"].(string)
	require.NoError(t, store.Set(t.Context(), key, before, time.Hour)) // the failover lost the rotation

	f.clock.Advance(time.Minute) // past the grace period
	status, out = failureRefresh(c, next)
	require.Equal(t, http.StatusOK, status, "the client's generation is the current one: %v", out["error"])
	assert.NotContains(t, f.logs.String(), "refresh token replayed", "a lost write is no replay")
	assert.Contains(t, f.logs.String(), "the store lost a refresh token rotation")
	resp, _ := f.mcp(out["access_token"].(string))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	status, _ = failureRefresh(c, rt)
	assert.Equal(t, http.StatusUnauthorized, status, "an older generation is a replay")
}

// lockFailingStore is a MemoryStore whose Lock fails while failing is set.
type lockFailingStore struct {
	*cognitomcp.MemoryStore
	failing atomic.Bool
}

func (s *lockFailingStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	if s.failing.Load() {
		return nil, errors.New("store lock failed")
	}
	return s.MemoryStore.Lock(ctx, key, ttl)
}

// TestFailureLockAtRedemptionKeepsTheCode: a code redemption that cannot
// have its grant's lock answers 503 before it takes the code, so the
// client's retry redeems it.
func TestFailureLockAtRedemptionKeepsTheCode(t *testing.T) {
	store := &lockFailingStore{MemoryStore: cognitomcp.NewMemoryStore()}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	code := c.signIn(nil).Get("code")
	form := func() url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
	}
	store.failing.Store(true)
	status, out := c.token(form())
	assertUpstreamDown(t, status, out)
	store.failing.Store(false)
	status, out = c.token(form())
	assert.Equal(t, http.StatusOK, status, "the retry redeems the code: %v", out["error"])
}

// clientClockStore keeps client records for their TTL by the test clock
// (a MemoryStore keeps real time), and fails their writes while failClient
// is set.
type clientClockStore struct {
	*cognitomcp.MemoryStore
	now        func() time.Time
	mu         sync.Mutex
	exp        map[string]time.Time
	failClient atomic.Bool
}

func (s *clientClockStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, "client:") {
		if s.failClient.Load() {
			return errors.New("store blip")
		}
		s.mu.Lock()
		s.exp[key] = s.now().Add(ttl)
		s.mu.Unlock()
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func (s *clientClockStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	e, ok := s.exp[key]
	s.mu.Unlock()
	if ok && !s.now().Before(e) {
		return nil, cognitomcp.ErrNotFound
	}
	return s.MemoryStore.Get(ctx, key)
}

// TestFailureClientMarkedUsedByARefresh: the write that marks a client
// used at its first sign-in failed; a later refresh marks it, so the client
// outlives the day an unused registration lives, through the sign-in.
func TestFailureClientMarkedUsedByARefresh(t *testing.T) {
	store := &clientClockStore{MemoryStore: cognitomcp.NewMemoryStore(), exp: map[string]time.Time{}}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	store.now = f.clock.Now
	c := f.register(loopbackRedirect)
	store.failClient.Store(true)
	_, refresh := c.login()
	store.failClient.Store(false)
	for i := range 3 {
		f.clock.Advance(12 * time.Hour)
		status, out := failureRefresh(c, refresh)
		require.Equal(t, http.StatusOK, status, "refresh %d, %v after the sign-in: %v", i, time.Duration(i+1)*12*time.Hour, out["error"])
		refresh = out["refresh_token"].(string)
	}
}

// TestFailureStoreDeleteAtRevoke: a refresh token's revocation that the
// store could not record answers 503 temporarily_unavailable with
// Retry-After (RFC 7009 §2.2.1), not 200: the client tries again, and the
// second time the family is gone. Meanwhile this replica refuses the
// family's tokens, past the cache's revocation interval too, although the
// store still has the grant.
func TestFailureStoreDeleteAtRevoke(t *testing.T) {
	store := &failureStore{MemoryStore: cognitomcp.NewMemoryStore()}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	resp, _ := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	store.failWrites("grant")
	status, header := c.revoke(url.Values{"token": {rt}})
	assert.Equal(t, http.StatusServiceUnavailable, status, "a revocation not recorded must not answer 200")
	assert.Equal(t, "5", header.Get("Retry-After"))
	f.clock.Advance(time.Minute) // past RevocationCheckInterval: no cache entry is left
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the access token of a grant revoked here")
	status, out := failureRefresh(c, rt)
	assertUpstreamDown(t, status, out) // the refresh tries the deletion again: the client will come back

	store.failWrites("")
	status, out = failureRefresh(c, rt)
	assert.Equal(t, http.StatusUnauthorized, status, "the refresh token of a grant revoked here: %v", out)
	_, err := store.Get(t.Context(), strings.TrimPrefix(redisKey("grant", grantID(t, rt)), "cognitomcp:"))
	assert.ErrorIs(t, err, cognitomcp.ErrNotFound, "the refresh deleted the grant, for the other replicas")
	status, _ = c.revoke(url.Values{"token": {rt}})
	require.Equal(t, http.StatusOK, status)
	status, out = failureRefresh(c, rt)
	assert.Equal(t, http.StatusUnauthorized, status, "the family is revoked: %v", out)
	assert.Equal(t, "invalid_grant", out["error"])
	assert.Contains(t, f.logs.String(), "cognitomcp: revoke grant", "the operator is told")
}

// cancelAfterToken is a transport to Cognito that, once armed, lets
// Cognito's token endpoint answer, reads the answer whole, and then cancels
// the context of the client's request: a client that goes away at that
// moment.
type cancelAfterToken struct {
	base   http.RoundTripper
	cancel atomic.Pointer[context.CancelFunc]
}

func (c *cancelAfterToken) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		return resp, err
	}
	cancel := c.cancel.Swap(nil)
	if cancel == nil {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	(*cancel)()
	return resp, nil
}

// TestFailureClientGoneDuringCognitoRefresh: with refresh token rotation at
// Cognito, a client that goes away while Cognito answers a refresh does not
// lose the rotated refresh token (Cognito no longer takes the old one): the
// grant is stored all the same, the client's retry gets the same answer,
// and the next refresh at Cognito works.
func TestFailureClientGoneDuringCognitoRefresh(t *testing.T) {
	tr := &cancelAfterToken{}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		tr.base = cfg.HTTPClient.Transport
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: cfg.HTTPClient.Timeout}
	})
	f.pool.SetRefreshTokenRotation(true)
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	f.clock.Advance(time.Hour + time.Minute) // Cognito's access token expired: the refresh goes upstream

	ctx, cancel := context.WithCancel(t.Context())
	tr.cancel.Store(&cancel)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	f.proxy.ServeHTTP(httptest.NewRecorder(), req)
	require.Error(t, ctx.Err(), "the client went away while Cognito answered")

	status, out := failureRefresh(c, rt) // the retry, within the grace period
	require.Equal(t, http.StatusOK, status, "the sign-in survives: %v", out)
	f.clock.Advance(time.Hour + time.Minute)
	status, out = failureRefresh(c, out["refresh_token"].(string))
	assert.Equal(t, http.StatusOK, status, "Cognito's rotated refresh token was kept: %v", out)
}

// TestFailureRotatedRefreshTokenKept: Cognito rotates its refresh token at
// a refresh whose new tokens then fail verification (new signing keys,
// and the JWKS unreachable): the refresh is 503, and the grant keeps
// Cognito's new refresh token, the only one Cognito takes now, so the
// retry after the outage succeeds instead of signing the user out.
func TestFailureRotatedRefreshTokenKept(t *testing.T) {
	f := newProxyFixture(t, nil)
	f.pool.SetRefreshTokenRotation(true)
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	f.clock.Advance(time.Hour + time.Minute) // Cognito's access token expired: the refresh goes upstream

	f.pool.RotateKeys()
	f.pool.DropOldKeys()
	f.pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: http.StatusInternalServerError})
	status, out := failureRefresh(c, rt)
	assertUpstreamDown(t, status, out)
	assert.Contains(t, f.logs.String(), "refreshed Cognito tokens fail verification", "the log says why")
	assert.NotContains(t, f.logs.String(), "malformed response")

	f.pool.ClearFaults()
	f.clock.Advance(2 * time.Minute) // past the JWKS refetch window
	status, out = failureRefresh(c, rt)
	assert.Equal(t, http.StatusOK, status, "the retry refreshes at Cognito with its rotated refresh token: %v", out)
}

// TestFailureStoreAtAuthorize: a store that cannot record the transaction
// at /authorize sends a loopback client temporarily_unavailable at its
// redirect URI, with its state, so that it stops waiting and can retry; a
// client with an https redirect URI gets a 503 page, as /authorize never
// sends a browser to such a URI unasked (RFC 9700 §4.11.2).
func TestFailureStoreAtAuthorize(t *testing.T) {
	store := &failureStore{MemoryStore: cognitomcp.NewMemoryStore()}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	native := f.register(loopbackRedirect)
	web := f.register("https://client.example/cb")
	store.failWrites("txn")

	resp, body := native.get(native.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	back := location(t, resp)
	assert.True(t, strings.HasPrefix(back.String(), loopbackRedirect), back.String())
	assert.Equal(t, "temporarily_unavailable", back.Query().Get("error"))
	assert.Equal(t, "client-state", back.Query().Get("state"))

	resp, body = web.get(web.authorizeURL(nil))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Empty(t, resp.Header.Get("Location"))
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
}
