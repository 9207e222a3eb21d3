package cognitomcp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocachestore "github.com/eko/gocache/store/go_cache/v4"
	gocache "github.com/patrickmn/go-cache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

func TestProxyRefreshesCognitoBehindARequest(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.AccessTokenTTL = 3 * time.Hour })
	c := f.register(loopbackRedirect)
	access, _ := c.login()
	before := f.pool.TokenGrants("refresh_token")

	// Cognito's access token (1 h) expires while the proxy's (3 h) lives on.
	f.clock.Advance(70 * time.Minute)
	resp, claims := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	assert.Equal(t, before+1, f.pool.TokenGrants("refresh_token"), "one transparent refresh at Cognito")
	f.clock.Advance(11 * time.Second) // past the revocation-check interval: the grant is read again
	resp, _ = f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, before+1, f.pool.TokenGrants("refresh_token"), "no second refresh while Cognito's new token lives")
}

func TestProxyCognitoRevocationEndsTheGrant(t *testing.T) {
	tap := &cognitoTap{}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.AccessTokenTTL = 3 * time.Hour
		tap.base = cfg.HTTPClient.Transport
		cfg.HTTPClient = &http.Client{Transport: tap}
	})
	c := f.register(loopbackRedirect)
	access, _ := c.login()
	access2, _ := c.login()
	f.clock.Advance(70 * time.Minute)

	// Cognito down: no pass, a 503 the client may retry.
	f.pool.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Status: http.StatusInternalServerError})
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	f.pool.ClearFaults()

	// The user was signed out at Cognito: its refresh token is refused, the grant ends.
	tap.setFail(true)
	resp, _ = f.mcp(access2)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
	tap.setFail(false)
	resp, _ = f.mcp(access2)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the grant stays revoked")
}

func TestProxyConsentModes(t *testing.T) {
	t.Run("off goes straight to Cognito", func(t *testing.T) {
		f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Consent = cognitomcp.ConsentOff })
		c := f.register(loopbackRedirect)
		resp, _ := c.get(c.authorizeURL(nil))
		next := location(t, resp)
		assert.Equal(t, f.pool.DomainURL+"/oauth2/authorize", next.Scheme+"://"+next.Host+next.Path)
		q := c.signIn(nil)
		assert.NotEmpty(t, q.Get("code"))
	})
	t.Run("remember skips the page only for navigations the user started", func(t *testing.T) {
		f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Consent = cognitomcp.ConsentRemember })
		c := f.register(loopbackRedirect)
		c.login() // approves once
		authorizeWith := func(site string, mod func(url.Values)) string {
			req, _ := http.NewRequest(http.MethodGet, c.authorizeURL(mod), nil)
			if site != "" {
				req.Header.Set("Sec-Fetch-Site", site)
			}
			resp, err := c.browser.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return location(t, resp).Path
		}
		authorize := func(site string) string { return authorizeWith(site, nil) }
		assert.Equal(t, "/oauth2/authorize", authorize("none"), "remembered: straight to Cognito")
		assert.Equal(t, "/consent", authorize("cross-site"), "pushed by another site: ask again")
		assert.Equal(t, "/consent", authorize(""), "no Fetch metadata: ask again")

		// prompt=consent asks again, whether the request comes as a GET or
		// as a POST (RFC 6749 §3.1 allows both).
		withPrompt := func(q url.Values) { q.Set("prompt", "consent") }
		assert.Equal(t, "/consent", authorizeWith("none", withPrompt), "prompt=consent in the query")
		u, _ := url.Parse(c.authorizeURL(withPrompt))
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/authorize", strings.NewReader(u.RawQuery))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "none")
		resp, err := c.browser.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "/consent", location(t, resp).Path, "prompt=consent in a POST body")
		assert.Equal(t, "/consent", authorizeWith("none", func(q url.Values) { q.Set("scope", "openid email profile") }),
			"approval is per set of scopes: these were not approved")
		assert.Equal(t, "/oauth2/authorize", authorizeWith("none", func(q url.Values) { q.Set("scope", "email openid email") }),
			"the approved set in another order, one repeated")
		other := f.register("http://127.0.0.1:9999/other")
		req, _ = http.NewRequest(http.MethodGet, other.authorizeURL(nil), nil)
		req.Header.Set("Sec-Fetch-Site", "none")
		other.browser.Jar = c.browser.Jar // same browser, another client
		resp, err = other.browser.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "/consent", location(t, resp).Path, "approval is per client")
	})
}

func TestProxyConsentEscapesClientMetadata(t *testing.T) {
	f := newProxyFixture(t, nil)
	body := `{"client_name":"<script>alert(1)</script><img src=x onerror=alert(2)>","redirect_uris":["` + loopbackRedirect + `"],"token_endpoint_auth_method":"none"}`
	resp, err := http.Post(f.srv.URL+"/register", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var reg map[string]any
	require.NoError(t, jsonDecode(resp.Body, &reg))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, reg)
	c := f.newClient(reg["client_id"].(string), loopbackRedirect)
	resp, _ = c.get(c.authorizeURL(nil))
	_, page := c.consentForm(location(t, resp).String())
	assert.NotContains(t, page, "<script>alert")
	assert.NotContains(t, page, "<img src=x")
	assert.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;")
}

func TestProxyEndpointHygiene(t *testing.T) {
	f := newProxyFixture(t, nil)
	do := func(method, path, ctype, body string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name, method, path, ctype, body string
		hdr                             map[string]string
		wantStatus                      int
		wantHeader                      [2]string
	}{
		{"GET /token is refused", http.MethodGet, "/token", "", "", nil, 405, [2]string{"Allow", "POST, OPTIONS"}},
		{"token with a JSON body", http.MethodPost, "/token", "application/json", `{"grant_type":"refresh_token"}`, nil, 400, [2]string{"Cache-Control", "no-store"}},
		{"oversized token body", http.MethodPost, "/token", form, "grant_type=refresh_token&refresh_token=" + strings.Repeat("a", 70<<10), nil, 400, [2]string{"Cache-Control", "no-store"}},
		{"duplicated parameters", http.MethodPost, "/token", form, "grant_type=refresh_token&grant_type=authorization_code", nil, 400, [2]string{}},
		{"token CORS preflight", http.MethodOptions, "/token", "", "", map[string]string{"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"}, 204, [2]string{"Access-Control-Allow-Origin", "*"}},
		{"register CORS preflight", http.MethodOptions, "/register", "", "", map[string]string{"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"}, 204, [2]string{"Access-Control-Allow-Origin", "*"}},
		{"metadata CORS", http.MethodGet, "/.well-known/oauth-authorization-server", "", "", map[string]string{"Origin": "http://localhost:6274"}, 200, [2]string{"Access-Control-Allow-Origin", "*"}},
		{"DELETE /revoke is refused", http.MethodDelete, "/revoke", "", "", nil, 405, [2]string{}},
		{"PUT /authorize is refused", http.MethodPut, "/authorize", "", "", nil, 405, [2]string{}},
		{"POST /auth/callback is refused", http.MethodPost, "/auth/callback", form, "", nil, 405, [2]string{}},
		{"revoke without a client", http.MethodPost, "/revoke", form, "token=x", nil, 401, [2]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(tc.method, tc.path, tc.ctype, tc.body, tc.hdr)
			assert.Equal(t, tc.wantStatus, resp.StatusCode)
			if tc.wantHeader[0] != "" {
				assert.Equal(t, tc.wantHeader[1], resp.Header.Get(tc.wantHeader[0]))
			}
		})
	}
}

func TestProxyTokenResponseHeaders(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	code := c.signIn(nil).Get("code")
	resp, err := http.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {c.id}, "code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
}

// revoke posts to /revoke as c and returns the status and headers.
func (c *oauthClient) revoke(form url.Values) (int, http.Header) {
	c.f.t.Helper()
	form.Set("client_id", c.id)
	resp, err := http.PostForm(c.f.srv.URL+"/revoke", form)
	require.NoError(c.f.t, err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// gateTransport holds one request to Cognito's token endpoint, once armed:
// the request announces itself on arrived, then waits for open to close.
type gateTransport struct {
	base    http.RoundTripper
	armed   atomic.Bool
	arrived chan struct{}
	open    chan struct{}
}

func (g *gateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/oauth2/token") && g.armed.CompareAndSwap(true, false) {
		g.arrived <- struct{}{}
		<-g.open
	}
	return g.base.RoundTrip(r)
}

// contendedStore is a MemoryStore that closes contended the first time
// Lock finds the lock held: someone is waiting for it.
type contendedStore struct {
	*cognitomcp.MemoryStore
	once      sync.Once
	contended chan struct{}
}

func (s *contendedStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	unlock, err := s.MemoryStore.Lock(ctx, key, ttl)
	if errors.Is(err, cognitomcp.ErrLocked) {
		s.once.Do(func() { close(s.contended) })
	}
	return unlock, err
}

// TestProxyRevokeDuringRefresh: a revocation that arrives while a refresh
// of the same sign-in is at Cognito (holding the grant's lock) waits for
// that refresh, and the family stays revoked: the refresh cannot store the
// grant again once it is gone. Neither the tokens the refresh issued nor
// Cognito's refresh token survive. Both ways of revoking: /revoke with a
// refresh token, and the sign-in's code replayed at /token.
func TestProxyRevokeDuringRefresh(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		revoke func(srv string, c *oauthClient, code, rt string) (*http.Response, error)
	}{
		{"revoked at /revoke", http.StatusOK, func(srv string, c *oauthClient, _, rt string) (*http.Response, error) {
			return http.PostForm(srv+"/revoke", url.Values{"token": {rt}, "client_id": {c.id}})
		}},
		{"its code replayed", http.StatusUnauthorized, func(srv string, c *oauthClient, code, _ string) (*http.Response, error) {
			return http.PostForm(srv+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
				"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := &gateTransport{arrived: make(chan struct{}), open: make(chan struct{})}
			store := &contendedStore{MemoryStore: cognitomcp.NewMemoryStore(), contended: make(chan struct{})}
			f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
				gate.base = cfg.HTTPClient.Transport
				cfg.HTTPClient = &http.Client{Transport: gate}
				cfg.Store = store
			})
			c := f.register(loopbackRedirect)
			code := c.signIn(nil).Get("code")
			_, rt := c.redeem(code)
			f.clock.Advance(61 * time.Minute) // Cognito's access token expired: the refresh goes to Cognito
			upstreamRevoked := f.pool.RevokedRefreshTokens()
			gate.armed.Store(true)

			type answer struct {
				status int
				out    map[string]any
				err    error
			}
			refreshed := make(chan answer, 1)
			go func() {
				resp, err := http.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}})
				if err != nil {
					refreshed <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				var out map[string]any
				err = json.NewDecoder(resp.Body).Decode(&out)
				refreshed <- answer{resp.StatusCode, out, err}
			}()
			<-gate.arrived
			revoked := make(chan answer, 1)
			go func() {
				resp, err := tc.revoke(f.srv.URL, c, code, rt)
				if err == nil {
					resp.Body.Close()
					revoked <- answer{status: resp.StatusCode}
					return
				}
				revoked <- answer{err: err}
			}()
			var rev answer
			select {
			case rev = <-revoked:
				t.Errorf("the revocation answered %d while a refresh of its grant was in flight", rev.status)
			case <-store.contended: // it waits for the grant's lock, which the refresh holds
			case <-time.After(10 * time.Second): // a bound on a hang, not a synchronisation
				t.Errorf("the revocation neither answered nor waited for the grant's lock")
			}
			close(gate.open)
			ref := <-refreshed
			if rev.status == 0 && rev.err == nil {
				rev = <-revoked
			}
			require.NoError(t, ref.err)
			require.NoError(t, rev.err)
			assert.Equal(t, tc.status, rev.status)

			require.Equal(t, http.StatusOK, ref.status, ref.out) // the refresh took the lock first
			status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ref.out["refresh_token"].(string)}})
			assert.Equal(t, http.StatusUnauthorized, status, "the refresh stored the revoked grant again: %v", out)
			assert.Equal(t, "invalid_grant", out["error"])
			resp, _ := f.mcp(ref.out["access_token"].(string))
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, upstreamRevoked+1, f.pool.RevokedRefreshTokens(), "Cognito's refresh token revoked upstream")
		})
	}
}

// TestProxyRevokeLooksBeyondTheHint: RFC 7009 §2.1, a token not found under
// its token_type_hint is looked for as the other kind. A refresh token
// hinted as an access token still revokes its family; an access token
// hinted as a refresh token is still revoked, alone.
func TestProxyRevokeLooksBeyondTheHint(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	status, _ := c.revoke(url.Values{"token": {rt}, "token_type_hint": {"access_token"}})
	require.Equal(t, http.StatusOK, status)
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	assert.Equal(t, http.StatusUnauthorized, status, "the family survived a misleading hint: %v", out)
	assert.Equal(t, "invalid_grant", out["error"])
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	access, rt = c.login()
	status, _ = c.revoke(url.Values{"token": {access}, "token_type_hint": {"refresh_token"}})
	require.Equal(t, http.StatusOK, status)
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the access token survived a misleading hint")
	status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	assert.Equal(t, http.StatusOK, status, "an access token revokes only itself: %v", out)
}

// TestProxyBasicClientGetsBasicChallenge: RFC 6749 §5.2, a client that
// authenticated with the Authorization header and gets a 401 at /token or
// /revoke gets a WWW-Authenticate challenge of the same scheme; a client
// that sent its client_id in the body gets none.
func TestProxyBasicClientGetsBasicChallenge(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"not-a-refresh-token"}}
	for _, tc := range []struct {
		name, path, basicUser string
		form                  url.Values
		challenge             bool
	}{
		{"unknown client at /token", "/token", "unknown-client", refresh, true},
		{"a refused grant at /token", "/token", c.id, refresh, true},
		{"unknown client at /revoke", "/revoke", "unknown-client", url.Values{"token": {"x"}}, true},
		{"unknown client in the body", "/token", "", url.Values{"client_id": {"unknown-client"}, "grant_type": {"refresh_token"}, "refresh_token": {"x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, f.srv.URL+tc.path, strings.NewReader(tc.form.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.basicUser != "" {
				req.SetBasicAuth(tc.basicUser, "")
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			if tc.challenge {
				assert.Equal(t, `Basic realm="`+f.srv.URL+`"`, resp.Header.Get("WWW-Authenticate"))
			} else {
				assert.Empty(t, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestProxyCognitoClientAuth: the proxy authenticates to Cognito as its
// app client at the code exchange, the refresh and the revocation, with a
// secret or without, whatever ClientAuthMethod says. Without a secret it
// sends its client_id in the body, never a Basic header with an empty
// secret (which the fake pool, like Cognito, refuses); with one it revokes
// with HTTP Basic, which Cognito's revocation endpoint requires even when
// the token endpoint is given client_secret_post.
func TestProxyCognitoClientAuth(t *testing.T) {
	clock := newTestClock()
	pool := newTestPool(t, clock)
	for _, secret := range []bool{false, true} {
		for _, method := range []string{"", "client_secret_basic", "client_secret_post"} {
			t.Run(fmt.Sprintf("secret=%v/method=%s", secret, method), func(t *testing.T) {
				f := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
					if !secret {
						public := pool.AddClient(cognitotest.Client{CallbackURLs: []string{cfg.BaseURL + "/auth/callback"}})
						cfg.ClientID, cfg.ClientSecret = public.ID, ""
					}
					cfg.ClientAuthMethod = method
				})
				c := f.register(loopbackRedirect)
				access, rt := c.login()
				resp, claims := f.mcp(access)
				require.Equal(t, http.StatusOK, resp.StatusCode, claims)
				assert.Equal(t, "alice", claims["username"])

				refreshes := pool.TokenGrants("refresh_token")
				clock.Advance(61 * time.Minute)
				status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				require.Equal(t, http.StatusOK, status, out)
				assert.Equal(t, refreshes+1, pool.TokenGrants("refresh_token"), "Cognito refreshed")

				revoked := pool.RevokedRefreshTokens()
				status, _ = c.revoke(url.Values{"token": {out["refresh_token"].(string)}})
				require.Equal(t, http.StatusOK, status)
				assert.Equal(t, revoked+1, pool.RevokedRefreshTokens(), "Cognito's refresh token revoked upstream")
				assert.NotContains(t, f.logs.String(), "revoking Cognito's refresh token failed")
			})
		}
	}
}

// ttlStore is a MemoryStore that records the lifetime of every record of
// one kind ("grant", "txn") written.
type ttlStore struct {
	*cognitomcp.MemoryStore
	kind string
	mu   sync.Mutex
	ttls []time.Duration
}

func newTTLStore(kind string) *ttlStore {
	return &ttlStore{MemoryStore: cognitomcp.NewMemoryStore(), kind: kind}
}

func (s *ttlStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, s.kind+":") {
		s.mu.Lock()
		s.ttls = append(s.ttls, ttl)
		s.mu.Unlock()
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func (s *ttlStore) written() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ttls)
}

// TestProxyUnredeemedGrantLivesAsLongAsItsCode: a sign-in whose code is
// never redeemed does not keep Cognito's refresh token in the store for the
// sign-in's whole life; once redeemed, the grant lives until it expires.
func TestProxyUnredeemedGrantLivesAsLongAsItsCode(t *testing.T) {
	store := newTTLStore("grant")
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	code := c.signIn(nil).Get("code")
	ttls := store.written()
	require.Len(t, ttls, 1)
	assert.GreaterOrEqual(t, ttls[0], 5*time.Minute, "the grant outlives its code")
	assert.LessOrEqual(t, ttls[0], 6*time.Minute, "an unredeemed grant is kept no longer than its code, and a margin")
	c.redeem(code)
	ttls = store.written()
	require.Len(t, ttls, 2)
	assert.Equal(t, 30*24*time.Hour, ttls[1], "redeemed, the grant lives as long as the sign-in")
}

// TestProxyUnusedRegistrationLivesADay: registering is open to anyone, so
// a registration is stored for a day; the first valid authorization request
// naming it stores it for a week (a first sign-in that failed can be tried
// again with the client id the client saved); the first sign-in completed
// through it stores it for ClientTTL, and later ones do not write it again.
func TestProxyUnusedRegistrationLivesADay(t *testing.T) {
	store := newTTLStore("client")
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	require.Equal(t, []time.Duration{24 * time.Hour}, store.written())
	resp, body := c.get(c.authorizeURL(func(q url.Values) { q.Set("response_type", "token") }))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	require.Len(t, store.written(), 1, "an authorization request refused is not a presentation")
	week := 7 * 24 * time.Hour
	for range 2 {
		resp, body = c.get(c.authorizeURL(nil))
		require.Equal(t, "/consent", location(t, resp).Path, body)
		require.Equal(t, []time.Duration{24 * time.Hour, week}, store.written(), "presented: kept a week, once")
	}
	c.login()
	require.Equal(t, []time.Duration{24 * time.Hour, week, 90 * 24 * time.Hour}, store.written(), "used: kept for ClientTTL")
	c.login()
	assert.Len(t, store.written(), 3, "marked used once")
}

// TestProxyScopesFollowTheConfig: the scopes a client registered (all the
// proxy offered then, when it named none) do not bind it. After a scope is
// added to ProxyConfig.Scopes, the client may ask for it (it never
// registers again); with no scope asked, it gets the registered ones the
// proxy still offers; a scope the proxy never offered is dropped.
func TestProxyScopesFollowTheConfig(t *testing.T) {
	store := cognitomcp.NewMemoryStore()
	clock := newTestClock()
	pool := newTestPool(t, clock)
	before := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store, cfg.Scopes = store, []string{"openid", "email", "profile"}
	})
	registered := before.register(loopbackRedirect)
	after := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) { // the same server, reconfigured
		cfg.Store, cfg.BaseURL, cfg.Scopes = store, before.cfg.BaseURL, []string{"openid", "email", "mcp-api/tools"}
	})
	c := after.newClient(registered.id, registered.redirect)

	resp, _ := c.get(c.authorizeURL(func(q url.Values) { q.Set("scope", "openid mcp-api/tools") }))
	assert.Equal(t, "/consent", location(t, resp).Path, "a scope added to the configuration since the client registered")

	resp, _ = c.get(c.authorizeURL(func(q url.Values) { q.Del("scope") }))
	require.Equal(t, "/consent", location(t, resp).Path)
	_, page := c.get(location(t, resp).String())
	assert.Contains(t, page, "<code>openid</code>")
	assert.Contains(t, page, "<code>email</code>")
	assert.NotContains(t, page, "<code>profile</code>", "a scope no longer offered is not asked of the user or of Cognito")

	resp, _ = c.get(c.authorizeURL(func(q url.Values) { q.Set("scope", "openid admin:all") }))
	require.Equal(t, "/consent", location(t, resp).Path)
	_, page = c.get(location(t, resp).String())
	assert.Contains(t, page, "<code>openid</code>")
	assert.NotContains(t, page, "admin:all", "a scope the proxy never offered is dropped, not granted")
}

// TestProxyGrantFollowsTheResource: a sign-in made while the MCP endpoint
// had another URL (MCPPath changed, or BaseURL written in a non-canonical
// form before it was canonicalised) refreshes into access tokens for the
// endpoint as it is now, which the endpoint admits.
func TestProxyGrantFollowsTheResource(t *testing.T) {
	store := cognitomcp.NewMemoryStore()
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	_, rt := c.login()

	cfg := f.cfg
	cfg.MCPPath = "/v2/mcp"
	moved, err := cognitomcp.NewProxy(t.Context(), cfg)
	require.NoError(t, err)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}}
	req := httptest.NewRequest(http.MethodPost, f.srv.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	moved.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &tok))

	req = httptest.NewRequest(http.MethodPost, moved.Resource(), strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	rec = httptest.NewRecorder()
	moved.Handler(mcpEcho).ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code, "the refreshed token is for the endpoint as it is now: %s", rec.Body.String())
}

// TestProxyScopesCognitoWithholds: a scope Cognito leaves out of its access
// token (a pre-token generation trigger suppressing it for a user) is not
// granted by the proxy either: not in the token response, not in the
// claims the MCP handler sees, and not after a refresh at Cognito that
// withholds one more; a sign-in Cognito grants none of the requested
// scopes for ends in access_denied.
func TestProxyScopesCognitoWithholds(t *testing.T) {
	f := newProxyFixture(t, nil)
	suppress := []string{"email"}
	f.pool.SetPreTokenGeneration(func(string, []string) []string { return suppress })
	c := f.register(loopbackRedirect)
	all := func(q url.Values) { q.Set("scope", "openid email profile") }

	status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {c.signIn(all).Get("code")},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, "openid profile", out["scope"], "Cognito withheld email")
	_, claims := f.mcp(out["access_token"].(string))
	assert.Equal(t, []any{"openid", "profile"}, claims["scopes"])

	suppress = []string{"email", "profile"}
	f.clock.Advance(time.Hour) // Cognito's access token is due: the refresh goes to Cognito
	status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, "openid", out["scope"], "Cognito withheld profile at the refresh")
	_, claims = f.mcp(out["access_token"].(string))
	assert.Equal(t, []any{"openid"}, claims["scopes"])

	suppress = []string{"openid", "email", "profile"}
	f.clock.Advance(time.Hour) // Cognito now withholds every scope of the sign-in: it ends
	status, _ = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, f.logs.String(), `why="every scope of the sign-in now withheld by Cognito"`)
	assert.NotContains(t, f.logs.String(), "Cognito refused the refresh token", "Cognito refused nothing")

	q := c.signIn(all)
	assert.Equal(t, "access_denied", q.Get("error"), "Cognito granted none of the requested scopes")
	assert.Empty(t, q.Get("code"))
}

// TestProxyWarnsWithoutLocker: a store that is not a Locker (here a wrapper
// that embeds Store, as one for metrics would, and so hides Lock) gets a
// warning at start, since a sign-in's lock then holds in one process only;
// a Locker gets none.
func TestProxyWarnsWithoutLocker(t *testing.T) {
	wrapped := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = struct{ cognitomcp.Store }{cognitomcp.NewMemoryStore()}
	})
	assert.Contains(t, wrapped.logs.String(), "is not a Locker")
	plain := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = cognitomcp.NewMemoryStore() })
	assert.NotContains(t, plain.logs.String(), "Locker")
}

// forwardingStore is what a user writes to add metrics or tracing to a
// Store: it holds the store in a field and forwards the four methods of
// Store, and nothing else.
type forwardingStore struct{ inner cognitomcp.Store }

func (s forwardingStore) Get(ctx context.Context, k string) ([]byte, error) {
	return s.inner.Get(ctx, k)
}
func (s forwardingStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	return s.inner.Set(ctx, k, v, ttl)
}
func (s forwardingStore) Delete(ctx context.Context, k string) error { return s.inner.Delete(ctx, k) }
func (s forwardingStore) Take(ctx context.Context, k string) ([]byte, error) {
	return s.inner.Take(ctx, k)
}

// atomicForwardingStore also forwards AtomicTake, as Store's doc asks.
type atomicForwardingStore struct{ forwardingStore }

func (s atomicForwardingStore) AtomicTake() bool {
	return s.inner.(cognitomcp.AtomicTaker).AtomicTake()
}

// TestProxyStoreAtomicity: NewProxy refuses a store whose Take is not
// atomic (an AtomicTaker reporting false), bare or behind a wrapper that
// forwards AtomicTake, unless InsecureAllowNonAtomicStore is set. A store
// that does not say (a wrapper hiding AtomicTake, or a user's own store) is
// accepted with a warning at start, since it may be a non-atomic one; a
// store that says its Take is atomic gets none.
func TestProxyStoreAtomicity(t *testing.T) {
	f := newProxyFixture(t, nil)
	cache := cognitomcp.NewCacheStore(gocachestore.NewGoCache(gocache.New(gocache.NoExpiration, 0)), cognitomcp.CacheStoreOptions{})
	for name, store := range map[string]cognitomcp.Store{
		"a CacheStore":                    cache,
		"a wrapper forwarding AtomicTake": atomicForwardingStore{forwardingStore{cache}},
	} {
		cfg := f.cfg
		cfg.Store = store
		_, err := cognitomcp.NewProxy(t.Context(), cfg)
		assert.ErrorContains(t, err, "ProxyConfig.Store: its Take is not atomic", name)
		cfg.InsecureAllowNonAtomicStore = true
		_, err = cognitomcp.NewProxy(t.Context(), cfg)
		assert.NoError(t, err, "%s with InsecureAllowNonAtomicStore", name)
	}

	hidden := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = forwardingStore{cache} })
	assert.Contains(t, hidden.logs.String(), `level=WARN msg="cognitomcp: ProxyConfig.Store is not an AtomicTaker`,
		"a CacheStore behind a wrapper that hides AtomicTake is accepted silently")
	says := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = atomicForwardingStore{forwardingStore{cognitomcp.NewMemoryStore()}}
	})
	assert.NotContains(t, says.logs.String(), "AtomicTaker")
}

// TestProxySignInOutlastsTheConsentPage: once the user approves, the
// transaction waits an hour for the sign-in at Cognito (a sign-up with
// email verification, an MFA enrolment), as Cognito's own managed-login
// session does, and the browser's binding cookie as long; the consent page
// itself waits 15 minutes.
func TestProxySignInOutlastsTheConsentPage(t *testing.T) {
	store := newTTLStore("txn")
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	upstream := c.approve(nil)
	assert.Equal(t, []time.Duration{15 * time.Minute, time.Hour}, store.written(), "the consent page's wait, then the sign-in's")

	f.clock.Advance(40 * time.Minute) // the user verifies an email address at Cognito
	resp, _ := c.get(upstream.String())
	resp, body := c.get(location(t, resp).String()) // the callback
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	assert.NotEmpty(t, location(t, resp).Query().Get("code"), "the binding cookie still holds")
	u, _ := url.Parse(f.srv.URL)
	for _, k := range c.browser.Jar.Cookies(u) {
		assert.NotContains(t, k.Name, "csrf", "the sign-in's cookies end with it")
		assert.NotContains(t, k.Name, "bind", "the sign-in's cookies end with it")
	}
}

// TestConsentPageNamesTheApplication: for a custom-scheme redirect URI the
// consent page shows the scheme (the operating system picks the receiving
// application by it), not a host such as "callback"; an error page repeats
// no text of the link.
func TestConsentPageNamesTheApplication(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.AllowedRedirectURIs = []string{"claude://callback"} })
	c := f.register("claude://callback")
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	_, page := c.get(location(t, resp).String())
	assert.Contains(t, page, `<code id="redirect-host">claude://callback</code>`)
	assert.Contains(t, page, `handles <code>claude:</code> links`)

	resp, page = c.get(c.authorizeURL(nil) + "&Sign+in+at+evil.example=1&Sign+in+at+evil.example=2")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.NotContains(t, page, "evil.example")
	assert.Contains(t, f.logs.String(), "evil.example", "the operator's log names the parameter")
}

// TestRedirectKeepsTheRegisteredQuery: the query of a registered redirect
// URI reaches the client as written, a pair with ';' included (which
// url.ParseQuery drops), with the answer's parameters after it.
func TestRedirectKeepsTheRegisteredQuery(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect + "?session=a;b&x=1")
	raw := c.answerConsent(nil, "deny").RawQuery
	assert.True(t, strings.HasPrefix(raw, "session=a;b&x=1&"), raw)
	assert.Contains(t, raw, "error=access_denied")
}

// TestProxyWithAPoolID: the production configuration, a pool named by
// UserPoolID on AWS's hostnames (issuer and domain over https, through the
// fake's transport) whose tokens carry the UPDATED issuer form while
// discovery runs at the ORIGINAL one: sign-in, the MCP call, a refresh at
// Cognito and the revocation all work.
func TestProxyWithAPoolID(t *testing.T) {
	clock := newTestClock()
	pool := cognitotest.NewUserPool(cognitotest.Options{Now: clock.Now, AWSHostnames: true, UpdatedIssuer: true})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com", Groups: []string{"admin"}})
	pool.SetAutoLogin("alice")
	f := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.IssuerURL, cfg.UserPoolID, cfg.DomainURL = "", pool.PoolID, pool.DomainURL
	})
	require.True(t, strings.HasPrefix(pool.Issuer, "https://issuer-cognito-idp."), pool.Issuer)
	c := f.register(loopbackRedirect)
	c.browser.Transport = pool.HTTPClient().Transport // the browser reaches the pool's domain by its AWS name too
	access, rt := c.login()
	resp, claims := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	assert.Equal(t, "alice", claims["username"])

	clock.Advance(61 * time.Minute)
	refreshes := pool.TokenGrants("refresh_token")
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, refreshes+1, pool.TokenGrants("refresh_token"), "Cognito refreshed")
	resp, claims = f.mcp(out["access_token"].(string))
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)

	revoked := pool.RevokedRefreshTokens()
	status, _ = c.revoke(url.Values{"token": {out["refresh_token"].(string)}})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, revoked+1, pool.RevokedRefreshTokens())
}

// TestProxyNarrowedRefreshKeepsCognitosRotation: a refresh that narrows the
// scope to one Cognito has just withheld (at a refresh at Cognito, which
// rotated its refresh token) is invalid_scope, and the grant keeps
// Cognito's new refresh token: the next refresh works.
func TestProxyNarrowedRefreshKeepsCognitosRotation(t *testing.T) {
	f := newProxyFixture(t, nil)
	f.pool.SetRefreshTokenRotation(true)
	c := f.register(loopbackRedirect)
	status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {c.redirect}, "code_verifier": {c.verifier},
		"code": {c.signIn(func(q url.Values) { q.Set("scope", "openid email profile") }).Get("code")}})
	require.Equal(t, http.StatusOK, status, out)
	rt := out["refresh_token"].(string)

	f.pool.SetPreTokenGeneration(func(string, []string) []string { return []string{"profile"} })
	f.clock.Advance(time.Hour) // Cognito's access token is due: the refresh goes to Cognito
	status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"profile"}})
	require.Equal(t, http.StatusBadRequest, status, out)
	assert.Equal(t, "invalid_scope", out["error"])

	status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	require.Equal(t, http.StatusOK, status, "Cognito's rotated refresh token was kept: %v", out)
	assert.Equal(t, "openid email", out["scope"])
}

// TestProxyUpstreamClientErrorsGoBack: a client that presents Cognito's own
// app client id with one of UpstreamClientRedirectURIs (claude.ai does)
// gets an error of its authorization request at that https URI, which the
// operator chose, rather than a page.
func TestProxyUpstreamClientErrorsGoBack(t *testing.T) {
	const callback = "https://claude.example/api/mcp/auth_callback"
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.UpstreamClientRedirectURIs = []string{callback} })
	c := f.newClient(f.app.ID, callback)
	resp, body := c.get(c.authorizeURL(func(q url.Values) { q.Set("resource", "https://other.example/mcp") }))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	back := location(t, resp)
	assert.True(t, strings.HasPrefix(back.String(), callback+"?"), back.String())
	assert.Equal(t, "invalid_target", back.Query().Get("error"))
}

// TestMCPEndpointWithATrailingSlash: the MCP endpoint typed with a trailing
// slash answers 308 to the endpoint (method and body kept), not a plain 404.
func TestMCPEndpointWithATrailingSlash(t *testing.T) {
	f := newProxyFixture(t, nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Post(f.proxy.Resource()+"/?x=1", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
	assert.Equal(t, "/mcp?x=1", resp.Header.Get("Location"))

	resp, err = http.Post(f.proxy.Resource()+"/", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "followed, the request meets the endpoint's challenge")
}

// TestProxyWarnsOfAnUnobtainableScope: RequireScopes behind the proxy
// naming a scope ProxyConfig.Scopes does not offer can never be met (no
// client can obtain it), which is logged once; a scope the proxy offers
// that a token lacks is an ordinary step-up, not logged.
func TestProxyWarnsOfAnUnobtainableScope(t *testing.T) {
	store, clock := cognitomcp.NewMemoryStore(), newTestClock()
	pool := newTestPool(t, clock)
	f := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	access, _ := f.register(loopbackRedirect).login() // openid email
	call := func(h http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+access)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const warning = "no client can obtain it"

	stepUp := f.proxy.Handler(cognitomcp.RequireScopes("profile")(mcpEcho))
	rec := call(stepUp)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `scope="openid email profile"`)
	assert.NotContains(t, f.logs.String(), warning, "profile is offered: an ordinary step-up")

	// The token holds email, which the proxy no longer offers: still an
	// ordinary step-up for profile.
	narrowed := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store, cfg.BaseURL, cfg.Scopes = store, f.cfg.BaseURL, []string{"openid", "profile"}
	})
	rec = call(narrowed.proxy.Handler(cognitomcp.RequireScopes("profile")(mcpEcho)))
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.NotContains(t, narrowed.logs.String(), warning, "only the scopes required and missing count")

	never := f.proxy.Handler(cognitomcp.RequireScopes("mcp-api/admin")(mcpEcho))
	call(never)
	call(never)
	assert.Equal(t, 1, strings.Count(f.logs.String(), warning), "logged once: %s", f.logs)
	assert.Contains(t, f.logs.String(), "scopes=mcp-api/admin")
}

// TestProxyForwardResource: with ForwardResource, the MCP client's resource
// goes to Cognito's authorization endpoint (resource binding: Cognito then
// sets its access token's aud), and the sign-in completes; without it,
// Cognito is sent none.
func TestProxyForwardResource(t *testing.T) {
	for _, forward := range []bool{false, true} {
		t.Run(fmt.Sprintf("forward=%v", forward), func(t *testing.T) {
			f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.ForwardResource = forward })
			c := f.register(loopbackRedirect)
			upstream := c.approve(nil)
			if forward {
				assert.Equal(t, f.proxy.Resource(), upstream.Query().Get("resource"))
			} else {
				assert.False(t, upstream.Query().Has("resource"))
			}
			assert.Equal(t, "alice", signInFrom(t, f, c, upstream)["username"])
		})
	}
}

// TestProxyForwardResourceOnALitePool: a pool that ignores resource (the
// Lite tier, the classic hosted UI) issues access tokens without aud; with
// ForwardResource the sign-in completes all the same, and the proxy's own
// token is bound to the MCP server.
func TestProxyForwardResourceOnALitePool(t *testing.T) {
	clock := newTestClock()
	pool := cognitotest.NewUserPool(cognitotest.Options{Now: clock.Now, IgnoreResource: true})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com"})
	pool.SetAutoLogin("alice")
	f := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) { cfg.ForwardResource = true })
	c := f.register(loopbackRedirect)
	upstream := c.approve(nil)
	require.Equal(t, f.proxy.Resource(), upstream.Query().Get("resource"), "sent")
	assert.Equal(t, "alice", signInFrom(t, f, c, upstream)["username"])
}

// signInFrom finishes a sign-in whose browser is at upstream (Cognito's
// authorization endpoint, the user signed in automatically), redeems the
// code and calls the MCP endpoint with the token: it returns the claims.
func signInFrom(t *testing.T, f *proxyFixture, c *oauthClient, upstream *url.URL) map[string]any {
	t.Helper()
	resp, _ := c.get(upstream.String())
	resp, body := c.get(location(t, resp).String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	access, _ := c.redeem(location(t, resp).Query().Get("code"))
	resp, claims := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	return claims
}

// TestProxyConfigPaths: MCPPath and CallbackPath are absolute paths of this
// host, never something a browser or a client would read as another URL.
func TestProxyConfigPaths(t *testing.T) {
	for _, path := range []string{"mcp", "/mcp?x=1", "/mcp#x", "/a/../mcp", "//evil.example/mcp", "/\\evil.example/mcp"} {
		for _, field := range []string{"MCPPath", "CallbackPath"} {
			f := newProxyFixture(t, nil)
			cfg := f.cfg
			if field == "MCPPath" {
				cfg.MCPPath = path
			} else {
				cfg.CallbackPath = path
			}
			_, err := cognitomcp.NewProxy(t.Context(), cfg)
			assert.ErrorContains(t, err, "ProxyConfig."+field, "%s %q", field, path)
		}
	}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.MCPPath = "/v2/mcp" })
	assert.Equal(t, f.srv.URL+"/v2/mcp", f.proxy.Resource())
}

// TestProxyConfigMistakes: misconfigurations an operator is likely to make
// that Cognito would report only in a user's browser, or that would leave a
// route unreachable, fail at start naming the field.
func TestProxyConfigMistakes(t *testing.T) {
	f := newProxyFixture(t, nil)
	for name, tc := range map[string]struct {
		mod   func(*cognitomcp.ProxyConfig)
		field string
	}{
		"a client id pasted with a newline": {func(c *cognitomcp.ProxyConfig) { c.ClientID += "\n" }, "ProxyConfig.ClientID"},
		"a client secret with a space":      {func(c *cognitomcp.ProxyConfig) { c.ClientSecret = " " + c.ClientSecret }, "ProxyConfig.ClientSecret"},
		"a domain URL with a path": {func(c *cognitomcp.ProxyConfig) {
			c.DomainURL = "https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
		}, "ProxyConfig.DomainURL"},
		"an origin without a scheme":          {func(c *cognitomcp.ProxyConfig) { c.AllowedOrigins = []string{"mcp.example.com"} }, "ProxyConfig.AllowedOrigins"},
		"a callback at the token endpoint":    {func(c *cognitomcp.ProxyConfig) { c.CallbackPath = "/token" }, "ProxyConfig.CallbackPath"},
		"an MCP endpoint at the consent page": {func(c *cognitomcp.ProxyConfig) { c.MCPPath = "/consent" }, "ProxyConfig.MCPPath"},
		"a callback at the MCP endpoint":      {func(c *cognitomcp.ProxyConfig) { c.CallbackPath = "/mcp" }, "ProxyConfig.CallbackPath"},
	} {
		cfg := f.cfg
		tc.mod(&cfg)
		_, err := cognitomcp.NewProxy(t.Context(), cfg)
		assert.ErrorContains(t, err, tc.field, name)
	}
}

// TestProxyConfigErrorsHideURLCredentials: a URL setting refused at start
// is quoted in the error without its userinfo, which may hold a password
// (operators log that error): whether it is refused for the userinfo
// itself, for something else, or does not parse, and a password holding an
// unescaped "/" (which a URL parser reads as the path) included.
func TestProxyConfigErrorsHideURLCredentials(t *testing.T) {
	const pw = "PW-s3cret"
	f := newProxyFixture(t, nil)
	withCreds := func(raw, userinfo string) string { return strings.Replace(raw, "://", "://"+userinfo+"@", 1) }
	for _, tc := range []struct {
		name, field string
		mod         func(*cognitomcp.ProxyConfig)
	}{
		{"BaseURL with userinfo", "ProxyConfig.BaseURL", func(c *cognitomcp.ProxyConfig) { c.BaseURL = "https://ops:" + pw + "@mcp.example.com" }},
		{"BaseURL not https, a slash in the password", "ProxyConfig.BaseURL", func(c *cognitomcp.ProxyConfig) {
			c.BaseURL = "http://ops:12/" + pw + "@mcp.example.com"
		}},
		{"IssuerURL with userinfo", "VerifierConfig.IssuerURL", func(c *cognitomcp.ProxyConfig) { c.IssuerURL = withCreds(f.pool.Issuer, "ops:"+pw) }},
		{"IssuerURL that does not parse", "VerifierConfig.IssuerURL", func(c *cognitomcp.ProxyConfig) {
			c.IssuerURL = withCreds(f.pool.Issuer, "ops:"+pw+"%zz")
		}},
		{"DomainURL with userinfo", "ProxyConfig.DomainURL", func(c *cognitomcp.ProxyConfig) { c.DomainURL = withCreds(f.pool.DomainURL, "ops:"+pw) }},
		{"DomainURL with a path, a slash in the password", "ProxyConfig.DomainURL", func(c *cognitomcp.ProxyConfig) {
			c.DomainURL = "https://ops:12/" + pw + "@myapp.auth.eu-west-1.amazoncognito.com"
		}},
		{"BaseURL without a scheme, :// in the password", "ProxyConfig.BaseURL", func(c *cognitomcp.ProxyConfig) {
			c.BaseURL = "ops:" + pw[:3] + "://" + pw[3:] + "@mcp.example.com"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.cfg
			tc.mod(&cfg)
			_, err := cognitomcp.NewProxy(t.Context(), cfg)
			require.ErrorContains(t, err, tc.field)
			assert.NotContains(t, err.Error(), pw, "the password is quoted in the error")
			assert.NotContains(t, err.Error(), pw[:3]+"://", "part of the password is quoted in the error")
			assert.Contains(t, err.Error(), "xxxxx@", "the URL is quoted, its userinfo redacted")
		})
	}
}

// TestProxyConfigLogsNoSecret: a ProxyConfig logged with slog (text or
// JSON) shows neither the client secret, nor a byte of its keys, nor a
// password in its URLs, and still shows every field.
func TestProxyConfigLogsNoSecret(t *testing.T) {
	f := newProxyFixture(t, nil)
	cfg := f.cfg
	cfg.DomainURL = "https://ops:PW-s3cret@myapp.auth.eu-west-1.amazoncognito.com"
	cfg.Keys.SigningKeys = []cognitomcp.SigningKey{{ID: "sig-1", Secret: []byte("signing-secret-signing-secret-01")}}
	var buf syncBuffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("start", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "cfg", &cfg)
	out := buf.String()

	for _, secret := range []string{cfg.ClientSecret, string(cfg.Keys.MasterSecret), string(cfg.Keys.SigningKeys[0].Secret), "PW-s3cret"} {
		require.NotEmpty(t, secret)
		assert.NotContains(t, out, secret)
	}
	for _, key := range [][]byte{cfg.Keys.MasterSecret, cfg.Keys.SigningKeys[0].Secret} {
		assert.NotContains(t, out, fmt.Sprint(key), "key bytes, as fmt prints them")
		assert.NotContains(t, out, base64.StdEncoding.EncodeToString(key), "key bytes, as encoding/json writes them")
	}
	for _, want := range []string{"cfg.ClientID=" + cfg.ClientID, "cfg.ClientSecret=REDACTED", "cfg.BaseURL=" + cfg.BaseURL,
		"cfg.DomainURL=https://xxxxx@myapp.auth.eu-west-1.amazoncognito.com", "cfg.Keys.MasterSecret=REDACTED", `cfg.Keys.SigningKeys="[sig-1 (HS256)]"`} {
		assert.Contains(t, out, want)
	}
	fields := reflect.TypeFor[cognitomcp.ProxyConfig]()
	for i := range fields.NumField() {
		assert.Contains(t, out, `"`+fields.Field(i).Name+`":`, "a field LogValue leaves out")
	}
}

// holdingStore is a MemoryStore whose next read of a grant, once armed,
// waits until released: a verification held in flight.
type holdingStore struct {
	*cognitomcp.MemoryStore
	armed            atomic.Bool
	entered, release chan struct{}
}

func (s *holdingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "grant:") && s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-s.release
	}
	return s.MemoryStore.Get(ctx, key)
}

// TestProxyRevocationRacesAVerification: an access token revoked on this
// replica while a verification of it is in flight (it read "not revoked"
// just before) is refused by that verification and never cached, so the
// replica refuses it at once, as documented, not after
// RevocationCheckInterval.
func TestProxyRevocationRacesAVerification(t *testing.T) {
	store := &holdingStore{MemoryStore: cognitomcp.NewMemoryStore(), entered: make(chan struct{}), release: make(chan struct{})}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	access, _ := c.login()

	store.armed.Store(true)
	inFlight := make(chan int)
	go func() {
		resp, _ := f.mcp(access)
		inFlight <- resp.StatusCode
	}()
	<-store.entered
	status, _ := c.revoke(url.Values{"token": {access}, "token_type_hint": {"access_token"}})
	require.Equal(t, http.StatusOK, status)
	close(store.release)
	assert.Equal(t, http.StatusUnauthorized, <-inFlight, "the verification in flight sees the revocation")
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "and left nothing in the cache")
}

// TestProxyTokenAtTheEndOfItsSignIn: an access token presented in the
// seconds of clock skew past its sign-in's end (the grant still in a store
// whose expiry lags) is refused as revoked, not refreshed at Cognito into a
// store write of a negative lifetime (a 503).
func TestProxyTokenAtTheEndOfItsSignIn(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.RefreshTokenTTL = time.Hour })
	access, _ := f.register(loopbackRedirect).login()
	refreshes := f.pool.TokenGrants("refresh_token")
	f.clock.Advance(time.Hour + 2*time.Second) // the sign-in ended 2 s ago; the token is within the 5 s skew
	resp, body := f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%v", body)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
	assert.Equal(t, refreshes, f.pool.TokenGrants("refresh_token"), "no refresh at Cognito for an ended sign-in")
}

// TestProxyLogsForTheOperator: what the log tells an operator. A scope not
// allowed on the Cognito app client comes back from Cognito as
// invalid_scope, logged with what to check; a sign-out is ordinary (Info),
// a replayed code stands out (Warn); the start names the callback URL to
// register.
func TestProxyLogsForTheOperator(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Scopes = []string{"openid", "email", "phone"} })
	assert.Contains(t, f.logs.String(), "cognito_callback_url="+f.srv.URL+"/auth/callback")

	c := f.register(loopbackRedirect)
	q := c.signIn(func(v url.Values) { v.Set("scope", "openid phone") }) // phone is not allowed on the app client
	assert.Equal(t, "server_error", q.Get("error"))
	assert.Contains(t, f.logs.String(), "every scope of ProxyConfig.Scopes must be allowed on the app client")

	_, rt := c.login()
	status, _ := c.revoke(url.Values{"token": {rt}})
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, f.logs.String(), `level=INFO msg="cognitomcp: grant revoked" why="revoked by the client"`)

	code := c.signIn(nil).Get("code")
	c.redeem(code)
	status, _ = c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	require.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, f.logs.String(), `level=WARN msg="cognitomcp: grant revoked" why="authorization code replayed"`)
}

// TestForwardedClientIP: behind hops trusted proxies the client is the
// hops-th address from the end of X-Forwarded-For, whatever the client put
// before it; anything short or malformed counts by RemoteAddr.
func TestForwardedClientIP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hops  int
		lines []string
		want  string
	}{
		{"one proxy", 1, []string{"203.0.113.9"}, "203.0.113.9"},
		{"one proxy, an address the client made up first", 1, []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"two proxies", 2, []string{"6.6.6.6, 203.0.113.9, 10.0.0.5"}, "203.0.113.9"},
		{"two proxies, two header lines", 2, []string{"6.6.6.6, 203.0.113.9", "10.0.0.5"}, "203.0.113.9"},
		{"an address and port", 1, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"an IPv4-mapped address", 1, []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"no header", 1, nil, "192.0.2.1"},
		{"fewer entries than proxies", 2, []string{"203.0.113.9"}, "192.0.2.1"},
		{"not an address", 1, []string{"unknown"}, "192.0.2.1"},
		{"an empty last entry", 1, []string{"203.0.113.9,"}, "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = "192.0.2.1:5555"
			for _, l := range tc.lines {
				r.Header.Add("X-Forwarded-For", l)
			}
			assert.Equal(t, tc.want, cognitomcp.ForwardedClientIP("x-forwarded-for", tc.hops)(r))
		})
	}
	reused := cognitomcp.ForwardedClientIP("X-Forwarded-For", 2) // one function serves every request
	for range 2 {
		for _, lines := range [][]string{{"6.6.6.6, 203.0.113.9", "10.0.0.5"}, {"6.6.6.6, 203.0.113.9, 10.0.0.5"}} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, l := range lines {
				r.Header.Add("X-Forwarded-For", l)
			}
			assert.Equal(t, "203.0.113.9", reused(r), "%q", lines)
		}
	}
	assert.Panics(t, func() { cognitomcp.ForwardedClientIP("X-Forwarded-For", 0) })
	assert.Panics(t, func() { cognitomcp.ForwardedClientIP("", 1) })
}

// TestProxyResourceInEquivalentForms: a resource parameter that names the
// MCP endpoint in another form (the scheme and host upper-cased, the
// default port written, a trailing slash, a query the client appended as
// ChatGPT appends ?kb_name=) is this server's resource at /authorize and at
// /token, and the tokens are for the canonical one; another path, host or
// port is invalid_target.
func TestProxyResourceInEquivalentForms(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	canonical := f.proxy.Resource() // http://127.0.0.1:PORT/mcp
	rest := strings.TrimPrefix(canonical, "http://")
	host, path, _ := strings.Cut(rest, "/")
	for _, given := range []string{
		canonical + "?kb_name=sales",
		canonical + "/",
		canonical + "#top",
		"HTTP://" + strings.ToUpper(host) + "/" + path,
	} {
		q := c.signIn(func(v url.Values) { v.Set("resource", given) })
		require.NotEmpty(t, q.Get("code"), "%s: %v", given, q)
		status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
			"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}, "resource": {given}})
		require.Equal(t, http.StatusOK, status, "%s: %v", given, out)
		resp, claims := f.mcp(out["access_token"].(string))
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: the token is for the endpoint", given)
		assert.Equal(t, "alice", claims["username"])
	}
	for _, given := range []string{
		canonical + "2",
		strings.Replace(canonical, "/mcp", "/MCP", 1),
		strings.Replace(canonical, "127.0.0.1", "127.0.0.2", 1),
		strings.Replace(canonical, "http://", "https://", 1),
		strings.Replace(canonical, "http://", "http://user@", 1),
		"/mcp",
	} {
		resp, body := c.get(c.authorizeURL(func(v url.Values) { v.Set("resource", given) }))
		require.Equal(t, http.StatusFound, resp.StatusCode, "%s: %s", given, body)
		assert.Equal(t, "invalid_target", location(t, resp).Query().Get("error"), given)
	}
}

// TestProxyRechecksTheRedirectBeforeEveryRedirect: a redirect URI stored
// while the policy allowed it (a client registered under an
// AllowedRedirectURIs pattern the next deploy removed) sends no browser
// there: the client's /authorize, and the callback of a sign-in started
// before the change, answer a page, not a redirect.
func TestProxyRechecksTheRedirectBeforeEveryRedirect(t *testing.T) {
	const cursor = "cursor://anysphere.cursor-mcp/oauth/callback"
	store := cognitomcp.NewMemoryStore()
	a := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = store
		cfg.AllowedRedirectURIs = []string{cursor}
	})
	c := a.register(cursor)
	callback := inFlight(t, c) // a sign-in at Cognito's redirect back, started before the change

	cfg := a.cfg
	cfg.AllowedRedirectURIs = nil // the next deploy: the same server, store and keys
	b, err := cognitomcp.NewProxy(t.Context(), cfg)
	require.NoError(t, err)
	for name, u := range map[string]string{
		"authorize":    c.authorizeURL(nil),
		"the callback": callback.String(),
	} {
		req := httptest.NewRequest(http.MethodGet, u, nil)
		for _, ck := range c.browser.Jar.Cookies(req.URL) {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", name, rec.Body.String())
		assert.Empty(t, rec.Header().Get("Location"), name)
		assert.Contains(t, rec.Header().Get("Content-Type"), "text/html", name)
		assert.Contains(t, rec.Body.String(), "The redirect URI is not allowed.", name)
	}
}

// TestProxyRequiredScopes: with RequiredScopes fewer than Scopes, the
// challenge and the protected resource metadata name only the required
// ones (the authorization server's metadata still lists every scope), a
// client asking for none gets them, and a handler behind RequireScopes
// for another scope answers 403 naming it; signing in again for what the
// 403 names, the client gets it. A required scope not among Scopes is a
// configuration error.
func TestProxyRequiredScopes(t *testing.T) {
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Scopes, cfg.RequiredScopes = []string{"openid", "email", "profile"}, []string{"openid", "email"}
	})
	resp, _ := f.mcp("")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `scope="openid email"`)
	getJSON := func(u string) map[string]any {
		resp, err := http.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	assert.Equal(t, []any{"openid", "email"}, getJSON(f.proxy.ResourceMetadataURL())["scopes_supported"])
	assert.Equal(t, []any{"openid", "email", "profile"}, getJSON(f.srv.URL + "/.well-known/oauth-authorization-server")["scopes_supported"])

	c := f.register(loopbackRedirect) // naming no scope
	code := c.signIn(func(q url.Values) { q.Del("scope") }).Get("code")
	status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, "openid email", out["scope"], "a client naming no scope gets the required ones")

	profile := f.proxy.Handler(cognitomcp.RequireScopes("profile")(mcpEcho))
	call := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		profile.ServeHTTP(rec, req)
		return rec
	}
	rec := call(out["access_token"].(string))
	require.Equal(t, http.StatusForbidden, rec.Code)
	challenge := rec.Header().Get("WWW-Authenticate")
	assert.Contains(t, challenge, `error="insufficient_scope"`)
	assert.Contains(t, challenge, `scope="openid email profile"`)

	code = c.signIn(func(q url.Values) { q.Set("scope", "openid email profile") }).Get("code")
	status, out = c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, "openid email profile", out["scope"])
	assert.Equal(t, http.StatusOK, call(out["access_token"].(string)).Code, "after the step-up")

	cfg := f.cfg
	cfg.RequiredScopes = []string{"openid", "phone"}
	_, err := cognitomcp.NewProxy(t.Context(), cfg)
	assert.ErrorContains(t, err, `RequiredScopes: "phone" is not one of Scopes`)
}
