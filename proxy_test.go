package cognitomcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
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

const loopbackRedirect = "http://127.0.0.1:8976/callback"

// TestProxyFullFlow drives one sign-in end to end: register → authorize →
// consent → Cognito login form → callback → token → MCP call with claims →
// refresh → revoke → refused.
func TestProxyFullFlow(t *testing.T) {
	f := newProxyFixture(t, nil)
	f.pool.SetAutoLogin("") // through the login form this time
	c := f.register(loopbackRedirect)

	// 1. The MCP endpoint challenges.
	resp, _ := f.mcp("")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, `Bearer resource_metadata="`+f.proxy.ResourceMetadataURL()+`", scope="openid email profile"`, resp.Header.Get("WWW-Authenticate"))

	// 2. Authorize → consent page.
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	consent := location(t, resp)
	form, page := c.consentForm(consent.String())
	assert.Contains(t, page, "Test Client")
	assert.Contains(t, page, "127.0.0.1:8976")
	form.Set("action", "approve")
	resp, body = c.postForm(f.srv.URL+"/consent", form)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	cognito := location(t, resp)
	assert.Equal(t, f.pool.DomainURL+"/oauth2/authorize", cognito.Scheme+"://"+cognito.Host+cognito.Path)
	assert.Equal(t, "S256", cognito.Query().Get("code_challenge_method"))
	assert.Equal(t, f.app.ID, cognito.Query().Get("client_id"))

	// 3. Cognito's login form.
	resp, _ = c.get(cognito.String())
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loginURL := location(t, resp)
	resp, page = c.get(loginURL.String())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	login := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		login.Set(m[1], htmlUnescape(m[2]))
	}
	login.Set("username", "alice")
	login.Set("password", "alice-pw-1")
	resp, body = c.postForm(f.pool.DomainURL+"/login", login)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	callback := location(t, resp)

	// 4. The callback sends the client its code, state and iss.
	resp, body = c.get(callback.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	back := location(t, resp)
	assert.Equal(t, "127.0.0.1:8976", back.Host)
	assert.Equal(t, "client-state", back.Query().Get("state"))
	assert.Equal(t, f.proxy.Issuer(), back.Query().Get("iss"))

	// 5. Token.
	status, tok := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}, "resource": {f.proxy.Resource()}})
	require.Equal(t, http.StatusOK, status, tok)
	assert.Equal(t, "Bearer", tok["token_type"])
	assert.Equal(t, "openid email", tok["scope"])
	assert.InDelta(t, 3600, tok["expires_in"], 1)
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)

	// 6. The MCP call sees both identities.
	resp, claims := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	assert.Equal(t, "alice", claims["username"])
	assert.Equal(t, []any{"admin", "staff"}, claims["groups"])
	assert.Equal(t, []any{"openid", "email"}, claims["scopes"])
	assert.Equal(t, c.id, claims["mcp_client"])
	assert.Equal(t, "Test Client", claims["mcp_client_name"])
	assert.Equal(t, "alice@example.com", claims["email"])
	assert.Equal(t, "acme", claims["tenant"], "ID-token attributes reach Decode")
	assert.Equal(t, f.app.ID, claims["app_client"])

	// 7. Refresh rotates.
	status, tok = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	require.Equal(t, http.StatusOK, status, tok)
	access2, refresh2 := tok["access_token"].(string), tok["refresh_token"].(string)
	assert.NotEqual(t, refresh, refresh2)
	resp, _ = f.mcp(access2)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// 8. Revoke the refresh token: the family dies, Cognito's too.
	resp, err := http.PostForm(f.srv.URL+"/revoke", url.Values{"client_id": {c.id}, "token": {refresh2}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, f.pool.RevokedRefreshTokens())
	status, tok = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh2}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "invalid_grant", tok["error"])

	// 9. Access tokens of the family are refused at once on this replica,
	// cached or not.
	resp, _ = f.mcp(access2)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
}

func TestProxyCodeReplay(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	q := c.signIn(nil)
	access, _ := c.redeem(q.Get("code"))
	status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "invalid_grant", out["error"])
	// The replay revoked what the code issued.
	f.clock.Advance(11 * time.Second)
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestProxyCodeRedeemedOnceUnderConcurrency(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	code := c.signIn(nil).Get("code")
	var wins, losses atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
				"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
			resp, err := http.PostForm(f.srv.URL+"/token", form)
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				wins.Add(1)
			case http.StatusUnauthorized:
				losses.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(49), losses.Load())
}

// TestProxyCodeReplayRacesItsRedemption: a replay that comes while the
// code's first redemption is still starting the grant (the code taken, the
// grant not yet written) still revokes what the code issues (RFC 6749
// §4.1.2): the replay waits for the grant's lock, and the tokens the first
// redemption returns are dead.
func TestProxyCodeReplayRacesItsRedemption(t *testing.T) {
	store := &pauseStore{MemoryStore: cognitomcp.NewMemoryStore(), held: make(chan struct{}),
		release: make(chan struct{}), locked: make(chan struct{}, 1)}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	c := f.register(loopbackRedirect)
	code := c.signIn(nil).Get("code")
	require.NotEmpty(t, code)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
	type answer struct {
		status int
		out    map[string]any
		err    error
	}
	post := func(to chan<- answer) {
		resp, err := http.PostForm(f.srv.URL+"/token", form)
		if err != nil {
			to <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var a answer
		a.status, a.err = resp.StatusCode, json.NewDecoder(resp.Body).Decode(&a.out)
		to <- a
	}

	store.armed.Store(true)
	first, replay := make(chan answer, 1), make(chan answer, 1)
	go post(first)
	<-store.held // the first redemption writes the grant
	select {
	case <-store.locked: // its own lock, if it took one
	default:
	}
	go post(replay)
	var r answer
	select {
	case <-store.locked: // the replay waits for the grant's lock
	case r = <-replay: // or it did not
	}
	close(store.release)
	a := <-first
	if r.status == 0 && r.err == nil {
		r = <-replay
	}
	require.NoError(t, a.err)
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusUnauthorized, r.status, r.out)
	assert.Equal(t, "invalid_grant", r.out["error"])
	if a.status != http.StatusOK {
		assert.Equal(t, "invalid_grant", a.out["error"], "either the replay revoked first, or the tokens die")
		return
	}
	rt := a.out["refresh_token"].(string)
	// Dead in the store, not only on this replica: another replica on the
	// same store refuses the refresh token.
	other, err := cognitomcp.NewProxy(t.Context(), f.cfg)
	require.NoError(t, err)
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {rt}, "client_id": {c.id}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	other.Handler(mcpEcho).ServeHTTP(w, req)
	assert.Equal(t, http.StatusUnauthorized, w.Code, "another replica must refuse the code's refresh token")
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	assert.Equal(t, http.StatusUnauthorized, status, "the code's refresh token must be dead: %v", out["error"])
	f.clock.Advance(11 * time.Second)
	resp, _ := f.mcp(a.out["access_token"].(string))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the code's access token must be dead")
}

// pauseStore is a MemoryStore that, once armed, holds the next write of a
// grant until release is closed, closing held when it starts to, and
// reports each lock asked for on locked (when it has room).
type pauseStore struct {
	*cognitomcp.MemoryStore
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
	locked  chan struct{}
}

func (s *pauseStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, "grant:") && s.armed.CompareAndSwap(true, false) {
		close(s.held)
		<-s.release
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func (s *pauseStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	select {
	case s.locked <- struct{}{}:
	default:
	}
	return s.MemoryStore.Lock(ctx, key, ttl)
}

// TestProxyTokenRevokedElsewhereDuringARefresh: an MCP request whose
// sign-in needs Cognito's tokens refreshed, and whose access token another
// replica revokes while that refresh is at Cognito, is refused: the
// revocation is read again after the wait, which can take seconds (the
// grant's lock, Cognito), so the bound stays RevocationCheckInterval.
func TestProxyTokenRevokedElsewhereDuringARefresh(t *testing.T) {
	gate := &gateTransport{arrived: make(chan struct{}), open: make(chan struct{})}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		gate.base = cfg.HTTPClient.Transport
		cfg.HTTPClient = &http.Client{Transport: gate}
		cfg.Store, cfg.AccessTokenTTL = cognitomcp.NewMemoryStore(), 2*time.Hour
	})
	c := f.register(loopbackRedirect)
	access, _ := c.login()
	other, err := cognitomcp.NewProxy(t.Context(), f.cfg) // another replica on the same store
	require.NoError(t, err)
	f.clock.Advance(61 * time.Minute) // Cognito's access token expired: the next MCP request refreshes it
	gate.armed.Store(true)

	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	<-gate.arrived
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/revoke", strings.NewReader(url.Values{"token": {access}, "client_id": {c.id}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	other.Handler(mcpEcho).ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code)
	close(gate.open)
	assert.Equal(t, http.StatusUnauthorized, <-status, "revoked while the request waited")
}

func TestProxyTokenEndpointRules(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	other := f.register(loopbackRedirect)
	tests := []struct {
		name       string
		client     *oauthClient
		edit       func(url.Values)
		wantStatus int
		wantError  string
	}{
		{"wrong PKCE verifier", c, func(v url.Values) { v.Set("code_verifier", strings.Repeat("w", 43)) }, 401, "invalid_grant"},
		{"missing PKCE verifier", c, func(v url.Values) { v.Del("code_verifier") }, 400, "invalid_request"},
		{"verifier too short", c, func(v url.Values) { v.Set("code_verifier", "short") }, 400, "invalid_request"},
		{"verifier too long", c, func(v url.Values) { v.Set("code_verifier", strings.Repeat("v", 129)) }, 400, "invalid_request"},
		{"another redirect_uri", c, func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:8976/other") }, 401, "invalid_grant"},
		{"another client", other, nil, 401, "invalid_grant"},
		{"unknown client", c, func(v url.Values) { v.Set("client_id", "nobody") }, 401, "invalid_client"},
		{"resource mismatch", c, func(v url.Values) { v.Set("resource", "https://elsewhere.example/mcp") }, 400, "invalid_target"},
		{"unsupported grant", c, func(v url.Values) { v.Set("grant_type", "password") }, 400, "unsupported_grant_type"},
		{"client_credentials", c, func(v url.Values) { v.Set("grant_type", "client_credentials") }, 400, "unsupported_grant_type"},
		{"expired code", c, nil, 401, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code := c.signIn(nil).Get("code")
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {tc.client.id},
				"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
			if tc.edit != nil {
				tc.edit(form)
			}
			if tc.name == "expired code" {
				f.clock.Advance(6 * time.Minute)
				defer f.clock.Advance(-6 * time.Minute)
			}
			status, out := tc.client.token(form)
			assert.Equal(t, tc.wantStatus, status, out)
			assert.Equal(t, tc.wantError, out["error"])
			assert.NotContains(t, out, "access_token")
		})
	}
}

func TestProxyAuthorizeRules(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	tests := []struct {
		name     string
		edit     func(url.Values)
		wantPage int    // status of an error page (no redirect); 0 when it redirects with an error
		wantErr  string // error code on the redirect
	}{
		{"unknown client never redirects", func(v url.Values) { v.Set("client_id", "nobody") }, 400, ""},
		{"redirect to another path", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:8976/evil") }, 400, ""},
		{"redirect to another host", func(v url.Values) { v.Set("redirect_uri", "http://evil.example:8976/callback") }, 400, ""},
		{"redirect with userinfo", func(v url.Values) { v.Set("redirect_uri", "http://user@127.0.0.1:8976/callback") }, 400, ""},
		{"redirect with dot segments", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:8976/x/../callback") }, 400, ""},
		{"javascript redirect", func(v url.Values) { v.Set("redirect_uri", "javascript:alert(1)") }, 400, ""},
		{"PKCE missing", func(v url.Values) { v.Del("code_challenge") }, 0, "invalid_request"},
		{"PKCE plain", func(v url.Values) { v.Set("code_challenge_method", "plain") }, 0, "invalid_request"},
		{"PKCE method missing", func(v url.Values) { v.Del("code_challenge_method") }, 0, "invalid_request"},
		{"response_type token", func(v url.Values) { v.Set("response_type", "token") }, 0, "unsupported_response_type"},
		{"response_type missing", func(v url.Values) { v.Del("response_type") }, 0, "invalid_request"},
		{"resource of another server", func(v url.Values) { v.Set("resource", "https://other.example/mcp") }, 0, "invalid_target"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.get(c.authorizeURL(tc.edit))
			if tc.wantPage != 0 {
				assert.Equal(t, tc.wantPage, resp.StatusCode)
				assert.Empty(t, resp.Header.Get("Location"), "an untrusted redirect is never followed")
				assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
				assert.NotContains(t, body, "evil.example")
				return
			}
			back := location(t, resp)
			assert.Equal(t, "127.0.0.1:8976", back.Host)
			assert.Equal(t, tc.wantErr, back.Query().Get("error"))
			assert.Equal(t, "client-state", back.Query().Get("state"))
			assert.Equal(t, f.proxy.Issuer(), back.Query().Get("iss"))
		})
	}
	t.Run("loopback with another port accepted", func(t *testing.T) {
		resp, body := c.get(c.authorizeURL(func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:5555/callback") }))
		require.Equal(t, http.StatusFound, resp.StatusCode, body)
		assert.Contains(t, location(t, resp).Path, "/consent")
	})
}

// TestProxyTokenForAnotherResourceRefused: a's access token at another MCP
// endpoint of the same server (the same BaseURL, keys and store, so the
// same issuer, signature and grant) is refused: only the audience tells
// the tokens apart.
func TestProxyTokenForAnotherResourceRefused(t *testing.T) {
	store := cognitomcp.NewMemoryStore()
	a := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.Store = store })
	access, _ := a.register(loopbackRedirect).login()
	resp, _ := a.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cfg := a.cfg
	cfg.MCPPath = "/other"
	other, err := cognitomcp.NewProxy(t.Context(), cfg)
	require.NoError(t, err)
	require.Equal(t, a.proxy.Issuer(), other.Issuer())
	req := httptest.NewRequest(http.MethodPost, other.Resource(), strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+access)
	rec := httptest.NewRecorder()
	other.Handler(mcpEcho).ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
	assert.Contains(t, a.logs.String(), "token issued for another resource", "refused by the audience check")
}

func TestProxyRefreshRotation(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	_, rt1 := c.login()
	refresh := func(rt string) (int, map[string]any) {
		return c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	status, first := refresh(rt1)
	require.Equal(t, http.StatusOK, status, first)

	t.Run("duplicate within the grace period gets the same answer", func(t *testing.T) {
		f.clock.Advance(10 * time.Second)
		status, again := refresh(rt1)
		require.Equal(t, http.StatusOK, status, again)
		assert.Equal(t, first["access_token"], again["access_token"])
		assert.Equal(t, first["refresh_token"], again["refresh_token"])
	})
	t.Run("replay after the grace period revokes the family", func(t *testing.T) {
		f.clock.Advance(time.Minute)
		status, out := refresh(rt1)
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, "invalid_grant", out["error"])
		status, out = refresh(first["refresh_token"].(string))
		assert.Equal(t, http.StatusUnauthorized, status, "the newest token of the family died too")
		assert.Equal(t, "invalid_grant", out["error"])
	})
	t.Run("a refresh token of another client is refused", func(t *testing.T) {
		_, rt := c.login()
		other := f.register(loopbackRedirect)
		status, out := other.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, "invalid_grant", out["error"])
	})
	t.Run("scope can only narrow", func(t *testing.T) {
		_, rt := c.login()
		status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid profile"}})
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Equal(t, "invalid_scope", out["error"])
		status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid"}})
		require.Equal(t, http.StatusOK, status, out)
		assert.Equal(t, "openid", out["scope"])
		// offline_access, accepted at /authorize, and repeats are dropped
		// here too.
		status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)},
			"scope": {"openid offline_access openid"}})
		require.Equal(t, http.StatusOK, status, out)
		assert.Equal(t, "openid", out["scope"])
	})
}

func TestProxyRefreshesCognito(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	_, rt := c.login()
	before := f.pool.TokenGrants("refresh_token")

	// Within Cognito's token life the proxy does not call Cognito.
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, before, f.pool.TokenGrants("refresh_token"))

	// Past it, a request refreshes Cognito transparently, once.
	f.clock.Advance(61 * time.Minute)
	resp, _ := f.mcp(out["access_token"].(string))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the proxy token itself expired too")
	status, out = c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, before+1, f.pool.TokenGrants("refresh_token"))
	resp, claims := f.mcp(out["access_token"].(string))
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	assert.Equal(t, "alice", claims["username"])
}

func TestProxyAccessTokenRevocation(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	access, rt := c.login()
	resp, _ := f.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r, err := http.PostForm(f.srv.URL+"/revoke", url.Values{"client_id": {c.id}, "token": {access}, "token_type_hint": {"access_token"}})
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, http.StatusOK, r.StatusCode)
	resp, _ = f.mcp(access)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "refused at once on the replica that revoked")
	// The refresh token still works: only that access token was revoked.
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	assert.Equal(t, http.StatusOK, status, out)
	// Unknown tokens get 200 (RFC 7009).
	r, err = http.PostForm(f.srv.URL+"/revoke", url.Values{"client_id": {c.id}, "token": {"nonsense"}})
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, http.StatusOK, r.StatusCode)
}

func TestProxyConsent(t *testing.T) {
	f := newProxyFixture(t, nil)
	c := f.register(loopbackRedirect)
	start := func() url.Values {
		resp, body := c.get(c.authorizeURL(nil))
		require.Equal(t, http.StatusFound, resp.StatusCode, body)
		form, _ := c.consentForm(location(t, resp).String())
		return form
	}
	t.Run("denied returns access_denied", func(t *testing.T) {
		form := start()
		form.Set("action", "deny")
		resp, _ := c.postForm(f.srv.URL+"/consent", form)
		back := location(t, resp)
		assert.Equal(t, "access_denied", back.Query().Get("error"))
		assert.Equal(t, "client-state", back.Query().Get("state"))
	})
	t.Run("CSRF token missing", func(t *testing.T) {
		form := start()
		form.Del("csrf")
		form.Set("action", "approve")
		resp, _ := c.postForm(f.srv.URL+"/consent", form)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("CSRF token forged", func(t *testing.T) {
		form := start()
		form.Set("csrf", strings.Repeat("A", 43))
		form.Set("action", "approve")
		resp, _ := c.postForm(f.srv.URL+"/consent", form)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("CSRF cookie missing", func(t *testing.T) {
		form := start()
		form.Set("action", "approve")
		stranger := f.newClient(c.id, c.redirect)
		resp, _ := stranger.postForm(f.srv.URL+"/consent", form)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("Allow twice (a double click) gets the same redirect, and the sign-in completes", func(t *testing.T) {
		form := start()
		form.Set("action", "approve")
		first, _ := c.postForm(f.srv.URL+"/consent", form)
		require.Equal(t, http.StatusFound, first.StatusCode)
		second, body := c.postForm(f.srv.URL+"/consent", form)
		require.Equal(t, http.StatusFound, second.StatusCode, "not the 403 of a forged form: %s", body)
		assert.Equal(t, location(t, first).String(), location(t, second).String())
		resp, _ := c.get(location(t, second).String()) // Cognito, which signs alice in
		resp, body = c.get(location(t, resp).String()) // the callback
		require.Equal(t, http.StatusFound, resp.StatusCode, body)
		assert.NotEmpty(t, location(t, resp).Query().Get("code"))
	})
	t.Run("CSRF token replayed in another browser", func(t *testing.T) {
		form := start()
		form.Set("action", "approve")
		resp, _ := c.postForm(f.srv.URL+"/consent", form)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		other := f.newClient(c.id, c.redirect)
		u, _ := url.Parse(f.srv.URL)
		for _, k := range c.browser.Jar.Cookies(u) {
			if k.Value == form.Get("csrf") { // the double-submit cookie, which the attacker can set in its own browser
				other.browser.Jar.SetCookies(u, []*http.Cookie{{Name: k.Name, Value: k.Value, Path: "/"}})
			}
		}
		resp, _ = other.postForm(f.srv.URL+"/consent", form)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("binding cookie missing at the callback", func(t *testing.T) {
		form := start()
		form.Set("action", "approve")
		resp, _ := c.postForm(f.srv.URL+"/consent", form)
		cognito := location(t, resp)
		resp, _ = c.get(cognito.String())
		callback := location(t, resp)
		victim := f.newClient(c.id, c.redirect) // another browser
		resp, body := victim.get(callback.String())
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Empty(t, resp.Header.Get("Location"))
		assert.Contains(t, body, "another browser")
	})
	t.Run("page headers", func(t *testing.T) {
		resp, _ := c.get(c.authorizeURL(nil))
		page, _ := c.get(location(t, resp).String())
		assert.Equal(t, "DENY", page.Header.Get("X-Frame-Options"))
		assert.Contains(t, page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
		assert.Contains(t, page.Header.Get("Content-Security-Policy"), "default-src 'none'")
	})
}

func TestProxyCognitoFailureAtCallback(t *testing.T) {
	t.Run("Cognito error", func(t *testing.T) {
		f := newProxyFixture(t, nil)
		c := f.register(loopbackRedirect)
		f.pool.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Status: 500})
		q := c.signIn(nil)
		assert.Equal(t, "server_error", q.Get("error"))
		assert.Empty(t, q.Get("code"))
		assert.Equal(t, "client-state", q.Get("state"))
	})
	for upstream, want := range map[string]string{
		"access_denied": "access_denied", "temporarily_unavailable": "temporarily_unavailable",
		"invalid_scope": "server_error", "unauthorized_client": "server_error",
	} {
		t.Run("Cognito sends back "+upstream, func(t *testing.T) {
			f := newProxyFixture(t, nil)
			c := f.register(loopbackRedirect)
			state := c.approve(nil).Query().Get("state")
			callback := f.srv.URL + "/auth/callback?" + url.Values{"error": {upstream}, "error_description": {"Cognito's own words"}, "state": {state}}.Encode()
			resp, body := c.get(callback)
			require.Equal(t, http.StatusFound, resp.StatusCode, body)
			q := location(t, resp).Query()
			assert.Equal(t, want, q.Get("error"))
			assert.Equal(t, "client-state", q.Get("state"))
			assert.NotContains(t, q.Get("error_description"), "Cognito's own words")
			assert.NotContains(t, f.logs.String(), "Cognito's own words")
			assert.Equal(t, want != "access_denied", strings.Contains(f.logs.String(), "level=ERROR"), "a denial is no server error: %s", f.logs)
		})
	}
	t.Run("token that fails verification gives no code", func(t *testing.T) {
		var pool *cognitotest.UserPool
		f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
			// Cognito answers the exchange with an access token of another app client.
			cfg.HTTPClient = &http.Client{Transport: swapTokenTransport{base: cfg.HTTPClient.Transport, mint: func() string {
				return pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: "another-app-client"})
			}}}
		})
		pool = f.pool
		c := f.register(loopbackRedirect)
		q := c.signIn(nil)
		assert.Equal(t, "server_error", q.Get("error"))
		assert.Empty(t, q.Get("code"))
		assert.Contains(t, f.logs.String(), "failed verification at the callback")
	})
}

// swapTokenTransport replaces the access token in Cognito's token responses.
type swapTokenTransport struct {
	base http.RoundTripper
	mint func() string
}

func (s swapTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/oauth2/token") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	var body map[string]any
	if err := jsonDecode(resp.Body, &body); err != nil {
		return nil, err
	}
	resp.Body.Close()
	body["access_token"] = s.mint()
	b, _ := json.Marshal(body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestProxyBaseURLCanonical: the proxy uses BaseURL in the form clients
// compute (new URL(prm.resource).href): lower-case scheme and host, no
// default port, no trailing slash; with "HTTP://…/" a client signs in and
// calls the MCP endpoint, and "https://MCP.Example.com:443/" gives
// https://mcp.example.com/mcp.
func TestProxyBaseURLCanonical(t *testing.T) {
	var base string
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		base = cfg.BaseURL
		cfg.BaseURL = strings.Replace(cfg.BaseURL, "http://", "HTTP://", 1) + "/"
	})
	assert.Equal(t, base+"/mcp", f.proxy.Resource())
	c := f.register(loopbackRedirect)
	access, _ := c.login()
	resp, _ := f.mcp(access)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	g := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.BaseURL = "https://MCP.Example.com:443/" })
	assert.Equal(t, "https://mcp.example.com", g.proxy.Issuer())
	assert.Equal(t, "https://mcp.example.com/mcp", g.proxy.Resource())
	assert.Equal(t, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", g.proxy.ResourceMetadataURL())

	// Origins compare in the form browsers send: the default (BaseURL's)
	// and configured ones alike.
	origin := func(p *cognitomcp.Proxy, o string) int {
		req := httptest.NewRequest(http.MethodOptions, p.Resource(), nil)
		req.Header.Set("Origin", o)
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		p.Handler(mcpEcho).ServeHTTP(rec, req)
		return rec.Code
	}
	assert.Equal(t, http.StatusNoContent, origin(g.proxy, "https://mcp.example.com"), "BaseURL's origin")
	h := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { cfg.AllowedOrigins = []string{"HTTPS://Inspector.Example:443/"} })
	assert.Equal(t, http.StatusNoContent, origin(h.proxy, "https://inspector.example"), "a configured origin")
	assert.Equal(t, http.StatusForbidden, origin(h.proxy, "https://other.example"))
}

func TestProxyMetadata(t *testing.T) {
	f := newProxyFixture(t, nil)
	get := func(path string) (*http.Response, map[string]any) {
		resp, err := http.Get(f.srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = jsonDecode(resp.Body, &out)
		return resp, out
	}
	resp, prm := get("/.well-known/oauth-protected-resource/mcp")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, f.srv.URL+"/mcp", prm["resource"], "C4: resource is BaseURL+MCPPath byte for byte")
	assert.Equal(t, []any{f.srv.URL}, prm["authorization_servers"], "C5")
	assert.Equal(t, []any{"openid", "email", "profile"}, prm["scopes_supported"], "C6")
	assert.Equal(t, []any{"header"}, prm["bearer_methods_supported"])
	assert.Equal(t, strings.TrimPrefix(f.srv.URL, "http://"), prm["resource_name"], "ServiceName, by default BaseURL's host")
	_, root := get("/.well-known/oauth-protected-resource")
	assert.Equal(t, prm["resource"], root["resource"], "C2: the root document describes the one endpoint")

	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, as := get(path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, f.srv.URL, as["issuer"], "F3")
		assert.Equal(t, f.srv.URL+"/authorize", as["authorization_endpoint"])
		assert.Equal(t, f.srv.URL+"/token", as["token_endpoint"])
		assert.Equal(t, f.srv.URL+"/register", as["registration_endpoint"])
		assert.Equal(t, f.srv.URL+"/revoke", as["revocation_endpoint"])
		assert.Equal(t, []any{"code"}, as["response_types_supported"])
		assert.Equal(t, []any{"S256"}, as["code_challenge_methods_supported"])
		assert.Equal(t, []any{"authorization_code", "refresh_token"}, as["grant_types_supported"])
		assert.Equal(t, []any{"none"}, as["token_endpoint_auth_methods_supported"])
		assert.Equal(t, true, as["authorization_response_iss_parameter_supported"])
		assert.Equal(t, true, as["client_id_metadata_document_supported"])
		assert.Contains(t, as, "jwks_uri", "F5")
		assert.Contains(t, as, "subject_types_supported", "F5")
		assert.Contains(t, as, "id_token_signing_alg_values_supported", "F5")
	}
	resp, _ = get("/.well-known/nope")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "C3: unknown well-known paths are 404")
	resp, _ = get("/.well-known/oauth-protected-resource/nope")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"), "a browser-based client reads the 404 and moves on")
	req, _ := http.NewRequest(http.MethodOptions, f.srv.URL+"/.well-known/oauth-authorization-server/mcp", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "the preflight of a document the proxy does not have")
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
}

// TestProxyMetadataUnderAPath: with a path in BaseURL, the authorization
// server metadata is at the RFC 8414 URL with the path, and at the root
// too, which some clients ask whatever the issuer's path.
func TestProxyMetadataUnderAPath(t *testing.T) {
	var base string
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) { base = cfg.BaseURL + "/tools"; cfg.BaseURL = base })
	for _, path := range []string{"/.well-known/oauth-authorization-server/tools", "/.well-known/oauth-authorization-server",
		"/.well-known/openid-configuration", "/tools/.well-known/openid-configuration"} {
		resp, err := http.Get(f.srv.URL + path)
		require.NoError(t, err)
		var as map[string]any
		require.NoError(t, jsonDecode(resp.Body, &as))
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, base, as["issuer"], path)
		assert.Equal(t, base+"/token", as["token_endpoint"], path)
	}
}

func TestProxyOriginCheck(t *testing.T) {
	f := newProxyFixture(t, nil)
	req, _ := http.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader("{}"))
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "A2: a foreign Origin is refused before auth")
	assert.Empty(t, resp.Header.Get("WWW-Authenticate"))
}

// TestMCPPathFrames: a request in progress holds at most two frames of the
// library's on its goroutine's stack through Proxy.Handler, one through
// RequireToken (the chain of closures it replaced held six and two): every
// GC cycle scans the stacks of the requests in progress (BENCHMARKS.md, the
// runtime's account).
func TestMCPPathFrames(t *testing.T) {
	f := newProxyFixture(t, nil)
	access, _ := f.register(loopbackRedirect).login()
	var frames []string // between the handler and this test
	probe := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pcs := make([]uintptr, 64)
		it := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)]) // above probe and HandlerFunc.ServeHTTP
		for more := true; more; {
			var fr runtime.Frame
			fr, more = it.Next()
			if strings.HasSuffix(fr.Function, ".TestMCPPathFrames") {
				break
			}
			frames = append(frames, fr.Function)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	for name, tc := range map[string]struct {
		h    http.Handler
		want int
	}{"Handler": {f.proxy.Handler(probe), 2}, "RequireToken": {f.proxy.RequireToken()(probe), 1}} {
		frames = nil
		req := httptest.NewRequest(http.MethodPost, f.proxy.Resource(), nil)
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("Origin", f.srv.URL)
		w := httptest.NewRecorder()
		tc.h.ServeHTTP(w, req)
		require.Equal(t, http.StatusNoContent, w.Code, name)
		assert.LessOrEqual(t, len(frames), tc.want, "%s: %v", name, frames)
	}
}
