package cognitomcp_test

// Benchmarks of the request path, each with its baseline in the same run, so
// that benchstat can set them side by side (scripts/bench.sh, BENCHMARKS.md):
//
//	BenchmarkWarmPath  RequireToken+RequireGroups on a token verified before,
//	                   against the bare handler and go-sdk's RequireBearerToken
//	                   with a go-oidc verifier
//	BenchmarkVerify    the first verification of a Cognito token, against a
//	                   bare go-oidc Verify
//
// Sign-ins per second are BenchmarkLoginFlow's (store_proxy_bench_test.go).

import (
	"context"
	"crypto"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// benchPool is a fake pool with alice (groups admin and staff) and one app
// client whose callback is the proxy's, at base.
func benchPool(tb testing.TB, callback string) (*cognitotest.UserPool, *cognitotest.Client) {
	tb.Helper()
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	tb.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com",
		Groups: []string{"admin", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	app := pool.AddClient(cognitotest.Client{Secret: "upstream-secret-value", CallbackURLs: []string{callback}})
	pool.SetAutoLogin("alice")
	return pool, app
}

// nopWriter is a ResponseWriter that keeps nothing, so the benchmarks time
// the middleware and not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// benchHandler is the protected handler: it reads the claims, as a tool would.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if c, ok := cognitomcp.ClaimsFromContext(r.Context()); ok && c.Subject == "" {
		panic("no subject")
	}
	w.WriteHeader(http.StatusNoContent)
})

// runHandler serves req with h b.N times and fails on any status but want.
func runHandler(b *testing.B, h http.Handler, req *http.Request) {
	b.Helper()
	status := &statusWriter{nopWriter: nopWriter{h: http.Header{}}}
	h.ServeHTTP(status, req) // warm: the token is verified and cached here
	if status.code != http.StatusNoContent {
		b.Fatalf("status %d", status.code)
	}
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

type statusWriter struct {
	nopWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code }

// goSDKVerifier is what go-sdk's documentation suggests: a go-oidc verifier
// behind auth.RequireBearerToken, paying the full verification per request.
func goSDKVerifier(v *oidc.IDTokenVerifier) auth.TokenVerifier {
	return func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		t, err := v.Verify(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		var c struct {
			Scope  string   `json:"scope"`
			Groups []string `json:"cognito:groups"`
		}
		if err := t.Claims(&c); err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		return &auth.TokenInfo{UserID: t.Subject, Scopes: strings.Fields(c.Scope), Expiration: t.Expiry,
			Extra: map[string]any{"groups": c.Groups}}, nil
	}
}

// goSDKRequireGroup is RequireGroups for go-sdk's TokenInfo.
func goSDKRequireGroup(group string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ti := auth.TokenInfoFromContext(r.Context())
		groups, _ := ti.Extra["groups"].([]string)
		for _, g := range groups {
			if g == group {
				next.ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "forbidden", http.StatusForbidden)
	})
}

// BenchmarkWarmPath is the cost of authentication and authorization per
// request once a token has been verified (the common case in an MCP
// session). impl=bare is the handler alone: the overhead of the others is
// their time minus its.
func BenchmarkWarmPath(b *testing.B) {
	b.Run("token=cognito", func(b *testing.B) {
		pool, app := benchPool(b, "http://127.0.0.1/cb")
		tok := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
		req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		v, err := cognitomcp.NewVerifier(b.Context(), cognitomcp.VerifierConfig{
			IssuerURL: pool.Issuer, ClientIDs: []string{app.ID}, HTTPClient: pool.HTTPClient()})
		if err != nil {
			b.Fatal(err)
		}
		provider, err := oidc.NewProvider(oidc.ClientContext(b.Context(), pool.HTTPClient()), pool.Issuer)
		if err != nil {
			b.Fatal(err)
		}
		ours := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v, ResourceMetadataURL: "http://127.0.0.1/prm"})(
			cognitomcp.RequireGroups("admin")(benchHandler))
		sdk := auth.RequireBearerToken(goSDKVerifier(provider.Verifier(&oidc.Config{SkipClientIDCheck: true})),
			&auth.RequireBearerTokenOptions{ResourceMetadataURL: "http://127.0.0.1/prm"})(goSDKRequireGroup("admin", benchHandler))
		b.Run("impl=bare", func(b *testing.B) { runHandler(b, benchHandler, req) })
		b.Run("impl=cognitomcp", func(b *testing.B) { runHandler(b, ours, req) })
		b.Run("impl=gosdk-oidc", func(b *testing.B) { runHandler(b, sdk, req) })
	})
	b.Run("token=proxy", func(b *testing.B) {
		bp := newWarmProxy(b, nil)
		access, _ := bp.signIn(b, bp.register(b))
		req := httptest.NewRequest(http.MethodPost, bp.proxy.Resource(), nil)
		req.Header.Set("Authorization", "Bearer "+access)
		ours := bp.proxy.RequireToken()(cognitomcp.RequireGroups("admin")(benchHandler))
		b.Run("impl=bare", func(b *testing.B) { runHandler(b, benchHandler, req) })
		b.Run("impl=cognitomcp", func(b *testing.B) { runHandler(b, ours, req) })
	})
}

// BenchmarkVerify is the first verification of a Cognito access token (the
// cache off) against a bare go-oidc Verify of the same token with the same
// key: the floor is the RS256 signature check both pay.
func BenchmarkVerify(b *testing.B) {
	pool, app := benchPool(b, "http://127.0.0.1/cb")
	tok := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	ctx := b.Context()
	ours, err := cognitomcp.NewVerifier(ctx, cognitomcp.VerifierConfig{
		IssuerURL: pool.Issuer, ClientIDs: []string{app.ID}, HTTPClient: pool.HTTPClient(), CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	theirs := oidc.NewVerifier(pool.Issuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pool.AccessPublicKey()}},
		&oidc.Config{SkipClientIDCheck: true})
	b.Run("impl=cognitomcp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=go-oidc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := theirs.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// warmProxy is a Proxy on a loopback server in front of a fake pool, with
// rate limits off so that a benchmark may sign in as often as it likes.
type warmProxy struct {
	pool  *cognitotest.UserPool
	proxy *cognitomcp.Proxy
	srv   *httptest.Server
	http  *http.Client // keeps connections alive across sign-ins
}

const warmRedirect = "http://127.0.0.1:8976/callback"

func newWarmProxy(tb testing.TB, mod func(*cognitomcp.ProxyConfig)) *warmProxy {
	tb.Helper()
	bp := &warmProxy{}
	var handler http.Handler = http.NotFoundHandler()
	bp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	tb.Cleanup(bp.srv.Close)
	var app *cognitotest.Client
	bp.pool, app = benchPool(tb, bp.srv.URL+"/auth/callback")
	bp.http = &http.Client{Transport: bp.pool.Transport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cfg := cognitomcp.ProxyConfig{
		IssuerURL: bp.pool.Issuer, ClientID: app.ID, ClientSecret: "upstream-secret-value", BaseURL: bp.srv.URL,
		Keys:       cognitomcp.KeyConfig{MasterSecret: []byte("benchmark-master-secret-32-bytes")},
		HTTPClient: bp.pool.HTTPClient(), RateLimits: cognitomcp.RateLimits{Register: -1, Authorize: -1, Token: -1},
		Logger: discardLogger,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := cognitomcp.NewProxy(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	bp.proxy = p
	handler = p.Handler(benchHandler)
	return bp
}

// register registers a public client and returns its id.
func (bp *warmProxy) register(tb testing.TB) string {
	tb.Helper()
	body := `{"client_name":"Bench Client","redirect_uris":["` + warmRedirect + `"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`
	resp, err := bp.http.Post(bp.srv.URL+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := readJSON(resp, http.StatusCreated, &reg); err != nil {
		tb.Fatal(err)
	}
	return reg.ClientID
}

var consentFields = regexp.MustCompile(`name="(txn|csrf)" value="([^"]*)"`)

// signIn runs one authorization code flow for clientID with a browser of
// its own (a cookie jar) and returns the proxy's tokens.
func (bp *warmProxy) signIn(tb testing.TB, clientID string) (access, refresh string) {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: bp.http.Transport, Jar: jar, CheckRedirect: bp.http.CheckRedirect}
	const verifier = "benchmark-code-verifier-0123456789abcdefghijk"
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {warmRedirect},
		"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "state": {"s"},
		"scope": {"openid email"}, "resource": {bp.proxy.Resource()}}
	next, err := redirectOf(browser.Get(bp.srv.URL + "/authorize?" + q.Encode()))
	if err != nil {
		tb.Fatal("authorize: ", err)
	}
	resp, err := browser.Get(next)
	if err != nil {
		tb.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"action": {"approve"}}
	for _, m := range consentFields.FindAllSubmatch(page, -1) {
		form.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	steps := []func(string) (*http.Response, error){
		func(string) (*http.Response, error) { return browser.PostForm(bp.srv.URL+"/consent", form) },
		browser.Get, // Cognito's authorize, auto-login
		browser.Get, // the proxy's callback
	}
	for i, step := range steps {
		if next, err = redirectOf(step(next)); err != nil {
			tb.Fatalf("step %d: %v", i, err)
		}
	}
	u, _ := url.Parse(next)
	resp, err = bp.http.PostForm(bp.srv.URL+"/token", url.Values{"grant_type": {"authorization_code"},
		"code": {u.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {warmRedirect},
		"client_id": {clientID}, "resource": {bp.proxy.Resource()}})
	if err != nil {
		tb.Fatal(err)
	}
	var tok struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
	}
	if err := readJSON(resp, http.StatusOK, &tok); err != nil {
		tb.Fatal("token: ", err)
	}
	return tok.Access, tok.Refresh
}

// redirectOf returns the absolute Location of a redirect.
func redirectOf(resp *http.Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	u, err := resp.Location()
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

func readJSON(resp *http.Response, want int, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	if err := jsonDecode(resp.Body, v); err != nil {
		return err
	}
	return nil
}

var discardLogger = slog.New(slog.DiscardHandler)
