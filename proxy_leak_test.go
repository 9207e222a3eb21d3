package cognitomcp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// upstreamDetail is error text Cognito sends that must never reach a client
// or a log.
const upstreamDetail = "UPSTREAM-DETAIL-b7e1 user pool internals"

// cognitoTap records Cognito's tokens as the proxy receives them, and can
// make Cognito's token endpoint fail with detailed error text.
type cognitoTap struct {
	base   http.RoundTripper
	mu     sync.Mutex
	tokens []string
	fail   bool
}

func (c *cognitoTap) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	fail := c.fail
	c.mu.Unlock()
	if fail && strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		body := `{"error":"invalid_grant","error_description":"` + upstreamDetail + `"}`
		return &http.Response{StatusCode: 400, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	resp, err := c.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var tok map[string]any
	if json.Unmarshal(b, &tok) == nil {
		c.mu.Lock()
		for _, k := range []string{"access_token", "id_token", "refresh_token"} {
			if s, ok := tok[k].(string); ok {
				c.tokens = append(c.tokens, s)
			}
		}
		c.mu.Unlock()
	}
	return resp, nil
}

func (c *cognitoTap) setFail(on bool) {
	c.mu.Lock()
	c.fail = on
	c.mu.Unlock()
}

// TestProxyLeaksNothing runs the flows of the proxy, good and bad, and then
// searches every response and log line: no Cognito token, client secret,
// key or upstream error text anywhere; the proxy's own tokens and codes only
// where they are handed to their client.
func TestProxyLeaksNothing(t *testing.T) {
	tap := &cognitoTap{}
	f := newProxyFixture(t, func(cfg *cognitomcp.ProxyConfig) {
		tap.base = cfg.HTTPClient.Transport
		cfg.HTTPClient = &http.Client{Transport: tap}
	})
	c := f.register(loopbackRedirect)
	var issued []string // proxy tokens and codes

	// A full flow.
	code := c.signIn(nil).Get("code")
	access, refresh := c.redeem(code)
	issued = append(issued, code, access, refresh)
	f.mcp(access)
	_, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	access2, refresh2 := out["access_token"].(string), out["refresh_token"].(string)
	issued = append(issued, access2, refresh2)

	// Bad input everywhere.
	c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {c.verifier}}) // replay
	f.clock.Advance(2 * time.Minute)
	c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}) // replay after grace
	f.mcp(access2)
	f.mcp(access2 + "x")
	f.mcp("garbage.token.here")
	f.mcp(f.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.app.ID}))
	c.get(c.authorizeURL(func(v url.Values) { v.Set("code_challenge_method", "plain") }))
	c.get(c.authorizeURL(func(v url.Values) { v.Set("client_id", "nobody") }))

	// Cognito failing with detailed error text, at the exchange and in the callback.
	tap.setFail(true)
	q := c.signIn(nil)
	assert.Equal(t, "server_error", q.Get("error"))
	tap.setFail(false)
	resp, _ := c.get(c.authorizeURL(nil))
	form, _ := c.consentForm(location(t, resp).String())
	form.Set("action", "approve")
	resp, _ = c.postForm(f.srv.URL+"/consent", form)
	txn := location(t, resp).Query().Get("state")
	resp, body := c.get(f.srv.URL + "/auth/callback?" + url.Values{"state": {txn}, "error": {"server_error"},
		"error_description": {upstreamDetail}}.Encode())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)

	// A new sign-in, revoked.
	_, rt := c.login()
	r, err := http.PostForm(f.srv.URL+"/revoke", url.Values{"client_id": {c.id}, "token": {rt}})
	require.NoError(t, err)
	r.Body.Close()

	tap.mu.Lock()
	cognitoTokens := append([]string(nil), tap.tokens...)
	tap.mu.Unlock()
	require.NotEmpty(t, cognitoTokens)
	secrets := append([]string{"upstream-secret-value", string(testMasterSecret), upstreamDetail}, cognitoTokens...)

	logs := f.logs.String()
	for _, s := range append(secrets, issued...) {
		for _, part := range secretParts(s) {
			assert.NotContains(t, logs, part, "a secret or token, or a part of one, reached the log")
		}
	}
	for _, resp := range f.responses.all() {
		text := resp.Body + headerText(resp.Header)
		for _, s := range secrets {
			assert.NotContains(t, text, s, "%s %d leaks a secret", resp.Path, resp.Status)
		}
		for _, s := range issued {
			handedOver := resp.Status == http.StatusOK && resp.Path == "/token" ||
				resp.Status == http.StatusFound && resp.Path == "/auth/callback"
			if !handedOver {
				assert.NotContains(t, text, s, "%s %d carries a token it should not", resp.Path, resp.Status)
			}
		}
	}
}

// secretParts are s and, for a token, each of its dot-separated parts
// of 16 bytes or more (a JWS's header, claims and signature; a refresh
// token's MAC), and s's first and last 16 bytes: a log that held part of a
// token, cut or split, leaks it too.
func secretParts(s string) []string {
	parts := []string{s}
	for part := range strings.SplitSeq(s, ".") {
		if len(part) >= 16 && part != s {
			parts = append(parts, part)
		}
	}
	if len(s) > 32 {
		parts = append(parts, s[:16], s[len(s)-16:])
	}
	return parts
}

func headerText(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
	}
	return b.String()
}
