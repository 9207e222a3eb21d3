package cognitomcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/cognitomcp/cognitomcp/cognitotest"
	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// registerTestFixture is a Proxy in front of a fake pool, for the
// registration and lookup tests, with its clock and logs.
type registerTestFixture struct {
	p     *Proxy
	pool  *cognitotest.UserPool
	app   *cognitotest.Client
	clock *stepClock
	logs  *registerLogBuffer
}

// registerLogBuffer is a log or output buffer safe for concurrent writers.
type registerLogBuffer = syncbuf.Buffer

// newRegisterTestProxy builds a Proxy with scopes openid email profile
// mcp-api/read, a cursor:// redirect pattern, and cfg edited by mod.
func newRegisterTestProxy(t *testing.T, mod func(*ProxyConfig)) *registerTestFixture {
	t.Helper()
	fx := &registerTestFixture{clock: newStepClock(), logs: &registerLogBuffer{}}
	fx.pool = cognitotest.NewUserPool(cognitotest.Options{Now: fx.clock.Now})
	t.Cleanup(fx.pool.Close)
	const base = "http://127.0.0.1:8931"
	fx.app = fx.pool.AddClient(cognitotest.Client{Secret: "x", CallbackURLs: []string{base + "/auth/callback"}})
	cfg := ProxyConfig{
		IssuerURL: fx.pool.Issuer, ClientID: fx.app.ID, ClientSecret: "x", BaseURL: base,
		Keys:                KeyConfig{MasterSecret: bytes.Repeat([]byte{7}, 32)},
		Scopes:              []string{"openid", "email", "profile", "mcp-api/read"},
		AllowedRedirectURIs: []string{"cursor://anysphere.cursor-mcp/oauth/callback"},
		HTTPClient:          fx.pool.HTTPClient(),
		Now:                 fx.clock.Now,
		Logger:              slog.New(slog.NewTextHandler(fx.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewProxy(t.Context(), cfg)
	require.NoError(t, err)
	fx.p = p
	return fx
}

// register POSTs body to /register from ip and returns the recorder.
func (fx *registerTestFixture) register(body, contentType, ip string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8931/register", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.RemoteAddr = ip + ":40000"
	w := httptest.NewRecorder()
	fx.p.ServeHTTP(w, req)
	return w
}

// The DCR bodies real clients send (MCP checklist G4).
const (
	tsSDKRegistration = `{"client_name":"ts-client-oauth","redirect_uris":["http://127.0.0.1:8976/callback"],` +
		`"grant_types":["authorization_code","refresh_token"],"response_types":["code"],` +
		`"token_endpoint_auth_method":"none","scope":"openid email profile"}`
	mcpRemoteRegistration = `{"redirect_uris":["http://localhost:3334/oauth/callback"],"token_endpoint_auth_method":"none",` +
		`"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"MCP CLI Client",` +
		`"client_uri":"https://github.com/modelcontextprotocol/mcp-cli","software_id":"2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",` +
		`"software_version":"0.15.1","scope":"mcp-api/read offline_access","application_type":"native"}`
	inspectorRegistration = `{"redirect_uris":["http://127.0.0.1:6276/oauth/callback"],"token_endpoint_auth_method":"none",` +
		`"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"MCP Inspector",` +
		`"client_uri":"https://github.com/modelcontextprotocol/inspector","scope":"mcp-api/read offline_access",` +
		`"application_type":"native"}`
)

// regBody is a minimal valid registration edited by mod.
func regBody(mod func(map[string]any)) string {
	m := map[string]any{"client_name": "Test", "redirect_uris": []string{"http://127.0.0.1:9000/cb"}}
	if mod != nil {
		mod(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func manyRedirects(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("http://127.0.0.1:9000/cb%d", i)
	}
	return out
}

func TestRegisterHandler(t *testing.T) {
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.RateLimits.Register = -1 })
	type response = map[string]any
	cases := []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string // error code, for failures
		then        func(t *testing.T, r response)
	}{
		{name: "TypeScript SDK", body: tsSDKRegistration, status: 201, then: func(t *testing.T, r response) {
			assert.Equal(t, []any{"http://127.0.0.1:8976/callback"}, r["redirect_uris"])
			assert.Equal(t, "ts-client-oauth", r["client_name"])
			assert.Equal(t, "openid email profile", r["scope"])
			assert.Equal(t, []any{"authorization_code", "refresh_token"}, r["grant_types"])
			assert.Equal(t, []any{"code"}, r["response_types"])
		}},
		{name: "mcp-remote", body: mcpRemoteRegistration, status: 201, then: func(t *testing.T, r response) {
			assert.Equal(t, []any{"http://localhost:3334/oauth/callback"}, r["redirect_uris"])
			assert.Equal(t, "mcp-api/read", r["scope"], "offline_access dropped")
			assert.Equal(t, "0.15.1", r["software_version"])
			assert.Equal(t, "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d", r["software_id"])
			assert.Equal(t, "https://github.com/modelcontextprotocol/mcp-cli", r["client_uri"])
			assert.Equal(t, "native", r["application_type"])
		}},
		{name: "MCP Inspector", body: inspectorRegistration, status: 201, then: func(t *testing.T, r response) {
			assert.Equal(t, []any{"http://127.0.0.1:6276/oauth/callback"}, r["redirect_uris"])
			assert.Equal(t, "MCP Inspector", r["client_name"])
			assert.Equal(t, "mcp-api/read", r["scope"])
		}},
		{name: "client_secret_basic asked, public client given", status: 201,
			body: regBody(func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_basic" })},
		{name: "client_secret_post asked, public client given", status: 201,
			body: regBody(func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_post" })},
		{name: "private_key_jwt asked with none among the methods supported, public client given", status: 201,
			body: regBody(func(m map[string]any) {
				m["token_endpoint_auth_method"] = "private_key_jwt"
				m["token_endpoint_auth_methods_supported"] = []string{"none", "private_key_jwt"}
			})},
		{name: "auth method omitted", body: regBody(nil), status: 201, then: func(t *testing.T, r response) {
			assert.Equal(t, "openid email profile mcp-api/read", r["scope"], "default: every scope")
			assert.Equal(t, []any{"authorization_code", "refresh_token"}, r["grant_types"])
			assert.Equal(t, "native", r["application_type"])
		}},
		{name: "several redirect URIs echoed in order", status: 201,
			body: regBody(func(m map[string]any) {
				m["redirect_uris"] = []string{"https://claude.ai/api/mcp/auth_callback", "http://[::1]:5/cb", "http://localhost/cb"}
			}),
			then: func(t *testing.T, r response) {
				assert.Equal(t, []any{"https://claude.ai/api/mcp/auth_callback", "http://[::1]:5/cb", "http://localhost/cb"}, r["redirect_uris"])
			}},
		{name: "custom scheme allowed by a pattern", status: 201,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = []string{"cursor://anysphere.cursor-mcp/oauth/callback"} })},
		{name: "unknown fields tolerated and not echoed", status: 201,
			body: regBody(func(m map[string]any) {
				m["contacts"] = []string{"ops@example.com"}
				m["tos_uri"] = "https://example.com/tos"
				m["jwks"] = map[string]any{"keys": []any{map[string]any{"kty": "EC"}}}
				m["software_statement"] = "eyJ..."
				m["x-vendor"] = 42
			}),
			then: func(t *testing.T, r response) {
				assert.NotContains(t, r, "contacts")
				assert.NotContains(t, r, "jwks")
				assert.NotContains(t, r, "x-vendor")
			}},
		{name: "charset parameter on the content type", body: regBody(nil), contentType: "application/json; charset=utf-8", status: 201},
		{name: "name of 200 characters", status: 201, body: regBody(func(m map[string]any) { m["client_name"] = strings.Repeat("é", 200) })},
		{name: "scope offline_access alone means every scope", status: 201,
			body: regBody(func(m map[string]any) { m["scope"] = "offline_access" }),
			then: func(t *testing.T, r response) { assert.Equal(t, "openid email profile mcp-api/read", r["scope"]) }},
		{name: "scope duplicates collapsed", status: 201,
			body: regBody(func(m map[string]any) { m["scope"] = "openid  openid offline_access email" }),
			then: func(t *testing.T, r response) { assert.Equal(t, "openid email", r["scope"]) }},
		{name: "web application type recorded", status: 201,
			body: regBody(func(m map[string]any) { m["application_type"] = "web" }),
			then: func(t *testing.T, r response) { assert.Equal(t, "web", r["application_type"]) }},
		{name: "authorization_code alone: the answer says refresh tokens come too, as they do", status: 201,
			body: regBody(func(m map[string]any) { m["grant_types"] = []string{"authorization_code"} }),
			then: func(t *testing.T, r response) {
				assert.Equal(t, []any{"authorization_code", "refresh_token"}, r["grant_types"])
			}},

		{name: "a redirect URI of a scheme no pattern allows is dropped when others remain (Cursor)", status: 201,
			body: regBody(func(m map[string]any) {
				m["redirect_uris"] = []string{"http://localhost:8787/callback", "myapp://oauth/callback", "http://127.0.0.1:8787/callback"}
			}),
			then: func(t *testing.T, r response) {
				assert.Equal(t, []any{"http://localhost:8787/callback", "http://127.0.0.1:8787/callback"}, r["redirect_uris"], "the echo says what was kept")
			}},
		{name: "only redirect URIs the policy does not allow", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) {
				m["redirect_uris"] = []string{"myapp://oauth/callback", "http://example.com/cb"}
			})},
		{name: "a dangerous redirect URI refuses the registration, allowed ones beside it or not", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = []string{"http://localhost/cb", "javascript:alert(1)"} })},
		{name: "missing redirect_uris", body: `{"client_name":"x"}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "null redirect_uris", body: `{"client_name":"x","redirect_uris":null}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "empty redirect_uris", body: `{"redirect_uris":[]}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "redirect_uris of the wrong type", body: `{"redirect_uris":"http://127.0.0.1/cb"}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "member names are case-sensitive", body: `{"REDIRECT_URIS":["http://127.0.0.1/cb"]}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "javascript redirect", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = []string{"javascript:alert(1)"} })},
		{name: "http redirect to a public host", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = []string{"http://evil.example/cb"} })},
		{name: "one bad redirect among good ones", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) {
				m["redirect_uris"] = []string{"http://127.0.0.1/cb", "https://app.example/cb/%2e%2e/x"}
			})},
		{name: "custom scheme without a pattern", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = []string{"vscode://vscode.github-authentication/cb"} })},
		{name: "redirect URI over 2048 bytes", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) {
				m["redirect_uris"] = []string{"https://app.example/" + strings.Repeat("a", 3000)}
			})},
		{name: "1000 redirect URIs", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = manyRedirects(1000) })},
		{name: "21 redirect URIs", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["redirect_uris"] = manyRedirects(21) })},
		{name: "redirect URIs over 8 KiB together (a record kept a day, however many are sent)", status: 400, code: CodeInvalidRedirectURI,
			body: regBody(func(m map[string]any) {
				long := make([]string, 5)
				for i := range long {
					long[i] = fmt.Sprintf("http://127.0.0.1:9000/%d/%s", i, strings.Repeat("a", 1800))
				}
				m["redirect_uris"] = long
			})},
		{name: "oversized body", status: 413, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["padding"] = strings.Repeat("x", 70<<10) })},
		{name: "huge name", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["client_name"] = strings.Repeat("n", 201) })},
		{name: "name with a control character", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["client_name"] = "Good\u0007App" })},
		{name: "name with a bidi override", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["client_name"] = "Good \u202eppA liveD" })},
		{name: "name of the wrong type", body: `{"client_name":5,"redirect_uris":["http://127.0.0.1/cb"]}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "wrong content type", body: regBody(nil), contentType: "text/plain", status: 400, code: CodeInvalidClientMetadata},
		{name: "form content type", body: "redirect_uris=http://127.0.0.1/cb", contentType: "application/x-www-form-urlencoded", status: 400, code: CodeInvalidClientMetadata},
		{name: "no content type", body: regBody(nil), contentType: "-", status: 400, code: CodeInvalidClientMetadata},
		{name: "not JSON", body: `{"redirect_uris":`, status: 400, code: CodeInvalidClientMetadata},
		{name: "JSON array", body: `[{"redirect_uris":["http://127.0.0.1/cb"]}]`, status: 400, code: CodeInvalidClientMetadata},
		{name: "JSON null", body: `null`, status: 400, code: CodeInvalidClientMetadata},
		{name: "trailing data", body: regBody(nil) + `{}`, status: 400, code: CodeInvalidClientMetadata},
		{name: "a scope not offered is dropped, the others kept (MCP checklist H5)", status: 201,
			body: regBody(func(m map[string]any) { m["scope"] = "openid admin claudeai" }),
			then: func(t *testing.T, r response) { assert.Equal(t, "openid", r["scope"], "the echo says what was kept") }},
		{name: "only scopes not offered: every scope", status: 201,
			body: regBody(func(m map[string]any) { m["scope"] = "claudeai" }),
			then: func(t *testing.T, r response) { assert.Equal(t, "openid email profile mcp-api/read", r["scope"]) }},
		{name: "scope too long", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["scope"] = strings.Repeat("openid ", 200) })},
		{name: "private_key_jwt", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["token_endpoint_auth_method"] = "private_key_jwt" })},
		{name: "private_key_jwt without none among the methods supported", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) {
				m["token_endpoint_auth_method"] = "private_key_jwt"
				m["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"}
			})},
		{name: "device_code grant refused, not dropped as from a metadata document", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) {
				m["grant_types"] = []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}
			})},
		{name: "client_credentials grant", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["grant_types"] = []string{"authorization_code", "client_credentials"} })},
		{name: "implicit grant", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["grant_types"] = []string{"implicit"} })},
		{name: "refresh_token without authorization_code", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["grant_types"] = []string{"refresh_token"} })},
		{name: "token response type", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["response_types"] = []string{"code", "token"} })},
		{name: "http client_uri", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["client_uri"] = "http://app.example/" })},
		{name: "javascript logo_uri", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["logo_uri"] = "javascript:alert(1)" })},
		{name: "unknown application type", status: 400, code: CodeInvalidClientMetadata,
			body: regBody(func(m map[string]any) { m["application_type"] = "desktop" })},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			w := fx.register(tc.body, ct, fmt.Sprintf("198.51.100.%d", i%250))
			require.Equal(t, tc.status, w.Code, w.Body.String())
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			var r map[string]any
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
			if tc.status != http.StatusCreated {
				assert.Equal(t, tc.code, r["error"])
				assert.NotContains(t, r, "client_id")
				assert.Less(t, len(w.Body.String()), 600, "the error echoes little of the input")
				return
			}
			assert.NotContains(t, r, "client_secret")
			assert.NotContains(t, r, "client_secret_expires_at")
			assert.Equal(t, "none", r["token_endpoint_auth_method"])
			id, _ := r["client_id"].(string)
			require.NotEmpty(t, id)
			assert.Equal(t, float64(fx.clock.Now().Unix()), r["client_id_issued_at"])
			rec, err := fx.p.lookupClient(t.Context(), id)
			require.NoError(t, err, "the client is stored")
			assert.Equal(t, r["redirect_uris"], toAnySlice(rec.RedirectURIs))
			assert.Equal(t, r["scope"], strings.Join(rec.Scopes, " "))
			assert.Equal(t, "none", rec.TokenEndpointAuthMethod)
			if tc.then != nil {
				tc.then(t, r)
			}
		})
	}
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func TestRegisterClientIDsAreDistinct(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	seen := map[string]bool{}
	for i := range 5 {
		w := fx.register(regBody(nil), "application/json", fmt.Sprintf("192.0.2.%d", i))
		require.Equal(t, http.StatusCreated, w.Code)
		var r struct {
			ClientID string `json:"client_id"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
		assert.GreaterOrEqual(t, len(r.ClientID), 22, "128 random bits")
		assert.False(t, seen[r.ClientID])
		seen[r.ClientID] = true
	}
}

func TestRegisterLogsOneLineWithoutTheBody(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	w := fx.register(mcpRemoteRegistration, "application/json", "192.0.2.7")
	require.Equal(t, http.StatusCreated, w.Code)
	var r struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
	logs := fx.logs.String()
	assert.Equal(t, 1, strings.Count(logs, "client registered"))
	assert.Contains(t, logs, r.ClientID)
	assert.Contains(t, logs, "redirect_hosts=[localhost]")
	assert.NotContains(t, logs, "/oauth/callback", "hosts only, not full redirect URIs")
	assert.NotContains(t, logs, "2e6dc280", "no body fields beyond the name")
}

// TestRegisterLogsWhyItRefused: a refused registration's log line says why,
// as its answer does, for the decoding and the policy checks alike.
func TestRegisterLogsWhyItRefused(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	w := fx.register(regBody(func(m map[string]any) { m["client_name"] = "two\nlines" }), "application/json", "192.0.2.8")
	require.Equal(t, http.StatusBadRequest, w.Code)
	w = fx.register(regBody(func(m map[string]any) { m["redirect_uris"] = []string{"javascript:alert(1)"} }), "application/json", "192.0.2.8")
	require.Equal(t, http.StatusBadRequest, w.Code)
	lines := strings.Split(strings.TrimSpace(fx.logs.String()), "\n")
	var refusals []string
	for _, l := range lines {
		if strings.Contains(l, "request refused") {
			refusals = append(refusals, l)
		}
	}
	require.Len(t, refusals, 2, fx.logs.String())
	assert.Contains(t, refusals[0], "reason=", "the decoding refusal says why")
	assert.Contains(t, refusals[1], "reason=", "the policy refusal says why")
	assert.Contains(t, refusals[1], "error=invalid_redirect_uri")
}

// TestRateLimitedRequestsLogThinly: a flood of rate-limited requests gets
// one log line a minute, counting the requests refused since the last.
func TestRateLimitedRequestsLogThinly(t *testing.T) {
	fx := newRegisterTestProxy(t, nil) // 10 a minute
	for range 10 {
		require.Equal(t, http.StatusCreated, fx.register(regBody(nil), "application/json", "192.0.2.11").Code)
	}
	for range 50 {
		require.Equal(t, http.StatusTooManyRequests, fx.register(regBody(nil), "application/json", "192.0.2.11").Code)
	}
	assert.Equal(t, 1, strings.Count(fx.logs.String(), "status=429"), "one line for the first minute")
	fx.clock.Advance(61 * time.Second)
	for range 11 { // the bucket refilled: ten pass, one is refused
		fx.register(regBody(nil), "application/json", "192.0.2.11")
	}
	assert.Equal(t, 2, strings.Count(fx.logs.String(), "status=429"))
	assert.Contains(t, fx.logs.String(), "rate_limited_since_last_line=50", "the 49 held back and this one")
}

func TestRegisterRateLimit(t *testing.T) {
	fx := newRegisterTestProxy(t, nil) // default: 10 a minute
	for i := range 10 {
		w := fx.register(regBody(nil), "application/json", "192.0.2.10")
		require.Equal(t, http.StatusCreated, w.Code, "registration %d", i+1)
	}
	t.Run("the 11th in a minute from one IP", func(t *testing.T) {
		w := fx.register(regBody(nil), "application/json", "192.0.2.10")
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Equal(t, "6", w.Header().Get("Retry-After"))
		var r map[string]string
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
		assert.Equal(t, CodeTemporarilyUnavailable, r["error"])
	})
	t.Run("another IP is fine", func(t *testing.T) {
		assert.Equal(t, http.StatusCreated, fx.register(regBody(nil), "application/json", "192.0.2.11").Code)
	})
	t.Run("refused requests do not count against a refill", func(t *testing.T) {
		fx.clock.Advance(6 * time.Second)
		assert.Equal(t, http.StatusCreated, fx.register(regBody(nil), "application/json", "192.0.2.10").Code)
		assert.Equal(t, http.StatusTooManyRequests, fx.register(regBody(nil), "application/json", "192.0.2.10").Code)
	})
	t.Run("the limit applies before the body is read", func(t *testing.T) {
		assert.Equal(t, http.StatusTooManyRequests, fx.register("not json", "text/plain", "192.0.2.10").Code)
	})
}

// registerFailingStore fails every operation, or only writes.
type registerFailingStore struct {
	*MemoryStore
	failReads bool
	sets      atomic.Int32
}

var errRegisterStoreDown = errors.New("store down")

func (s *registerFailingStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.sets.Add(1)
	return errRegisterStoreDown
}

func (s *registerFailingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if s.failReads {
		return nil, errRegisterStoreDown
	}
	return s.MemoryStore.Get(ctx, key)
}

func TestRegisterStoreDown(t *testing.T) {
	store := &registerFailingStore{MemoryStore: NewMemoryStore()}
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.Store = store })
	w := fx.register(tsSDKRegistration, "application/json", "192.0.2.20")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.NotEmpty(t, w.Header().Get("Retry-After"))
	var r map[string]string
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
	assert.Equal(t, CodeTemporarilyUnavailable, r["error"])
	assert.NotContains(t, w.Body.String(), "store down", "the cause stays in the logs")
	assert.NotContains(t, r, "client_id")
}

// registerCountingStore counts writes of client records.
type registerCountingStore struct {
	*MemoryStore
	clientSets atomic.Int32
}

func (s *registerCountingStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, kindClient+":") {
		s.clientSets.Add(1)
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func registerForID(t *testing.T, fx *registerTestFixture) string {
	t.Helper()
	w := fx.register(tsSDKRegistration, "application/json", "192.0.2.30")
	require.Equal(t, http.StatusCreated, w.Code)
	var r struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
	return r.ClientID
}

func TestLookupClient(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	id := registerForID(t, fx)
	cases := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"registered", id, nil},
		{"unknown", "no-such-client-id-000000", ErrNotFound},
		{"empty", "", ErrNotFound},
		{"over 2048 bytes", strings.Repeat("a", 2049), ErrNotFound},
		{"registered id with a suffix", id + "x", ErrNotFound},
		{"upstream client without the allow-list", fx.app.ID, ErrNotFound},
		{"https id with CIMD unreachable", "https://127.0.0.1/client.json", errInvalidClientMetadata},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := fx.p.lookupClient(t.Context(), tc.id)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.Nil(t, rec)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.id, rec.ID)
			assert.Equal(t, []string{"http://127.0.0.1:8976/callback"}, rec.RedirectURIs)
			assert.Equal(t, "ts-client-oauth", rec.Name)
		})
	}
}

func TestLookupClientUpstreamShortcut(t *testing.T) {
	allow := []string{"https://claude.ai/api/mcp/auth_callback"}
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.UpstreamClientRedirectURIs = allow })
	rec, err := fx.p.lookupClient(t.Context(), fx.app.ID)
	require.NoError(t, err)
	assert.Equal(t, fx.app.ID, rec.ID)
	assert.Equal(t, "Cognito app client", rec.Name)
	assert.Equal(t, allow, rec.RedirectURIs)
	assert.Equal(t, []string{"openid", "email", "profile", "mcp-api/read"}, rec.Scopes)
	rec.RedirectURIs[0] = "https://evil.example/cb"
	again, err := fx.p.lookupClient(t.Context(), fx.app.ID)
	require.NoError(t, err)
	assert.Equal(t, allow, again.RedirectURIs, "callers cannot change the allow-list")
}

func TestLookupClientStoreFailure(t *testing.T) {
	store := &registerFailingStore{MemoryStore: NewMemoryStore(), failReads: true}
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.Store = store })
	_, err := fx.p.lookupClient(t.Context(), "some-client-id-0000000")
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.NotErrorIs(t, err, ErrNotFound)
}

// TestLookupClientSlidingExpiry: a registration no sign-in has used is
// never re-stored by lookups (it lives unusedClientTTL, a day); once used it
// is stored for ClientTTL, and lookups re-store it once a day.
func TestLookupClientSlidingExpiry(t *testing.T) {
	store := &registerCountingStore{MemoryStore: NewMemoryStore()}
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.Store = store; c.ClientTTL = 48 * time.Hour })
	// The MemoryStore keeps real time; its TTL is not what this test checks.
	id := registerForID(t, fx)
	require.Equal(t, int32(1), store.clientSets.Load())

	fx.clock.Advance(23 * time.Hour)
	rec, err := fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	fx.clock.Advance(2 * time.Hour)
	_, err = fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, int32(1), store.clientSets.Load(), "unused: lookups do not keep it")

	fx.p.clientUsed(t.Context(), rec) // a sign-in through it completed
	assert.Equal(t, int32(2), store.clientSets.Load(), "used: stored for ClientTTL")
	rec, err = fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	assert.True(t, rec.Used)
	fx.p.clientUsed(t.Context(), rec)
	assert.Equal(t, int32(2), store.clientSets.Load(), "marked once")

	fx.clock.Advance(23 * time.Hour)
	_, err = fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, int32(2), store.clientSets.Load(), "not re-stored within a day")

	fx.clock.Advance(2 * time.Hour)
	rec, err = fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, int32(3), store.clientSets.Load(), "re-stored after a day")
	assert.Equal(t, fx.clock.Now().UTC(), rec.Touched)

	_, err = fx.p.lookupClient(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, int32(3), store.clientSets.Load(), "the refreshed Touched was stored")
}

// TestLookupClientOlderRecordsAndShortLifetimes: a record stored before
// registrations were marked used (Touched set at registration, Used unset)
// counts as used, and lookups keep it; with a ClientTTL under two days a
// used client is re-stored after half of it, not after a day it would not
// live.
func TestLookupClientOlderRecordsAndShortLifetimes(t *testing.T) {
	t.Run("a record from before Used", func(t *testing.T) {
		store := &registerCountingStore{MemoryStore: NewMemoryStore()}
		fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.Store = store })
		now := fx.clock.Now().UTC()
		old := &clientRecord{ID: "old-client-0000000000", RedirectURIs: []string{"http://127.0.0.1:9000/cb"}, IssuedAt: now, Touched: now}
		require.NoError(t, fx.p.put(t.Context(), storeKey(kindClient, old.ID), old, time.Hour))
		fx.clock.Advance(25 * time.Hour)
		_, err := fx.p.lookupClient(t.Context(), old.ID)
		require.NoError(t, err)
		assert.Equal(t, int32(2), store.clientSets.Load(), "re-stored: it counts as used")
	})
	t.Run("a ClientTTL of two hours", func(t *testing.T) {
		store := &registerCountingStore{MemoryStore: NewMemoryStore()}
		fx := newRegisterTestProxy(t, func(c *ProxyConfig) { c.Store = store; c.ClientTTL = 2 * time.Hour })
		id := registerForID(t, fx)
		rec, err := fx.p.lookupClient(t.Context(), id)
		require.NoError(t, err)
		fx.p.clientUsed(t.Context(), rec)
		require.Equal(t, int32(2), store.clientSets.Load())
		fx.clock.Advance(61 * time.Minute)
		_, err = fx.p.lookupClient(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, int32(3), store.clientSets.Load(), "re-stored after half its lifetime")
	})
}

func TestLookupClientMetadataDocument(t *testing.T) {
	var srv *cimdTestServer
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/client.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/client.json", func(d map[string]any) {
				d["redirect_uris"] = []string{"cursor://anysphere.cursor-mcp/oauth/callback", "vscode://other/cb", "http://127.0.0.1/cb"}
				d["scope"] = "openid admin offline_access mcp-api/read"
			}), "")(w, r)
		},
		"/nothing-allowed.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/nothing-allowed.json", func(d map[string]any) {
				d["redirect_uris"] = []string{"vscode://other/cb", "http://evil.example/cb"}
			}), "")(w, r)
		},
		"/no-scope.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/no-scope.json", func(d map[string]any) { delete(d, "scope") }), "")(w, r)
		},
	})
	on := func(c *ProxyConfig) {
		c.InsecureAllowLoopbackMetadataDocuments = true
		c.HTTPClient = srv.Client()
	}
	fx := newRegisterTestProxy(t, on)

	t.Run("document client", func(t *testing.T) {
		rec, err := fx.p.lookupClient(t.Context(), srv.URL+"/client.json")
		require.NoError(t, err)
		assert.True(t, rec.Metadata)
		assert.Equal(t, []string{"cursor://anysphere.cursor-mcp/oauth/callback", "http://127.0.0.1/cb"}, rec.RedirectURIs,
			"redirect URIs outside the proxy's policy are dropped")
		assert.Equal(t, []string{"openid", "mcp-api/read"}, rec.Scopes, "scopes the proxy does not offer are dropped")
	})
	t.Run("no redirect URI allowed", func(t *testing.T) {
		_, err := fx.p.lookupClient(t.Context(), srv.URL+"/nothing-allowed.json")
		assert.ErrorIs(t, err, errInvalidClientMetadata)
	})
	t.Run("no scope means every scope", func(t *testing.T) {
		rec, err := fx.p.lookupClient(t.Context(), srv.URL+"/no-scope.json")
		require.NoError(t, err)
		assert.Equal(t, []string{"openid", "email", "profile", "mcp-api/read"}, rec.Scopes)
	})
	t.Run("CIMD off: an https id is looked up in the store", func(t *testing.T) {
		off := newRegisterTestProxy(t, func(c *ProxyConfig) { on(c); c.DisableClientIDMetadataDocuments = true })
		_, err := off.p.lookupClient(t.Context(), srv.URL+"/client.json")
		assert.ErrorIs(t, err, ErrNotFound)
		assert.Equal(t, 1, srv.hitCount("/client.json"), "no fetch when CIMD is off")
	})
}

// TestVerifyUpstream: at the callback, Cognito's answer must hold an ID
// token with the nonce the proxy sent, for the access token's user; a
// refresh (no nonce sent) may come without one.
func TestVerifyUpstream(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	fx.pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com"})
	fx.pool.AddUser(cognitotest.User{Username: "bob", Password: "bob-pw-1", Email: "bob@example.com"})
	access := fx.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: fx.app.ID})
	withID := func(o cognitotest.TokenOptions) *oauth2.Token {
		o.ClientID = fx.app.ID
		return (&oauth2.Token{AccessToken: access}).WithExtra(map[string]any{"id_token": fx.pool.MintIDToken(o)})
	}
	for _, tc := range []struct {
		name  string
		tok   *oauth2.Token
		nonce string
		want  string // "" for success
	}{
		{"the nonce sent", withID(cognitotest.TokenOptions{Username: "alice", Nonce: "n-1"}), "n-1", ""},
		{"another nonce", withID(cognitotest.TokenOptions{Username: "alice", Nonce: "n-2"}), "n-1", "nonce"},
		{"no nonce", withID(cognitotest.TokenOptions{Username: "alice"}), "n-1", "nonce"},
		{"another user's ID token", withID(cognitotest.TokenOptions{Username: "bob", Nonce: "n-1"}), "n-1", "sub"},
		{"no ID token at the callback", &oauth2.Token{AccessToken: access}, "n-1", "no ID token"},
		{"no ID token at a refresh", &oauth2.Token{AccessToken: access}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, _, _, err := fx.p.verifyUpstream(t.Context(), tc.tok, tc.nonce)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, "alice", user.Username)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestBodyReadTimeout: a client that sends the headers of a POST and then
// holds the body gets 400 once bodyReadTimeout has passed, at /token and
// /register, rather than keeping its connection; a body that arrives in
// time is read as usual.
func TestBodyReadTimeout(t *testing.T) {
	defer func(old time.Duration) { bodyReadTimeout = old }(bodyReadTimeout)
	bodyReadTimeout = 300 * time.Millisecond
	fx := newRegisterTestProxy(t, nil)
	srv := httptest.NewServer(fx.p)
	t.Cleanup(srv.Close)
	for _, tc := range []struct{ path, contentType string }{
		{"/token", "application/x-www-form-urlencoded"},
		{"/register", "application/json"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			require.NoError(t, err)
			defer conn.Close()
			_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 100\r\n\r\n{", tc.path, tc.contentType)
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			start := time.Now()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err, "the server answers once the body is late")
			resp.Body.Close()
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Less(t, time.Since(start), 4*time.Second)
		})
	}
	resp, err := http.PostForm(srv.URL+"/token", url.Values{"grant_type": {"password"}, "client_id": {"x"}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a body in time is read: the request fails for its content (an unknown client), not its body")
}

// TestRecordsStoredAtTheirSize: a registration whose redirect URI is full
// of & and whose name is full of < is stored at about its size, and reads
// back the same: JSON's HTML escaping stored each of those as six bytes
// (\u0026), so that one /register request of 14 KiB became an 80 KiB record.
func TestRecordsStoredAtTheirSize(t *testing.T) {
	fx := newRegisterTestProxy(t, nil)
	rec := &clientRecord{ID: "c", Name: strings.Repeat("<>", 100),
		RedirectURIs: []string{"https://app.example/cb?" + strings.Repeat("a&", 1000)}}
	key := storeKey(kindClient, "c")
	require.NoError(t, fx.p.put(t.Context(), key, rec, time.Hour))
	raw, err := fx.p.store.Get(t.Context(), key)
	require.NoError(t, err)
	assert.Less(t, len(raw), 2400, "2,223 bytes of text, stored in %d", len(raw))
	var back clientRecord
	require.NoError(t, fx.p.get(t.Context(), key, &back))
	assert.Equal(t, rec.Name, back.Name)
	assert.Equal(t, rec.RedirectURIs, back.RedirectURIs)
}

// TestRequestedScopes: each scope once, in the order first given, without
// offline_access, for a short list and for a long one (checked against a
// set).
func TestRequestedScopes(t *testing.T) {
	assert.Equal(t, []string{"openid", "email"}, requestedScopes("openid offline_access email openid  email"))
	assert.Nil(t, requestedScopes(" offline_access "))
	var long, want []string
	for i := range 3000 {
		long = append(long, fmt.Sprint("s", i%1000), offlineAccess)
		if i < 1000 {
			want = append(want, fmt.Sprint("s", i))
		}
	}
	assert.Equal(t, want, requestedScopes(strings.Join(long, " ")))
}

// BenchmarkRequestedScopes: a scope parameter of /authorize as a client
// sends it, and one of 64 KiB of distinct scopes, which searching each
// scope in those kept made quadratic (0.1–0.4 s a request).
func BenchmarkRequestedScopes(b *testing.B) {
	var flood strings.Builder
	for i := 0; flood.Len() < 64<<10; i++ {
		fmt.Fprintf(&flood, "%03x ", i)
	}
	for name, scope := range map[string]string{"client": "openid email profile offline_access mcp-api/read", "64KiB": flood.String()} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				requestedScopes(scope)
			}
		})
	}
}
