package cognitomcp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

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
		authorize := func(site string) string {
			req, _ := http.NewRequest(http.MethodGet, c.authorizeURL(nil), nil)
			if site != "" {
				req.Header.Set("Sec-Fetch-Site", site)
			}
			resp, err := c.browser.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return location(t, resp).Path
		}
		assert.Equal(t, "/oauth2/authorize", authorize("none"), "remembered: straight to Cognito")
		assert.Equal(t, "/consent", authorize("cross-site"), "pushed by another site: ask again")
		assert.Equal(t, "/consent", authorize(""), "no Fetch metadata: ask again")

		// prompt=consent asks again, whether the request comes as a GET or
		// as a POST (RFC 6749 §3.1 allows both).
		withPrompt := func(q url.Values) { q.Set("prompt", "consent") }
		req, _ := http.NewRequest(http.MethodGet, c.authorizeURL(withPrompt), nil)
		req.Header.Set("Sec-Fetch-Site", "none")
		resp, err := c.browser.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "/consent", location(t, resp).Path, "prompt=consent in the query")
		u, _ := url.Parse(c.authorizeURL(withPrompt))
		req, _ = http.NewRequest(http.MethodPost, f.srv.URL+"/authorize", strings.NewReader(u.RawQuery))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "none")
		resp, err = c.browser.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "/consent", location(t, resp).Path, "prompt=consent in a POST body")
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
