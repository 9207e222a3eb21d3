package cognitomcp_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// syncBuffer is a log or output buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer

// proxyFixture is a fake Cognito pool, a Proxy in front of it serving an
// MCP stand-in that echoes the claims, and the logs of both.
type proxyFixture struct {
	t         *testing.T
	responses *responseLog
	pool      *cognitotest.UserPool
	app       *cognitotest.Client
	proxy     *cognitomcp.Proxy
	srv       *httptest.Server
	clock     *testClock
	logs      *syncBuffer
	cfg       cognitomcp.ProxyConfig
}

// mcpEcho is the protected endpoint of the fixture: it answers the claims.
var mcpEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := cognitomcp.ClaimsFromContext(r.Context())
	if !ok {
		http.Error(w, "no claims", http.StatusInternalServerError)
		return
	}
	var email struct {
		Email  string `json:"email"`
		Tenant string `json:"custom:tenant"`
	}
	_ = c.Decode(&email)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sub": c.Subject, "username": c.Username, "groups": c.Groups, "scopes": c.Scopes,
		"mcp_client": c.MCPClient.ID, "mcp_client_name": c.MCPClient.Name, "email": c.Email,
		"raw_email": email.Email, "tenant": email.Tenant, "app_client": c.ClientID,
	})
})

// testMasterSecret is the fixture proxies' key material.
var testMasterSecret = bytes.Repeat([]byte("k"), 32)

func newProxyFixture(t *testing.T, mod func(*cognitomcp.ProxyConfig)) *proxyFixture {
	t.Helper()
	clock := newTestClock()
	return newProxyFixtureOn(t, newTestPool(t, clock), clock, mod)
}

// newTestPool is a fake Cognito pool with alice (groups admin and staff, a
// custom attribute) and bob (no group), signing alice in automatically.
func newTestPool(t *testing.T, clock *testClock) *cognitotest.UserPool {
	t.Helper()
	pool := cognitotest.NewUserPool(cognitotest.Options{Now: clock.Now})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com",
		Groups: []string{"admin", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	pool.AddUser(cognitotest.User{Username: "bob", Password: "bob-pw-1", Email: "bob@example.com"})
	pool.SetAutoLogin("alice")
	return pool
}

// newProxyFixtureOn builds a proxy fixture on an existing pool and clock:
// its own server, app client, logs and proxy.
func newProxyFixtureOn(t *testing.T, pool *cognitotest.UserPool, clock *testClock, mod func(*cognitomcp.ProxyConfig)) *proxyFixture {
	t.Helper()
	f := &proxyFixture{t: t, clock: clock, pool: pool, logs: &syncBuffer{}, responses: &responseLog{}}
	var handler http.Handler = http.NotFoundHandler()
	f.srv = httptest.NewServer(f.responses.record(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) })))
	t.Cleanup(f.srv.Close)
	f.app = f.pool.AddClient(cognitotest.Client{Secret: "upstream-secret-value", CallbackURLs: []string{f.srv.URL + "/auth/callback"}})
	f.cfg = cognitomcp.ProxyConfig{
		IssuerURL: f.pool.Issuer, ClientID: f.app.ID, ClientSecret: "upstream-secret-value",
		BaseURL: f.srv.URL, Keys: cognitomcp.KeyConfig{MasterSecret: testMasterSecret},
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    f.clock.Now, HTTPClient: f.pool.HTTPClient(),
		RateLimits: cognitomcp.RateLimits{Register: 1000, Authorize: 1000, Token: 1000},
	}
	if mod != nil {
		mod(&f.cfg)
	}
	p, err := cognitomcp.NewProxy(t.Context(), f.cfg)
	require.NoError(t, err)
	f.proxy = p
	handler = p.Handler(mcpEcho)
	return f
}

// oauthClient is an MCP client as the TypeScript SDK behaves: it registers,
// runs the authorization code flow with PKCE through a browser (a cookie
// jar that does not follow redirects, so each step is visible), and calls
// the MCP endpoint.
type oauthClient struct {
	f        *proxyFixture
	id       string
	redirect string
	browser  *http.Client
	verifier string
}

func (f *proxyFixture) register(redirect string) *oauthClient {
	f.t.Helper()
	body := `{"client_name":"Test Client","redirect_uris":["` + redirect + `"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`
	resp, err := http.Post(f.srv.URL+"/register", "application/json", strings.NewReader(body))
	require.NoError(f.t, err)
	defer resp.Body.Close()
	require.Equal(f.t, http.StatusCreated, resp.StatusCode)
	var reg struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(f.t, json.NewDecoder(resp.Body).Decode(&reg))
	return f.newClient(reg.ClientID, redirect)
}

func (f *proxyFixture) newClient(id, redirect string) *oauthClient {
	jar, _ := cookiejar.New(nil)
	return &oauthClient{f: f, id: id, redirect: redirect, verifier: strings.Repeat("v", 43),
		browser: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is the /authorize URL with the usual parameters, edited by mod.
func (c *oauthClient) authorizeURL(mod func(url.Values)) string {
	q := url.Values{"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect},
		"code_challenge": {challengeOf(c.verifier)}, "code_challenge_method": {"S256"}, "state": {"client-state"},
		"scope": {"openid email"}, "resource": {c.f.proxy.Resource()}}
	if mod != nil {
		mod(q)
	}
	return c.f.srv.URL + "/authorize?" + q.Encode()
}

// get sends a browser GET and returns the response with its body read.
func (c *oauthClient) get(u string) (*http.Response, string) {
	c.f.t.Helper()
	resp, err := c.browser.Get(u)
	require.NoError(c.f.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *oauthClient) postForm(u string, form url.Values) (*http.Response, string) {
	c.f.t.Helper()
	resp, err := c.browser.PostForm(u, form)
	require.NoError(c.f.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	hiddenInput = regexp.MustCompile(`name="(txn|csrf)" value="([^"]*)"`)
	hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

func htmlUnescape(s string) string { return html.UnescapeString(s) }

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// consentForm fetches the consent page and returns its hidden fields.
func (c *oauthClient) consentForm(consentURL string) (url.Values, string) {
	c.f.t.Helper()
	resp, body := c.get(consentURL)
	require.Equal(c.f.t, http.StatusOK, resp.StatusCode, body)
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	require.NotEmpty(c.f.t, form.Get("csrf"))
	return form, body
}

// location resolves a redirect's Location against the request URL.
func location(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	require.Contains(t, []int{http.StatusFound, http.StatusSeeOther}, resp.StatusCode)
	u, err := resp.Location()
	require.NoError(t, err)
	return u
}

// signIn runs /authorize → consent (approve) → Cognito (auto-login) →
// callback and returns the query the client's redirect URI receives.
func (c *oauthClient) signIn(mod func(url.Values)) url.Values {
	c.f.t.Helper()
	t := c.f.t
	resp, body := c.get(c.authorizeURL(mod))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	next := location(t, resp)
	if strings.HasSuffix(next.Path, "/consent") {
		form, _ := c.consentForm(next.String())
		form.Set("action", "approve")
		resp, body = c.postForm(c.f.srv.URL+"/consent", form)
		require.Equal(t, http.StatusFound, resp.StatusCode, body)
		next = location(t, resp)
	}
	// Cognito's authorize endpoint, which with auto-login answers at once.
	resp, body = c.get(next.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	callback := location(t, resp)
	require.True(t, strings.HasPrefix(callback.String(), c.f.srv.URL+"/auth/callback"), callback.String())
	resp, body = c.get(callback.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	back := location(t, resp)
	return back.Query()
}

// approve runs /authorize (its query edited by mod) and Allow on the
// consent page, and returns where the proxy sends the browser next:
// Cognito's authorization endpoint.
func (c *oauthClient) approve(mod func(url.Values)) *url.URL {
	c.f.t.Helper()
	return c.answerConsent(mod, "approve")
}

// answerConsent runs /authorize (its query edited by mod) and answers the
// consent page with action ("approve", "deny"), and returns where the
// proxy sends the browser next.
func (c *oauthClient) answerConsent(mod func(url.Values), action string) *url.URL {
	c.f.t.Helper()
	t := c.f.t
	resp, body := c.get(c.authorizeURL(mod))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	form, _ := c.consentForm(location(t, resp).String())
	form.Set("action", action)
	resp, body = c.postForm(c.f.srv.URL+"/consent", form)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	return location(t, resp)
}

// token posts to /token and decodes the JSON answer.
func (c *oauthClient) token(form url.Values) (int, map[string]any) {
	c.f.t.Helper()
	if form.Get("client_id") == "" {
		form.Set("client_id", c.id)
	}
	resp, err := http.PostForm(c.f.srv.URL+"/token", form)
	require.NoError(c.f.t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(c.f.t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

// redeem exchanges a code for tokens and requires success.
func (c *oauthClient) redeem(code string) (access, refresh string) {
	c.f.t.Helper()
	status, out := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}, "resource": {c.f.proxy.Resource()}})
	require.Equal(c.f.t, http.StatusOK, status, out)
	return out["access_token"].(string), out["refresh_token"].(string)
}

// login is register-once + signIn + redeem.
func (c *oauthClient) login() (access, refresh string) {
	c.f.t.Helper()
	q := c.signIn(nil)
	require.NotEmpty(c.f.t, q.Get("code"), q)
	return c.redeem(q.Get("code"))
}

// mcp calls the protected endpoint with a token.
func (f *proxyFixture) mcp(token string) (*http.Response, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader(`{}`))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp, out
}

// responseLog keeps every response the fixture's server wrote, so tests can
// search them for what must never leak.
type responseLog struct {
	mu   sync.Mutex
	list []recordedResponse
}

type recordedResponse struct {
	Path   string
	Status int
	Header http.Header
	Body   string
}

func (l *responseLog) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		l.mu.Lock()
		l.list = append(l.list, recordedResponse{Path: r.URL.Path, Status: rec.Code, Header: rec.Header().Clone(), Body: rec.Body.String()})
		l.mu.Unlock()
	})
}

func (l *responseLog) all() []recordedResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recordedResponse(nil), l.list...)
}
