package cognitomcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

// BenchmarkLoginFlow measures one whole sign-in through the proxy on each
// store: register → authorize → consent page → consent answer → Cognito
// (in-process fake, auto-login) → callback (code exchange at Cognito and
// verification of its tokens) → token. Each iteration is a new client and
// a new browser. The redis row reports the bytes Redis holds per grant.
func BenchmarkLoginFlow(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) (cognitomcp.Store, *redis.Client)
	}{
		{"memory", func(*testing.B) (cognitomcp.Store, *redis.Client) { return cognitomcp.NewMemoryStore(), nil }},
		{"redis", func(b *testing.B) (cognitomcp.Store, *redis.Client) {
			c := testredis.Start(b).Client(b)
			return cognitomcp.NewRedisStore(c, cognitomcp.RedisStoreOptions{}), c
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			store, rdb := st.open(b)
			base := newLoginFlowProxy(b, store)
			b.ReportAllocs()
			for b.Loop() {
				if err := loginFlowOnce(b.Context(), base); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
			if rdb != nil {
				b.ReportMetric(redisGrantBytes(b, rdb), "B/grant")
			}
		})
	}
}

// newLoginFlowProxy serves a Proxy over store in front of a fake Cognito pool
// that signs alice in at once, and returns its base URL.
func newLoginFlowProxy(b *testing.B, store cognitomcp.Store) string {
	b.Helper()
	var handler http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	b.Cleanup(srv.Close)
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	b.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com"})
	app := pool.AddClient(cognitotest.Client{Secret: "upstream-secret-value", CallbackURLs: []string{srv.URL + "/auth/callback"}})
	pool.SetAutoLogin("alice")
	p, err := cognitomcp.NewProxy(b.Context(), cognitomcp.ProxyConfig{
		IssuerURL: pool.Issuer, ClientID: app.ID, ClientSecret: "upstream-secret-value",
		BaseURL: srv.URL, Keys: cognitomcp.KeyConfig{MasterSecret: testMasterSecret}, Store: store,
		Logger: slog.New(slog.DiscardHandler), HTTPClient: pool.HTTPClient(),
		RateLimits: cognitomcp.RateLimits{Register: -1, Authorize: -1, Token: -1},
	})
	if err != nil {
		b.Fatal(err)
	}
	handler = p.Handler(mcpEcho)
	return srv.URL
}

// loginFlowOnce runs one sign-in against the proxy at base.
func loginFlowOnce(ctx context.Context, base string) error {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u, contentType, body string, want int) (*http.Response, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			return nil, "", err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := browser.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != want {
			err = fmt.Errorf("%s %s: status %d, want %d: %.200s", method, req.URL.Path, resp.StatusCode, want, b)
		}
		return resp, string(b), err
	}
	next := func(resp *http.Response) string { return resp.Header.Get("Location") }

	_, body, err := do(http.MethodPost, base+"/register", "application/json",
		`{"client_name":"Bench","redirect_uris":["`+loopbackRedirect+`"],"token_endpoint_auth_method":"none"}`, http.StatusCreated)
	if err != nil {
		return err
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(body), &reg); err != nil {
		return err
	}
	verifier := strings.Repeat("v", 43)
	q := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {loopbackRedirect},
		"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "state": {"s"},
		"scope": {"openid email"}, "resource": {base + "/mcp"}}
	resp, _, err := do(http.MethodGet, base+"/authorize?"+q.Encode(), "", "", http.StatusFound)
	if err != nil {
		return err
	}
	_, page, err := do(http.MethodGet, next(resp), "", "", http.StatusOK)
	if err != nil {
		return err
	}
	form := url.Values{"action": {"approve"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, _, err = do(http.MethodPost, base+"/consent", "application/x-www-form-urlencoded", form.Encode(), http.StatusFound)
	if err != nil {
		return err
	}
	resp, _, err = do(http.MethodGet, next(resp), "", "", http.StatusFound) // Cognito
	if err != nil {
		return err
	}
	resp, _, err = do(http.MethodGet, next(resp), "", "", http.StatusFound) // callback
	if err != nil {
		return err
	}
	back, err := url.Parse(next(resp))
	if err != nil || back.Query().Get("code") == "" {
		return fmt.Errorf("callback gave no code: %q", next(resp))
	}
	tok := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "client_id": {reg.ClientID},
		"code_verifier": {verifier}, "redirect_uri": {loopbackRedirect}}
	_, body, err = do(http.MethodPost, base+"/token", "application/x-www-form-urlencoded", tok.Encode(), http.StatusOK)
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"access_token"`) {
		return errors.New("token response without access_token")
	}
	return nil
}

// redisGrantBytes is the mean size of the grant values in Redis.
func redisGrantBytes(b *testing.B, rdb *redis.Client) float64 {
	b.Helper()
	ctx := b.Context()
	var n, total int64
	iter := rdb.Scan(ctx, 0, "cognitomcp:grant:*", 1000).Iterator()
	for iter.Next(ctx) {
		size, err := rdb.StrLen(ctx, iter.Val()).Result()
		if err != nil {
			b.Fatal(err)
		}
		n, total = n+1, total+size
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	if n == 0 {
		b.Fatal("no grant in Redis")
	}
	return float64(total) / float64(n)
}
