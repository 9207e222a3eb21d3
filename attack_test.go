package cognitomcp_test

// The attack matrix: one table of named attacks on the proxy, its MCP
// endpoint and the resource-server middleware, drawn from RFC 9700, the MCP
// security best practices and the advisories against the Python reference
// (FastMCP's OAuthProxy). SECURITY.md maps each threat to its rows.
//
// Every row gets a fresh proxy (its own server, store, keys and app client)
// in front of the fake Cognito the rows share, arranges a scene (a
// registered client, a pending consent, a code, tokens…), snapshots the
// store writes and Cognito's request counters, runs the attack, and the
// runner checks for every row:
//
//   - the exact status and OAuth error code (JSON "error", the error page's
//     code, or the error parameter of a redirect to the client);
//   - the WWW-Authenticate error attribute, where the row names one;
//   - no token in the answer (no access_token / refresh_token member, no
//     code parameter in a Location);
//   - a Location only where the row expects one: an error redirect to the
//     client's own redirect URI (with iss, never a code) or the proxy's
//     consent page; no redirect anywhere else;
//   - no store write of a kind the row does not allow (nothing issued);
//   - Cognito's request counters moved exactly as the row says (default:
//     not at all), and the attacker's server never contacted;
//   - no-store on every error.
//
// Then the row's check asserts what must still hold afterwards: a grant
// still usable, a family dead, a code still redeemable or burned.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
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

// ---------------------------------------------------------------------------
// The environment of one row.

// attackSigningKID and attackSigningSecret are the proxy's HS256 signing key
// in the attack environment, known to the test so that rows can forge tokens
// that are signed right and wrong in their claims only.
const attackSigningKID = "attack-k1"

var attackSigningSecret = bytes.Repeat([]byte("S"), 32)

// attackEnv is the proxy fixture plus what the attacks need: a store that
// counts writes per record kind, a resource server that verifies Cognito
// access tokens directly (RequireToken with a Verifier), and an attacker's
// server that serves a JWKS of the attacker's key and counts its hits.
type attackEnv struct {
	*proxyFixture
	store    *attackStore
	rs       *httptest.Server
	evil     *httptest.Server
	evilHits atomic.Int32
}

// attackPool is the fake Cognito the rows share (one RSA key generation, not
// one per row), with its clock. Rows run one after another, so the pool's
// request counters move only for the row that runs.
type attackPool struct {
	pool  *cognitotest.UserPool
	clock *testClock
}

func newAttackPool(t *testing.T) *attackPool {
	clock := newTestClock()
	return &attackPool{pool: newTestPool(t, clock), clock: clock}
}

// newAttackEnv builds what newProxyFixture builds, on the shared pool: a
// proxy with its own server, app client, store and logs.
func newAttackEnv(t *testing.T, shared *attackPool, mod func(*cognitomcp.ProxyConfig)) *attackEnv {
	t.Helper()
	a := &attackEnv{store: &attackStore{MemoryStore: cognitomcp.NewMemoryStore(), sets: map[string]int{}}}
	a.evil = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.evilHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(attackerJWKS())
	}))
	t.Cleanup(a.evil.Close)

	f := newProxyFixtureOn(t, shared.pool, shared.clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Keys.SigningKeys = []cognitomcp.SigningKey{{ID: attackSigningKID, Secret: attackSigningSecret}}
		cfg.Store = a.store
		if mod != nil {
			mod(cfg)
		}
	})
	a.proxyFixture = f

	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		IssuerURL: a.pool.Issuer, ClientIDs: []string{a.app.ID}, HTTPClient: a.pool.HTTPClient(),
		Now: a.clock.Now, CacheSize: -1,
	})
	require.NoError(t, err)
	a.rs = httptest.NewServer(cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier: v, ResourceMetadataURL: a.srv.URL + "/.well-known/oauth-protected-resource/rs",
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := cognitomcp.ClaimsFromContext(r.Context())
		_ = json.NewEncoder(w).Encode(map[string]any{"username": c.Username, "sub": c.Subject})
	})))
	t.Cleanup(a.rs.Close)
	return a
}

// attackStore is a MemoryStore that counts Set calls per record kind (the
// prefix of the proxy's store keys: client, txn, csrf, code, codeused,
// grant, revoked, lock, consent).
type attackStore struct {
	*cognitomcp.MemoryStore
	mu   sync.Mutex
	sets map[string]int
}

func (s *attackStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	kind, _, _ := strings.Cut(key, ":")
	s.mu.Lock()
	s.sets[kind]++
	s.mu.Unlock()
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func (s *attackStore) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.sets)
}

// attackEndpoints are the fake Cognito counters every row watches.
var attackEndpoints = []cognitotest.Endpoint{
	cognitotest.EndpointToken, cognitotest.EndpointRevoke, cognitotest.EndpointAuthorize,
	cognitotest.EndpointJWKS, cognitotest.EndpointDiscovery, cognitotest.EndpointUserInfo,
}

func (a *attackEnv) upstreamCounts() map[cognitotest.Endpoint]int {
	m := map[cognitotest.Endpoint]int{}
	for _, e := range attackEndpoints {
		m[e] = a.pool.Requests(e)
	}
	return m
}

// The attacker's RSA key, and a JWKS publishing it, made once.
var (
	attackerKeyOnce sync.Once
	attackerKeyVal  *rsa.PrivateKey
)

func attackerKey() *rsa.PrivateKey {
	attackerKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		attackerKeyVal = k
	})
	return attackerKeyVal
}

func attackerJWKS() []byte {
	k := attackerKey()
	e := []byte{1, 0, 1}
	b, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "evil", "use": "sig", "alg": "RS256", "n": b64e(k.N.Bytes()), "e": b64e(e)}}})
	return b
}

// ---------------------------------------------------------------------------
// Scenes: what a row sets up before the attack.

// attackScene holds what arrange set up for act and check.
type attackScene struct {
	c, other        *oauthClient // a registered client (loopbackRedirect) and another one
	redirect        string       // where an error redirect must go; default c.redirect
	code            string       // an unredeemed code of c
	access, refresh string       // tokens of c
	form            url.Values   // a consent form of c (txn, csrf), its cookie in c's browser
	callback        string       // Cognito's redirect back to the proxy, for c's browser
	v               map[string]string
}

func (a *attackEnv) withClient(s *attackScene) {
	if s.c == nil {
		s.c = a.register(loopbackRedirect)
	}
}

func (a *attackEnv) withCode(s *attackScene) {
	a.withClient(s)
	s.code = s.c.signIn(nil).Get("code")
	require.NotEmpty(a.t, s.code)
}

func (a *attackEnv) withTokens(s *attackScene) {
	a.withClient(s)
	s.access, s.refresh = s.c.login()
}

// withConsent starts an authorization in c's browser and fetches the consent
// page: s.form holds its txn and csrf, c's cookie jar the CSRF cookie.
func (a *attackEnv) withConsent(s *attackScene) {
	a.withClient(s)
	s.form = a.consentOf(s.c)
}

func (a *attackEnv) consentOf(c *oauthClient) url.Values {
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(a.t, http.StatusFound, resp.StatusCode, body)
	form, _ := c.consentForm(location(a.t, resp).String())
	return form
}

// withCallback runs c's browser through consent and Cognito (auto-login) up
// to the callback, which it does not visit: s.callback is Cognito's redirect
// to the proxy, and c's jar holds the binding cookie.
func (a *attackEnv) withCallback(s *attackScene) {
	a.withClient(s)
	s.callback = a.callbackOf(s.c)
}

func (a *attackEnv) callbackOf(c *oauthClient) string {
	form := a.consentOf(c)
	form.Set("action", "approve")
	resp, body := c.postForm(a.srv.URL+"/consent", form)
	require.Equal(a.t, http.StatusFound, resp.StatusCode, body)
	resp, body = c.get(location(a.t, resp).String())
	require.Equal(a.t, http.StatusFound, resp.StatusCode, body)
	cb := location(a.t, resp)
	require.Equal(a.t, "/auth/callback", cb.Path)
	return cb.String()
}

// ---------------------------------------------------------------------------
// Requests and their outcomes.

// attackOutcome is a response with its body read.
type attackOutcome struct {
	status int
	header http.Header
	body   string
}

var errorPageCode = regexp.MustCompile(`id="code">([^<]*)<`)

func (o *attackOutcome) location() *url.URL {
	if o.header.Get("Location") == "" {
		return nil
	}
	u, err := url.Parse(o.header.Get("Location"))
	if err != nil {
		return &url.URL{Opaque: "unparsable"}
	}
	return u
}

// code is the OAuth error code of the answer: the error parameter of a
// redirect, the "error" member of a JSON body, or the code of an error page.
func (o *attackOutcome) code() string {
	if u := o.location(); u != nil {
		return u.Query().Get("error")
	}
	switch ct := o.header.Get("Content-Type"); {
	case strings.HasPrefix(ct, "application/json"):
		var m map[string]any
		if json.Unmarshal([]byte(o.body), &m) == nil {
			s, _ := m["error"].(string)
			return s
		}
	case strings.HasPrefix(ct, "text/html"):
		if m := errorPageCode.FindStringSubmatch(o.body); m != nil {
			return m[1]
		}
	}
	return ""
}

var challengeError = regexp.MustCompile(`error="([^"]*)"`)

// challenge is the error attribute of WWW-Authenticate: "none" without the
// header, "bare" for a challenge without error.
func (o *attackOutcome) challenge() string {
	h := o.header.Values("WWW-Authenticate")
	switch {
	case len(h) == 0:
		return "none"
	case len(h) > 1:
		return "several"
	}
	if m := challengeError.FindStringSubmatch(h[0]); m != nil {
		return m[1]
	}
	return "bare"
}

// noRedirects is an HTTP client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (a *attackEnv) send(c *http.Client, req *http.Request) *attackOutcome {
	a.t.Helper()
	resp, err := c.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &attackOutcome{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// do sends a request with no cookies; target is a path of the proxy or an
// absolute URL.
func (a *attackEnv) do(method, target string, hdr http.Header, body string) *attackOutcome {
	a.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = a.srv.URL + target
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	require.NoError(a.t, err)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	return a.send(noRedirects, req)
}

// browse is a GET in c's browser (its cookies, no redirects followed).
func (a *attackEnv) browse(c *oauthClient, u string) *attackOutcome {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(a.t, err)
	return a.send(c.browser, req)
}

// submit POSTs form to the proxy's path in c's browser.
func (a *attackEnv) submit(c *oauthClient, path string, form url.Values) *attackOutcome {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(a.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return a.send(c.browser, req)
}

var formHeader = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

func (a *attackEnv) tokenPost(form url.Values) *attackOutcome {
	return a.do(http.MethodPost, "/token", formHeader, form.Encode())
}

func (a *attackEnv) registerJSON(body string) *attackOutcome {
	return a.do(http.MethodPost, "/register", http.Header{"Content-Type": {"application/json"}}, body)
}

// registration is a registration body with the given redirect URIs and
// extra members.
func registration(redirects []string, extra map[string]any) string {
	m := map[string]any{"client_name": "Some Client", "redirect_uris": redirects, "token_endpoint_auth_method": "none"}
	maps.Copy(m, extra)
	b, _ := json.Marshal(m)
	return string(b)
}

// mcpWith POSTs to the proxy's MCP endpoint with the given headers.
func (a *attackEnv) mcpWith(hdr http.Header) *attackOutcome {
	a.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	maps.Copy(h, hdr)
	return a.do(http.MethodPost, a.proxy.Resource(), h, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
}

func (a *attackEnv) mcpBearer(tok string) *attackOutcome {
	return a.mcpWith(http.Header{"Authorization": {"Bearer " + tok}})
}

// rsBearer presents tok to the resource server that verifies Cognito access
// tokens directly.
func (a *attackEnv) rsBearer(tok string) *attackOutcome {
	return a.do(http.MethodPost, a.rs.URL+"/rs", http.Header{"Authorization": {"Bearer " + tok}}, "{}")
}

// ---------------------------------------------------------------------------
// What must still hold afterwards.

func (a *attackEnv) redeemForm(c *oauthClient, code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}, "resource": {a.proxy.Resource()}}
}

// redeemStatus is the status of a correct redemption of code by c.
func (a *attackEnv) redeemStatus(c *oauthClient, code string) int {
	return a.tokenPost(a.redeemForm(c, code)).status
}

func refreshOf(c *oauthClient, rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}}
}

func (a *attackEnv) refreshStatus(c *oauthClient, rt string) int {
	return a.tokenPost(refreshOf(c, rt)).status
}

func (a *attackEnv) mcpStatus(tok string) int { return a.mcpBearer(tok).status }

// assertCodeAlive: the attack left the code redeemable by its client.
func assertCodeAlive(t *testing.T, a *attackEnv, s *attackScene) {
	assert.Equal(t, http.StatusOK, a.redeemStatus(s.c, s.code), "the code must still be redeemable by its client")
}

// assertCodeBurned: the code was taken by the attack and is single use.
func assertCodeBurned(t *testing.T, a *attackEnv, s *attackScene) {
	assert.Equal(t, http.StatusUnauthorized, a.redeemStatus(s.c, s.code), "a code presented wrongly is burned")
}

// assertGrantAlive: the attack did not revoke c's sign-in.
func assertGrantAlive(t *testing.T, a *attackEnv, s *attackScene) {
	assert.Equal(t, http.StatusOK, a.mcpStatus(s.access), "the access token must still work")
	assert.Equal(t, http.StatusOK, a.refreshStatus(s.c, s.refresh), "the refresh token must still work")
}

// assertGrantDead: the sign-in is revoked on every replica: the refresh
// token is refused at once, the access token once RevocationCheckInterval
// has passed (at once when this replica never cached it).
func assertGrantDead(t *testing.T, a *attackEnv, rt, access string, c *oauthClient) {
	assert.Equal(t, http.StatusUnauthorized, a.refreshStatus(c, rt), "the family's refresh token must be dead")
	a.clock.Advance(11 * time.Second)
	assert.Equal(t, http.StatusUnauthorized, a.mcpStatus(access), "the family's access token must be dead")
}

// assertCallbackCompletes: the rightful browser still finishes its sign-in.
func assertCallbackCompletes(t *testing.T, a *attackEnv, s *attackScene) {
	o := a.browse(s.c, s.callback)
	require.Equal(t, http.StatusFound, o.status, o.body)
	q := o.location().Query()
	assert.NotEmpty(t, q.Get("code"), "the rightful browser still gets its code")
	assert.Equal(t, "client-state", q.Get("state"))
}

// assertConsentStillWorks: the rightful browser can still approve.
func assertConsentStillWorks(t *testing.T, a *attackEnv, s *attackScene) {
	form := maps.Clone(s.form)
	form.Set("action", "approve")
	o := a.submit(s.c, "/consent", form)
	require.Equal(t, http.StatusFound, o.status, o.body)
	assert.Equal(t, a.pool.DomainURL+"/oauth2/authorize", o.location().Scheme+"://"+o.location().Host+o.location().Path)
}

// ---------------------------------------------------------------------------
// Forged tokens.

// proxyClaimsOf returns the claims of a proxy access token.
func proxyClaimsOf(t *testing.T, tok string) map[string]any {
	_, claims, err := cognitotest.DecodeJWT(tok)
	require.NoError(t, err)
	return claims
}

// signProxy signs claims as the proxy does (HS256, kid, typ at+jwt) with secret.
func signProxy(claims map[string]any, secret []byte) string {
	return cognitotest.SignWithHS256(map[string]any{"kid": attackSigningKID, "typ": "at+jwt"}, claims, secret)
}

// reProxy is s.access with its claims edited and signed with the proxy's own key.
func reProxy(t *testing.T, s *attackScene, edit func(map[string]any)) string {
	c := proxyClaimsOf(t, s.access)
	edit(c)
	return signProxy(c, attackSigningSecret)
}

// cognitoAccess is a genuine Cognito access token of alice for the proxy's
// app client, its header and claims.
func (a *attackEnv) cognitoAccess() (tok string, header, claims map[string]any) {
	tok = a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID})
	header, claims, err := cognitotest.DecodeJWT(tok)
	require.NoError(a.t, err)
	return tok, header, claims
}

func publicKeyPEM(t *testing.T, k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func publicKeyDER(t *testing.T, k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err)
	return der
}

// ---------------------------------------------------------------------------
// The runner.

// attackRow is one attack. See the top of the file for what the runner
// checks of every row.
type attackRow struct {
	name    string                        // "category/what is attempted"
	config  func(*cognitomcp.ProxyConfig) // proxy configuration, when not the default
	arrange func(a *attackEnv, s *attackScene)
	act     func(a *attackEnv, s *attackScene) *attackOutcome

	status int    // exact HTTP status
	code   string // exact OAuth error code; "" for none
	// challenge is the WWW-Authenticate error attribute: "" not checked,
	// "none" no header, "bare" a challenge without error, else the code.
	challenge string
	// location is where a redirect may go: "" nowhere, "client" an error
	// redirect to s.redirect, "consent" the proxy's consent page.
	location string
	writes   []string                     // store kinds the attack may write ("client": a new registration's first authorization request extends it)
	upstream map[cognitotest.Endpoint]int // expected change of Cognito's counters
	check    func(t *testing.T, a *attackEnv, s *attackScene, o *attackOutcome)
}

func runAttack(t *testing.T, shared *attackPool, row attackRow) {
	a := newAttackEnv(t, shared, row.config)
	s := &attackScene{v: map[string]string{}}
	if row.arrange != nil {
		row.arrange(a, s)
	}
	if s.redirect == "" && s.c != nil {
		s.redirect = s.c.redirect
	}
	writesBefore, upBefore, logsBefore := a.store.snapshot(), a.upstreamCounts(), len(a.logs.String())
	o := row.act(a, s)
	writesAfter, upAfter := a.store.snapshot(), a.upstreamCounts()

	require.Equal(t, row.status, o.status, "status; body: %.300s", o.body)
	assert.Equal(t, row.code, o.code(), "OAuth error code; body: %.300s", o.body)
	if row.challenge != "" {
		assert.Equal(t, row.challenge, o.challenge(), "WWW-Authenticate: %q", o.header.Values("WWW-Authenticate"))
	}
	if o.status >= 400 {
		assert.Contains(t, o.header.Get("Cache-Control"), "no-store", "errors are not cached")
	}

	// Nothing issued: no token in the answer, no code in a redirect.
	var members map[string]any
	if json.Unmarshal([]byte(o.body), &members) == nil {
		for _, k := range []string{"access_token", "refresh_token", "id_token", "code", "client_secret"} {
			assert.NotContains(t, members, k, "the answer issues a %s", k)
		}
	}
	loc := o.location()
	switch row.location {
	case "":
		assert.Nil(t, loc, "no redirect at all, least of all to an untrusted place")
	case "client":
		if assert.NotNil(t, loc, "an error redirect to the client") {
			assert.Equal(t, s.redirect, loc.Scheme+"://"+loc.Host+loc.Path, "only to the client's registered redirect URI")
			assert.Empty(t, loc.Query().Get("code"), "an error redirect carries no code")
			assert.Equal(t, a.proxy.Issuer(), loc.Query().Get("iss"), "RFC 9207 iss on every authorization response")
		}
	case "consent":
		if assert.NotNil(t, loc) {
			assert.Equal(t, a.srv.URL+"/consent", loc.Scheme+"://"+loc.Host+loc.Path)
		}
	default:
		t.Fatalf("row has unknown location %q", row.location)
	}

	// Nothing stored but what the row allows.
	for kind, n := range writesAfter {
		if n != writesBefore[kind] && !slices.Contains(row.writes, kind) {
			t.Errorf("the attack wrote %d %q record(s) to the store", n-writesBefore[kind], kind)
		}
	}
	// Cognito called exactly as expected; the attacker's server never.
	for _, e := range attackEndpoints {
		assert.Equal(t, row.upstream[e], upAfter[e]-upBefore[e], "requests to Cognito's %s endpoint", e)
	}
	assert.Zero(t, a.evilHits.Load(), "the attacker's server was contacted")
	// No token of the scene in the logs written during the attack.
	logs := a.logs.String()[logsBefore:]
	for _, secret := range []string{s.code, s.access, s.refresh} {
		if secret != "" {
			assert.NotContains(t, logs, secret, "a token reached the log")
		}
	}
	if row.check != nil {
		row.check(t, a, s, o)
	}
}

// TestAttack runs the attack matrix. Run one category with
// go test -run 'TestAttack/token_confusion'.
func TestAttack(t *testing.T) {
	shared := newAttackPool(t)
	names := map[string]bool{}
	for _, row := range attackMatrix() {
		require.False(t, names[row.name], "duplicate row %q", row.name)
		names[row.name] = true
		t.Run(row.name, func(t *testing.T) { runAttack(t, shared, row) })
	}
}

// TestAttackMatrixDocumented keeps SECURITY.md and the matrix in step: every
// row is named there.
func TestAttackMatrixDocumented(t *testing.T) {
	doc, err := readSecurityDoc()
	require.NoError(t, err)
	rows := attackMatrix()
	require.GreaterOrEqual(t, len(rows), 60)
	for _, row := range rows {
		assert.Contains(t, doc, "`"+row.name+"`", "SECURITY.md does not name the row")
	}
}

// ---------------------------------------------------------------------------
// Shorthands for the rows.

// up is a map of expected changes of Cognito's request counters.
func up(kv ...any) map[cognitotest.Endpoint]int {
	m := map[cognitotest.Endpoint]int{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(cognitotest.Endpoint)] = kv[i+1].(int)
	}
	return m
}

// authorizeWith is /authorize in c's browser with the usual parameters edited.
func (a *attackEnv) authorizeWith(c *oauthClient, edit func(url.Values)) *attackOutcome {
	return a.browse(c, c.authorizeURL(edit))
}

// registerRedirect is a registration with one redirect URI.
func (a *attackEnv) registerRedirect(uri string) *attackOutcome {
	return a.registerJSON(registration([]string{uri}, nil))
}

// clientWith registers a client for redirect and puts it in the scene.
func (a *attackEnv) clientWith(s *attackScene, redirect string) {
	s.c = a.register(redirect)
}

// forgeRS resigns a genuine Cognito access token after edit, with sign.
func (a *attackEnv) forgeRS(edit func(h, c map[string]any), sign func(h, c map[string]any) string) string {
	_, h, c := a.cognitoAccess()
	delete(h, "alg")
	edit(h, c)
	return sign(h, c)
}

func byAttacker(h, c map[string]any) string { return cognitotest.SignWithKey(h, c, attackerKey()) }

func nop(map[string]any, map[string]any) {}

// rotated sets the scene of the replay rows: c signed in, and its first
// refresh token rotated once, so s.refresh is the current one and
// s.v["old"] the previous generation.
func (a *attackEnv) rotated(s *attackScene) {
	a.withTokens(s)
	o := a.tokenPost(refreshOf(s.c, s.refresh))
	require.Equal(a.t, http.StatusOK, o.status, o.body)
	var out map[string]any
	require.NoError(a.t, json.Unmarshal([]byte(o.body), &out))
	s.v["old"] = s.refresh
	s.refresh, s.access = out["refresh_token"].(string), out["access_token"].(string)
}

// tamperRefresh changes the refresh token's generation or MAC.
func tamperRefresh(rt string, gen string, mac string) string {
	parts := strings.SplitN(rt, ".", 3)
	if gen != "" {
		parts[1] = gen
	}
	if mac != "" {
		parts[2] = mac
	}
	return strings.Join(parts, ".")
}

// cookieOf returns the cookie of c's browser whose value is value.
func (a *attackEnv) cookieOf(c *oauthClient, value string) *http.Cookie {
	u, _ := url.Parse(a.srv.URL)
	for _, k := range c.browser.Jar.Cookies(u) {
		if k.Value == value {
			return k
		}
	}
	a.t.Fatalf("no cookie with that value")
	return nil
}

// bindingCookie returns the name and value of the binding cookie c's browser
// holds (it holds exactly one after withCallback).
func (a *attackEnv) bindingCookie(c *oauthClient) (name, value string) {
	u, _ := url.Parse(a.srv.URL)
	for _, k := range c.browser.Jar.Cookies(u) {
		if strings.Contains(k.Name, "bind_") {
			return k.Name, k.Value
		}
	}
	a.t.Fatalf("no binding cookie")
	return "", ""
}

func setCookie(a *attackEnv, c *oauthClient, name, value string) {
	u, _ := url.Parse(a.srv.URL)
	c.browser.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

func withParam(u, k, v string) string {
	parsed, _ := url.Parse(u)
	q := parsed.Query()
	q.Set(k, v)
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

func jsonOf(t *testing.T, o *attackOutcome) map[string]any {
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(o.body), &m), o.body)
	return m
}

func readSecurityDoc() (string, error) {
	b, err := os.ReadFile("SECURITY.md")
	return string(b), err
}

// ---------------------------------------------------------------------------
// The matrix.

// attackMatrix is every attack, by category: token confusion (Cognito tokens
// at a resource server, proxy tokens at the MCP endpoint), authorization
// codes and PKCE, redirect URIs, consent, registration, the token endpoint,
// mix-up, headers, DNS rebinding, limits.
func attackMatrix() []attackRow {
	const (
		invalidToken   = "invalid_token"
		invalidRequest = "invalid_request"
		invalidGrant   = "invalid_grant"
		accessDenied   = "access_denied"
		invalidRedir   = "invalid_redirect_uri"
		invalidMeta    = "invalid_client_metadata"
	)
	rs := func(tok func(a *attackEnv, s *attackScene) string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.rsBearer(tok(a, s)) }
	}
	mcp := func(tok func(a *attackEnv, s *attackScene) string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.mcpBearer(tok(a, s)) }
	}
	forged := func(edit func(h, c map[string]any), sign func(h, c map[string]any) string) func(a *attackEnv, s *attackScene) string {
		return func(a *attackEnv, s *attackScene) string { return a.forgeRS(edit, sign) }
	}
	claimsEdit := func(edit func(c map[string]any)) func(a *attackEnv, s *attackScene) string {
		return func(a *attackEnv, s *attackScene) string { return reProxy(a.t, s, edit) }
	}
	register := func(uri string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.registerRedirect(uri) }
	}
	registerBody := func(body string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.registerJSON(body) }
	}
	authorize := func(redirect string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome {
			return a.authorizeWith(s.c, func(v url.Values) { v.Set("redirect_uri", redirect) })
		}
	}
	authorizeEdit := func(edit func(url.Values)) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.authorizeWith(s.c, edit) }
	}
	redeem := func(edit func(a *attackEnv, s *attackScene, v url.Values)) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome {
			form := a.redeemForm(s.c, s.code)
			edit(a, s, form)
			return a.tokenPost(form)
		}
	}
	refresh := func(rt func(s *attackScene) string) func(a *attackEnv, s *attackScene) *attackOutcome {
		return func(a *attackEnv, s *attackScene) *attackOutcome { return a.tokenPost(refreshOf(s.c, rt(s))) }
	}
	withClient := func(a *attackEnv, s *attackScene) { a.withClient(s) }
	withCode := func(a *attackEnv, s *attackScene) { a.withCode(s) }
	withTokens := func(a *attackEnv, s *attackScene) { a.withTokens(s) }
	withConsent := func(a *attackEnv, s *attackScene) { a.withConsent(s) }
	withCallback := func(a *attackEnv, s *attackScene) { a.withCallback(s) }
	clientAt := func(redirect string) func(a *attackEnv, s *attackScene) {
		return func(a *attackEnv, s *attackScene) { a.clientWith(s, redirect) }
	}
	codeAlive := func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) { assertCodeAlive(t, a, s) }
	codeBurned := func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) { assertCodeBurned(t, a, s) }
	grantAlive := func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) { assertGrantAlive(t, a, s) }
	consentWorks := func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) { assertConsentStillWorks(t, a, s) }
	callbackWorks := func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) { assertCallbackCompletes(t, a, s) }
	framingDenied := func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
		assert.Equal(t, "DENY", o.header.Get("X-Frame-Options"))
		csp := o.header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "frame-ancestors 'none'")
		assert.Contains(t, csp, "default-src 'none'")
		assert.Regexp(t, `(^|; )script-src 'nonce-[A-Za-z0-9_-]+'(;|$)`, csp, "no script but the page's own, by its nonce")
		assert.NotContains(t, csp, "unsafe")
	}
	proxyHeader := map[string]any{"kid": attackSigningKID, "typ": "at+jwt"}

	return []attackRow{
		// --- Token confusion: Cognito access tokens at a resource server (RequireToken + Verifier).
		{name: "confusion/rs control: a genuine Cognito access token is admitted",
			act: rs(func(a *attackEnv, _ *attackScene) string { tok, _, _ := a.cognitoAccess(); return tok }), status: 200, challenge: "none"},
		{name: "confusion/rs alg none",
			act:    rs(forged(nop, func(h, c map[string]any) string { return cognitotest.SignWithNone(h, c) })),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs HS256 keyed with the pool's RSA public key (PEM)",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.rsBearer(a.forgeRS(nop, func(h, c map[string]any) string {
					return cognitotest.SignWithHS256(h, c, publicKeyPEM(a.t, a.pool.AccessPublicKey()))
				}))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs HS256 keyed with the pool's RSA public key (DER)",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.rsBearer(a.forgeRS(nop, func(h, c map[string]any) string {
					return cognitotest.SignWithHS256(h, c, publicKeyDER(a.t, a.pool.AccessPublicKey()))
				}))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs kid with a path",
			act:    rs(forged(func(h, _ map[string]any) { h["kid"] = "../../../../../../dev/null" }, byAttacker)),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs kid with an injection",
			act:    rs(forged(func(h, _ map[string]any) { h["kid"] = "x' OR '1'='1\r\nX-Injected: 1" }, byAttacker)),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs kid naming the attacker's URL is not fetched",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.rsBearer(a.forgeRS(func(h, _ map[string]any) { h["kid"] = a.evil.URL + "/jwks.json" }, byAttacker))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs jku to the attacker's JWKS is ignored",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.rsBearer(a.forgeRS(func(h, _ map[string]any) { h["kid"], h["jku"] = "evil", a.evil.URL+"/jwks.json" }, byAttacker))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs x5u to the attacker's certificate is ignored",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.rsBearer(a.forgeRS(func(h, _ map[string]any) { h["kid"], h["x5u"] = "evil", a.evil.URL+"/cert.pem" }, byAttacker))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs embedded jwk of the attacker under the pool's kid is ignored",
			act: rs(forged(func(h, _ map[string]any) {
				h["jwk"] = map[string]any{"kty": "RSA", "n": b64e(attackerKey().N.Bytes()), "e": "AQAB"}
			}, byAttacker)),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs embedded x5c under the pool's kid is ignored",
			act:    rs(forged(func(h, _ map[string]any) { h["x5c"] = []string{b64e([]byte("not the pool's certificate"))} }, byAttacker)),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs ID token as access token",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs proxy access token where a Cognito token is required", arrange: withTokens,
			act: rs(func(_ *attackEnv, s *attackScene) string { return s.access }), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs token of another pool",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				other := cognitotest.NewUserPool(cognitotest.Options{PoolID: "us-east-1_OtherPool9", Now: a.clock.Now})
				a.t.Cleanup(other.Close)
				other.AddUser(cognitotest.User{Username: "alice", Password: "pw"})
				return other.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs token naming another pool's issuer",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID,
					Issuer: "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_OtherPool9"})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs token of another app client",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: "anotherappclient0000000000"})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs expired",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID,
					IssuedAt: a.clock.Now().Add(-2 * time.Hour), TTL: time.Hour})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs not yet valid",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID,
					Claims: map[string]any{"nbf": a.clock.Now().Add(10 * time.Minute).Unix()}})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs issued in the future",
			act: rs(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID,
					IssuedAt: a.clock.Now().Add(10 * time.Minute)})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/rs a flood of unknown kids fetches the JWKS once per window",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				a.clock.Advance(2 * time.Minute) // past the refetch window of the start-up fetch
				var o *attackOutcome
				for i := range 20 {
					o = a.rsBearer(a.forgeRS(func(h, _ map[string]any) { h["kid"] = fmt.Sprintf("unknown-%d", i) }, byAttacker))
				}
				return o
			}, status: 401, code: invalidToken, challenge: invalidToken, upstream: up(cognitotest.EndpointJWKS, 1)},

		// --- Token confusion: proxy tokens at the MCP endpoint.
		{name: "confusion/mcp control: genuine claims re-signed with the proxy's key are admitted", arrange: withTokens,
			act: mcp(claimsEdit(func(map[string]any) {})), status: 200, challenge: "none"},
		{name: "confusion/mcp Cognito access token where a proxy token is required",
			act:    mcp(func(a *attackEnv, _ *attackScene) string { tok, _, _ := a.cognitoAccess(); return tok }),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp Cognito ID token where a proxy token is required",
			act: mcp(func(a *attackEnv, _ *attackScene) string {
				return a.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: a.app.ID})
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp alg none", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				return cognitotest.SignWithNone(proxyHeader, proxyClaimsOf(a.t, s.access))
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp HS256 under another secret with the proxy's kid", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				return signProxy(proxyClaimsOf(a.t, s.access), bytes.Repeat([]byte("x"), 32))
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp ES256 header on the HS256 key", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				h := b64e(mustJSON(a.t, map[string]any{"alg": "ES256", "kid": attackSigningKID, "typ": "at+jwt"}))
				return h + "." + b64e(mustJSON(a.t, proxyClaimsOf(a.t, s.access))) + "." + b64e(make([]byte, 64))
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp kid with a path", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				return cognitotest.SignWithHS256(map[string]any{"kid": "../" + attackSigningKID, "typ": "at+jwt"},
					proxyClaimsOf(a.t, s.access), attackSigningSecret)
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp embedded jwk with the attacker's own secret is ignored", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				secret := bytes.Repeat([]byte("e"), 32)
				return cognitotest.SignWithHS256(map[string]any{"kid": "attacker", "typ": "at+jwt",
					"jwk": map[string]any{"kty": "oct", "k": b64e(secret)}}, proxyClaimsOf(a.t, s.access), secret)
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp jku to the attacker's JWKS is ignored", arrange: withTokens,
			act: mcp(func(a *attackEnv, s *attackScene) string {
				return cognitotest.SignWithKey(map[string]any{"kid": "evil", "typ": "at+jwt", "jku": a.evil.URL + "/jwks.json"},
					proxyClaimsOf(a.t, s.access), attackerKey())
			}), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp token for another resource", arrange: withTokens,
			act:    mcp(claimsEdit(func(c map[string]any) { c["aud"] = strings.TrimSuffix(c["aud"].(string), "/mcp") + "/other-mcp" })),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp audience with a trailing slash", arrange: withTokens,
			act:    mcp(claimsEdit(func(c map[string]any) { c["aud"] = c["aud"].(string) + "/" })),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp audience as a list holding the resource", arrange: withTokens,
			act:    mcp(claimsEdit(func(c map[string]any) { c["aud"] = []any{c["aud"], "https://other.example/mcp"} })),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp token of another issuer", arrange: withTokens,
			act:    mcp(claimsEdit(func(c map[string]any) { c["iss"] = "https://other-as.example" })),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp expired", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				a.clock.Advance(time.Hour + 6*time.Second) // past exp and the 5 s skew
				return a.mcpBearer(s.access)
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp not yet valid", arrange: withTokens,
			act: mcp(claimsEdit(func(c map[string]any) {
				c["iat"] = time.Unix(0, 0).Add(time.Duration(mustInt(c["iat"]))*time.Second + 10*time.Minute).Unix()
			})), status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp revoked access token",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withTokens(s)
				o := a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.c.id}, "token": {s.access},
					"token_type_hint": {"access_token"}}.Encode())
				require.Equal(a.t, http.StatusOK, o.status)
			},
			act:    mcp(func(_ *attackEnv, s *attackScene) string { return s.access }),
			status: 401, code: invalidToken, challenge: invalidToken,
			check: func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) {
				assert.Equal(t, http.StatusOK, a.refreshStatus(s.c, s.refresh), "only that access token was revoked")
			}},
		{name: "confusion/mcp access token of a revoked sign-in",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withTokens(s)
				o := a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.c.id}, "token": {s.refresh}}.Encode())
				require.Equal(a.t, http.StatusOK, o.status)
			},
			act:    mcp(func(_ *attackEnv, s *attackScene) string { return s.access }),
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp claims naming another client on a real grant",
			arrange: func(a *attackEnv, s *attackScene) { a.withTokens(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpBearer(reProxy(a.t, s, func(c map[string]any) { c["client_id"] = s.other.id }))
			}, status: 401, code: invalidToken, challenge: invalidToken},
		{name: "confusion/mcp token without a grant id", arrange: withTokens,
			act:    mcp(claimsEdit(func(c map[string]any) { delete(c, "gid") })),
			status: 401, code: invalidToken, challenge: invalidToken},

		// --- Authorization codes and PKCE.
		{name: "codes/replay revokes what the code issued",
			arrange: func(a *attackEnv, s *attackScene) { a.withCode(s); s.access, s.refresh = s.c.redeem(s.code) },
			act:     redeem(func(*attackEnv, *attackScene, url.Values) {}),
			status:  401, code: invalidGrant, upstream: up(cognitotest.EndpointRevoke, 1),
			check: func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) {
				assertGrantDead(t, a, s.refresh, s.access, s.c)
			}},
		{name: "codes/redeemed by another client",
			arrange: func(a *attackEnv, s *attackScene) { a.withCode(s); s.other = a.register(loopbackRedirect) },
			act:     redeem(func(_ *attackEnv, s *attackScene, v url.Values) { v.Set("client_id", s.other.id) }),
			status:  401, code: invalidGrant, check: codeBurned},
		{name: "codes/another redirect URI", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:8976/other") }),
			status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/another loopback port than authorized", arrange: withCode,
			act: redeem(func(_ *attackEnv, _ *attackScene, v url.Values) {
				v.Set("redirect_uri", "http://127.0.0.1:9999/callback")
			}),
			status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/redirect_uri left out though the authorization named it", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Del("redirect_uri") }),
			status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/PKCE wrong verifier", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code_verifier", strings.Repeat("w", 43)) }),
			status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/PKCE verifier missing", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Del("code_verifier") }),
			status: 400, code: invalidRequest, check: codeAlive},
		{name: "codes/PKCE verifier too short", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code_verifier", strings.Repeat("v", 42)) }),
			status: 400, code: invalidRequest, check: codeAlive},
		{name: "codes/PKCE verifier too long", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code_verifier", strings.Repeat("v", 129)) }),
			status: 400, code: invalidRequest, check: codeAlive},
		{name: "codes/PKCE verifier outside the unreserved characters", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code_verifier", strings.Repeat("v", 42)+"/") }),
			status: 400, code: invalidRequest, check: codeAlive},
		{name: "codes/PKCE plain: the observed challenge as verifier", arrange: withCode,
			act: redeem(func(_ *attackEnv, s *attackScene, v url.Values) {
				v.Set("code_verifier", challengeOf(s.c.verifier))
			}), status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/expired", arrange: withCode,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				a.clock.Advance(5*time.Minute + time.Second)
				return a.tokenPost(a.redeemForm(s.c, s.code))
			}, status: 401, code: invalidGrant, check: codeBurned},
		{name: "codes/unknown code", arrange: withClient,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code", strings.Repeat("A", 43)) }),
			status: 401, code: invalidGrant},
		{name: "codes/a code longer than any this server makes", arrange: withClient,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("code", strings.Repeat("A", 129)) }),
			status: 401, code: invalidGrant},
		{name: "codes/resource of another server", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("resource", "https://other.example/mcp") }),
			status: 400, code: "invalid_target", check: codeBurned},
		{name: "redirects/an authorize error for an https redirect URI shows a page, never a redirect",
			arrange: func(a *attackEnv, s *attackScene) { a.clientWith(s, "https://client.example/cb") },
			act:     authorizeEdit(func(v url.Values) { v.Set("response_type", "token") }),
			status:  400, code: "unsupported_response_type"},
		{name: "redirects/an authorize error for a redirect URI an operator's pattern allows goes back to the client",
			config:  func(cfg *cognitomcp.ProxyConfig) { cfg.AllowedRedirectURIs = []string{"https://client.example/*"} },
			arrange: func(a *attackEnv, s *attackScene) { a.clientWith(s, "https://client.example/cb") },
			act:     authorizeEdit(func(v url.Values) { v.Set("response_type", "token") }),
			status:  302, code: "unsupported_response_type", location: "client"},
		{name: "codes/authorize without PKCE", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }),
			status: 302, code: invalidRequest, location: "client"},
		{name: "codes/authorize with PKCE plain", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.authorizeWith(s.c, func(v url.Values) {
					v.Set("code_challenge_method", "plain")
					v.Set("code_challenge", s.c.verifier)
				})
			}, status: 302, code: invalidRequest, location: "client"},
		{name: "codes/authorize with a challenge too short", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.authorizeWith(s.c, func(v url.Values) { v.Set("code_challenge", challengeOf(s.c.verifier)[:42]) })
			}, status: 302, code: invalidRequest, location: "client"},
		{name: "codes/authorize with a challenge too long", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.authorizeWith(s.c, func(v url.Values) { v.Set("code_challenge", challengeOf(s.c.verifier)+"A") })
			}, status: 302, code: invalidRequest, location: "client"},
		{name: "codes/authorize with a challenge that is not base64url", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("code_challenge", strings.Repeat("+", 43)) }),
			status: 302, code: invalidRequest, location: "client"},

		// --- Redirect URIs: registration refuses them.
		{name: "redirects/register userinfo before a foreign host", act: register("http://localhost@evil.example/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register userinfo with a port", act: register("https://app.example:443@evil.example/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register dot segments", act: register("https://app.example/cb/../../admin"), status: 400, code: invalidRedir},
		{name: "redirects/register percent-encoded dot segments", act: register("https://app.example/cb/%2e%2E/admin"), status: 400, code: invalidRedir},
		{name: "redirects/register double-encoded dot segments", act: register("https://app.example/cb/%252e%252e/admin"), status: 400, code: invalidRedir},
		{name: "redirects/register an encoded slash", act: register("https://app.example/cb%2f..%2fadmin"), status: 400, code: invalidRedir},
		{name: "redirects/register a backslash", act: register(`https://app.example\@evil.example/cb`), status: 400, code: invalidRedir},
		{name: "redirects/register a unicode look-alike host", act: register("https://\u0430pple.com/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register a fragment", act: register("https://app.example/cb#frag"), status: 400, code: invalidRedir},
		{name: "redirects/register javascript:", act: register("javascript:alert(document.cookie)"), status: 400, code: invalidRedir},
		{name: "redirects/register JavaScript: in mixed case", act: register("JaVaScRiPt://app.example/%0aalert(1)"), status: 400, code: invalidRedir},
		{name: "redirects/register data:", act: register("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="), status: 400, code: invalidRedir},
		{name: "redirects/register file:", act: register("file:///etc/passwd"), status: 400, code: invalidRedir},
		{name: "redirects/register vbscript:", act: register("vbscript:msgbox(1)"), status: 400, code: invalidRedir},
		{name: "redirects/register plain http off loopback", act: register("http://app.example/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register localhost.evil.example", act: register("http://localhost.evil.example/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register IPv4-mapped loopback", act: register("http://[::ffff:127.0.0.1]:8976/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register the unspecified address", act: register("http://0.0.0.0:8976/cb"), status: 400, code: invalidRedir},
		{name: "redirects/register markup in the URI", act: register(`http://127.0.0.1:8976/cb?"><script>alert(1)</script>`), status: 400, code: invalidRedir},

		// --- Redirect URIs: /authorize never redirects to one that is not registered.
		{name: "redirects/authorize userinfo", arrange: withClient, act: authorize("http://127.0.0.1:8976@evil.example/callback"), status: 400, code: invalidRequest},
		{name: "redirects/authorize mixed-case scheme on loopback", arrange: withClient, act: authorize("HTTP://127.0.0.1:8976/callback"), status: 400, code: invalidRequest},
		{name: "redirects/authorize mixed-case host", arrange: clientAt("https://app.example/cb"), act: authorize("https://APP.EXAMPLE/cb"), status: 400, code: invalidRequest},
		{name: "redirects/authorize punycode look-alike of the registered host", arrange: clientAt("https://apple.com/cb"), act: authorize("https://xn--pple-43d.com/cb"), status: 400, code: invalidRequest},
		{name: "redirects/authorize another port on a non-loopback host", arrange: clientAt("https://app.example/cb"), act: authorize("https://app.example:8443/cb"), status: 400, code: invalidRequest},
		{name: "redirects/authorize localhost.evil.example", arrange: clientAt("http://localhost:8976/callback"), act: authorize("http://localhost.evil.example:8976/callback"), status: 400, code: invalidRequest},
		{name: "redirects/authorize another loopback literal", arrange: withClient, act: authorize("http://localhost:8976/callback"), status: 400, code: invalidRequest},
		{name: "redirects/authorize a fragment", arrange: withClient, act: authorize("http://127.0.0.1:8976/callback#x"), status: 400, code: invalidRequest},
		{name: "redirects/authorize encoded dot segments on loopback", arrange: withClient, act: authorize("http://127.0.0.1:9999/x/%2e%2e/callback"), status: 400, code: invalidRequest},
		{name: "redirects/authorize javascript:", arrange: withClient, act: authorize("javascript:alert(1)"), status: 400, code: invalidRequest},
		{name: "redirects/authorize no redirect URI with two registered",
			arrange: func(a *attackEnv, s *attackScene) {
				o := a.registerJSON(registration([]string{loopbackRedirect, "http://127.0.0.1:8977/cb"}, nil))
				require.Equal(a.t, http.StatusCreated, o.status, o.body)
				s.c = a.newClient(jsonOf(a.t, o)["client_id"].(string), loopbackRedirect)
			},
			act: authorizeEdit(func(v url.Values) { v.Del("redirect_uri") }), status: 400, code: invalidRequest},
		{name: "redirects/authorize an unknown client", arrange: withClient,
			act: authorizeEdit(func(v url.Values) { v.Set("client_id", "no-such-client") }), status: 400, code: "invalid_client"},
		{name: "redirects/authorize the Cognito app client's own id without an allow-list", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.authorizeWith(s.c, func(v url.Values) { v.Set("client_id", a.app.ID) })
			}, status: 400, code: "invalid_client"},
		{name: "redirects/a punycode host shows as punycode on the consent page", arrange: clientAt("https://xn--pple-43d.com/cb"),
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				o := a.authorizeWith(s.c, nil)
				require.Equal(a.t, http.StatusFound, o.status, o.body)
				return a.browse(s.c, o.location().String())
			}, status: 200, writes: []string{"client", "txn", "csrf"},
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.Contains(t, o.body, `<code id="redirect-host">xn--pple-43d.com</code>`)
				assert.NotContains(t, o.body, "\u0430pple")
			}},

		// --- Consent: CSRF, browser binding, framing, injection.
		{name: "consent/CSRF token missing", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.submit(s.c, "/consent", url.Values{"txn": {s.form.Get("txn")}, "action": {"approve"}})
			}, status: 403, code: accessDenied, check: consentWorks},
		{name: "consent/CSRF token forged", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.submit(s.c, "/consent", url.Values{"txn": {s.form.Get("txn")}, "csrf": {strings.Repeat("A", 43)}, "action": {"approve"}})
			}, status: 403, code: accessDenied, check: consentWorks},
		{name: "consent/CSRF token and double-submit cookie both forged", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				name := a.cookieOf(s.c, s.form.Get("csrf")).Name
				s.v["cookie"] = name
				forged := strings.Repeat("F", 43)
				setCookie(a, s.c, name, forged)
				return a.submit(s.c, "/consent", url.Values{"txn": {s.form.Get("txn")}, "csrf": {forged}, "action": {"approve"}})
			}, status: 403, code: accessDenied,
			check: func(t *testing.T, a *attackEnv, s *attackScene, o *attackOutcome) {
				setCookie(a, s.c, s.v["cookie"], s.form.Get("csrf")) // the real one is still unused
				assertConsentStillWorks(t, a, s)
			}},
		{name: "consent/CSRF token replayed",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withConsent(s)
				s.v["cookie"] = a.cookieOf(s.c, s.form.Get("csrf")).Name
				s.form.Set("action", "approve")
				o := a.submit(s.c, "/consent", s.form)
				require.Equal(a.t, http.StatusFound, o.status, o.body)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				// The attacker saw the page, so knows the token, and sets
				// the double-submit cookie in a browser of its own.
				other := a.newClient(s.c.id, s.c.redirect)
				setCookie(a, other, s.v["cookie"], s.form.Get("csrf"))
				return a.submit(other, "/consent", s.form)
			},
			status: 403, code: accessDenied},
		{name: "consent/a denial after the approval of the same form is refused",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withConsent(s)
				s.form.Set("action", "approve")
				o := a.submit(s.c, "/consent", s.form)
				require.Equal(a.t, http.StatusFound, o.status, o.body)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := maps.Clone(s.form)
				form.Set("action", "deny")
				return a.submit(s.c, "/consent", form)
			},
			status: 403, code: accessDenied},
		{name: "consent/CSRF token of another transaction",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withConsent(s)
				other := a.consentOf(s.c)
				s.v["txnB"], s.v["csrfB"] = other.Get("txn"), other.Get("csrf")
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				// B's double-submit cookie set to A's token, so only the
				// store's binding of the token to its transaction is left.
				setCookie(a, s.c, a.cookieOf(s.c, s.v["csrfB"]).Name, s.form.Get("csrf"))
				return a.submit(s.c, "/consent", url.Values{"txn": {s.v["txnB"]}, "csrf": {s.form.Get("csrf")}, "action": {"approve"}})
			}, status: 403, code: accessDenied},
		{name: "consent/form posted from another browser", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := maps.Clone(s.form)
				form.Set("action", "approve")
				return a.submit(a.newClient(s.c.id, s.c.redirect), "/consent", form)
			}, status: 403, code: accessDenied, check: consentWorks},
		{name: "consent/binding cookie missing at the callback", arrange: withCallback,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(a.newClient(s.c.id, s.c.redirect), s.callback)
			}, status: 400, code: accessDenied, check: callbackWorks},
		{name: "consent/binding cookie of another transaction",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withCallback(s)
				attacker := a.newClient(s.c.id, s.c.redirect)
				a.callbackOf(attacker)
				s.v["victimCookie"], _ = a.bindingCookie(s.c)
				_, s.v["attackerValue"] = a.bindingCookie(attacker)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				b := a.newClient(s.c.id, s.c.redirect)
				setCookie(a, b, s.v["victimCookie"], s.v["attackerValue"])
				return a.browse(b, s.callback)
			}, status: 400, code: accessDenied, check: callbackWorks},
		{name: "consent/callback replayed after the sign-in completed",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withCallback(s)
				s.v["cookie"], s.v["value"] = a.bindingCookie(s.c)
				assertCallbackCompletes(a.t, a, s)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				b := a.newClient(s.c.id, s.c.redirect)
				setCookie(a, b, s.v["cookie"], s.v["value"])
				return a.browse(b, s.callback)
			}, status: 400, code: invalidRequest},
		{name: "consent/consent page forbids framing", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				o := a.authorizeWith(s.c, nil)
				require.Equal(a.t, http.StatusFound, o.status)
				return a.browse(s.c, o.location().String())
			}, status: 200, writes: []string{"client", "txn", "csrf"}, check: framingDenied},
		{name: "consent/cookies on https are __Host-, Secure, HttpOnly and SameSite=Lax",
			config: func(cfg *cognitomcp.ProxyConfig) { cfg.BaseURL = "https://mcp.example.test" }, arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				o := a.authorizeWith(s.c, nil)
				require.Equal(a.t, http.StatusFound, o.status, o.body)
				consent := o.location()
				require.Equal(a.t, "https://mcp.example.test", consent.Scheme+"://"+consent.Host)
				return a.browse(s.c, a.srv.URL+consent.RequestURI()) // the test server speaks plain http
			}, status: 200, writes: []string{"client", "txn", "csrf"},
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				cookies := (&http.Response{Header: o.header}).Cookies()
				require.NotEmpty(t, cookies)
				for _, c := range cookies {
					assert.True(t, strings.HasPrefix(c.Name, "__Host-"), c.Name)
					assert.True(t, c.Secure && c.HttpOnly && c.Path == "/" && c.Domain == "", "%+v", c)
					assert.Equal(t, http.SameSiteLaxMode, c.SameSite)
				}
			}},
		{name: "consent/error page forbids framing", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("client_id", "no-such-client") }),
			status: 400, code: "invalid_client", check: framingDenied},
		{name: "consent/HTML injection through client_name is escaped",
			arrange: func(a *attackEnv, s *attackScene) {
				o := a.registerJSON(registration([]string{loopbackRedirect}, map[string]any{
					"client_name": `Claude"><svg onload=alert(1)><script>alert(2)</script>&amp;`}))
				require.Equal(a.t, http.StatusCreated, o.status, o.body)
				s.c = a.newClient(jsonOf(a.t, o)["client_id"].(string), loopbackRedirect)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				o := a.authorizeWith(s.c, nil)
				require.Equal(a.t, http.StatusFound, o.status)
				return a.browse(s.c, o.location().String())
			}, status: 200, writes: []string{"client", "txn", "csrf"},
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.NotContains(t, o.body, "<svg")
				assert.NotContains(t, o.body, "<script>")
				assert.Contains(t, o.body, `id="client-name">Claude&#34;&gt;&lt;svg onload=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;&amp;amp;<`)
			}},
		{name: "consent/HTML injection through logo_uri is refused",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"logo_uri": "javascript:alert(1)"})),
			status: 400, code: invalidMeta},
		{name: "consent/markup in logo_uri is refused",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"logo_uri": `https://cdn.example/a.png"><script>alert(1)</script>`})),
			status: 400, code: invalidMeta},
		{name: "consent/HTML injection through client_uri is refused",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"client_uri": "javascript:alert(1)"})),
			status: 400, code: invalidMeta},
		{name: "consent/a remembered approval is not used on a cross-site navigation",
			config:  func(cfg *cognitomcp.ProxyConfig) { cfg.Consent = cognitomcp.ConsentRemember },
			arrange: withTokens, // the first sign-in approved, and the browser remembers
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				req, _ := http.NewRequest(http.MethodGet, s.c.authorizeURL(nil), nil)
				req.Header.Set("Sec-Fetch-Site", "cross-site")
				return a.send(s.c.browser, req)
			}, status: 302, location: "consent", writes: []string{"txn"}},
		{name: "consent/deny issues nothing", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := maps.Clone(s.form)
				form.Set("action", "deny")
				return a.submit(s.c, "/consent", form)
			}, status: 302, code: accessDenied, location: "client",
			check: func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) {
				o := a.browse(s.c, a.srv.URL+"/consent?txn="+url.QueryEscape(s.form.Get("txn")))
				assert.Equal(t, http.StatusBadRequest, o.status, "the transaction is gone")
			}},
		{name: "consent/unknown transaction",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodGet, "/consent?txn="+strings.Repeat("A", 43), nil, "")
			}, status: 400, code: invalidRequest},

		// --- Server-side requests: client ID metadata documents never reach internal addresses.
		{name: "ssrf/a metadata-document client on the cloud metadata address is not fetched", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("client_id", "https://169.254.169.254/latest/meta-data/iam/client.json") }),
			status: 400, code: "invalid_client"},
		{name: "ssrf/a metadata-document client on a private address is not fetched", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("client_id", "https://10.0.0.1/client.json") }),
			status: 400, code: "invalid_client"},
		{name: "ssrf/a metadata-document client on localhost is not fetched", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				u, _ := url.Parse(a.evil.URL)
				return a.authorizeWith(s.c, func(v url.Values) { v.Set("client_id", "https://localhost:"+u.Port()+"/client.json") })
			}, status: 400, code: "invalid_client"},
		{name: "ssrf/a metadata-document client over plain http is not fetched", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.tokenPost(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {a.evil.URL + "/client.json"}})
			}, status: 401, code: "invalid_client",
			check: func(t *testing.T, a *attackEnv, _ *attackScene, _ *attackOutcome) {
				assert.Contains(t, a.logs.String(), `reason="client \"`+a.evil.URL+`/client.json\"`, "the log names the client")
			}},
		{name: "ssrf/a metadata-document client on a private address is not fetched at the token endpoint", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.tokenPost(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"https://10.0.0.1/client.json"}})
			}, status: 401, code: "invalid_client",
			check: func(t *testing.T, a *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.Contains(t, o.body, "metadata document is not usable", "not 'register again', which such a client cannot do")
				assert.Contains(t, a.logs.String(), `reason="client \"https://10.0.0.1/client.json\": `, "the log names the client")
			}},

		// --- Revocation (RFC 7009): only the client's own tokens.
		{name: "revocation/another client's refresh token is not revoked",
			arrange: func(a *attackEnv, s *attackScene) { a.withTokens(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.other.id}, "token": {s.refresh}}.Encode())
			}, status: 200, check: grantAlive},
		{name: "revocation/another client's access token is not revoked",
			arrange: func(a *attackEnv, s *attackScene) { a.withTokens(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.other.id}, "token": {s.access},
					"token_type_hint": {"access_token"}}.Encode())
			}, status: 200, check: grantAlive},
		{name: "revocation/a forged refresh token revokes nothing", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.c.id},
					"token": {tamperRefresh(s.refresh, "", b64e(make([]byte, 32)))}}.Encode())
			}, status: 200, check: grantAlive},
		{name: "revocation/without a client", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/revoke", formHeader, url.Values{"token": {s.refresh}}.Encode())
			}, status: 401, code: "invalid_client", check: grantAlive},

		// --- Secrets: nothing secret is published.
		{name: "secrets/the proxy's JWKS publishes no HS256 secret",
			act:    func(a *attackEnv, _ *attackScene) *attackOutcome { return a.do(http.MethodGet, "/jwks", nil, "") },
			status: 200,
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.JSONEq(t, `{"keys":[]}`, o.body)
				assert.NotContains(t, o.body, b64e(attackSigningSecret))
			}},
		{name: "secrets/metadata names no secret and only S256",
			act: func(a *attackEnv, _ *attackScene) *attackOutcome {
				return a.do(http.MethodGet, "/.well-known/oauth-authorization-server", nil, "")
			}, status: 200,
			check: func(t *testing.T, a *attackEnv, _ *attackScene, o *attackOutcome) {
				m := jsonOf(t, o)
				assert.Equal(t, []any{"S256"}, m["code_challenge_methods_supported"])
				assert.Equal(t, []any{"none"}, m["token_endpoint_auth_methods_supported"])
				assert.NotContains(t, o.body, "upstream-secret-value")
				assert.NotContains(t, o.body, a.app.ID, "the Cognito app client stays out of view")
			}},

		// --- Registration abuse.
		{name: "registration/oversized body",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"client_name": strings.Repeat("a", 70<<10)})),
			status: 413, code: invalidMeta},
		{name: "registration/thousands of redirect URIs",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				uris := make([]string, 2000)
				for i := range uris {
					uris[i] = fmt.Sprintf("http://127.0.0.1:%d/c", 1024+i)
				}
				return a.registerJSON(registration(uris, nil))
			}, status: 400, code: invalidMeta},
		{name: "registration/a huge client_name",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"client_name": strings.Repeat("n", 20_000)})),
			status: 400, code: invalidMeta},
		{name: "registration/a huge scope",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"scope": strings.Repeat("openid ", 1000)})),
			status: 400, code: invalidMeta},
		{name: "registration/client_name with a bidirectional override",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"client_name": "Claude\u202eedualC"})),
			status: 400, code: invalidMeta},
		{name: "registration/client_name with a line break",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"client_name": "Claude\nVerified by your IT department"})),
			status: 400, code: invalidMeta},
		{name: "registration/a scope the server does not offer is not registered",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"scope": "openid aws.cognito.signin.user.admin"})),
			status: 201, writes: []string{"client"},
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.NotContains(t, o.body, "aws.cognito.signin.user.admin")
			}},
		{name: "codes/authorize asking a scope the server does not offer gets none of it",
			arrange: withClient,
			act:     authorizeEdit(func(v url.Values) { v.Set("scope", "openid aws.cognito.signin.user.admin") }),
			status:  302, location: "consent", writes: []string{"client", "txn"},
			check: func(t *testing.T, a *attackEnv, s *attackScene, o *attackOutcome) {
				_, page := s.c.get(o.header.Get("Location"))
				assert.Contains(t, page, "<code>openid</code>")
				assert.NotContains(t, page, "aws.cognito.signin.user.admin", "not asked of the user, nor of Cognito")
			}},
		{name: "registration/the client_credentials grant",
			act:    registerBody(registration([]string{loopbackRedirect}, map[string]any{"grant_types": []string{"client_credentials"}})),
			status: 400, code: invalidMeta},
		{name: "registration/not JSON",
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/register", http.Header{"Content-Type": {"text/plain"}}, registration([]string{loopbackRedirect}, nil))
			}, status: 400, code: invalidMeta},
		{name: "registration/a JSON array", act: registerBody(`[{"redirect_uris":["` + loopbackRedirect + `"]}]`), status: 400, code: invalidMeta},
		{name: "registration/redirect_uris as a string", act: registerBody(`{"redirect_uris":"` + loopbackRedirect + `"}`), status: 400, code: invalidMeta},
		{name: "registration/member names in another case", act: registerBody(`{"REDIRECT_URIS":["` + loopbackRedirect + `"]}`), status: 400, code: invalidMeta},
		{name: "registration/unknown and secret members are ignored",
			act: registerBody(registration([]string{loopbackRedirect}, map[string]any{
				"client_secret": "attacker-chosen-secret", "token_endpoint_auth_method": "client_secret_basic",
				"jwks_uri": "https://evil.example/jwks", "software_statement": "eyJhbGciOiJub25lIn0.e30.", "is_admin": true,
			})), status: 201, writes: []string{"client"},
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				m := jsonOf(t, o)
				assert.Equal(t, "none", m["token_endpoint_auth_method"], "always a public client")
				for _, k := range []string{"client_secret", "jwks_uri", "software_statement", "is_admin"} {
					assert.NotContains(t, m, k)
				}
			}},
		{name: "registration/a chosen client_id does not take over a client", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.registerJSON(registration([]string{"https://evil.example/cb"}, map[string]any{"client_id": s.c.id}))
			}, status: 201, writes: []string{"client"},
			check: func(t *testing.T, a *attackEnv, s *attackScene, o *attackOutcome) {
				assert.NotEqual(t, s.c.id, jsonOf(t, o)["client_id"])
				assert.Equal(t, http.StatusBadRequest, a.authorizeWith(s.c, func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }).status)
				assert.Equal(t, http.StatusFound, a.authorizeWith(s.c, nil).status, "the client keeps its own registration")
			}},
		{name: "registration/rate limit per IP",
			config: func(cfg *cognitomcp.ProxyConfig) { cfg.RateLimits.Register = 2 },
			arrange: func(a *attackEnv, s *attackScene) {
				a.register(loopbackRedirect)
				a.register(loopbackRedirect)
			},
			act:    registerBody(registration([]string{loopbackRedirect}, nil)),
			status: 429, code: "temporarily_unavailable",
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.NotEmpty(t, o.header.Get("Retry-After"))
			}},

		// --- The token endpoint.
		{name: "token-endpoint/a JSON body", arrange: withCode,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := a.redeemForm(s.c, s.code)
				m := map[string]string{}
				for k := range form {
					m[k] = form.Get(k)
				}
				return a.do(http.MethodPost, "/token", http.Header{"Content-Type": {"application/json"}}, string(mustJSON(a.t, m)))
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/a multipart body", arrange: withCode,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				var b bytes.Buffer
				for k, vs := range a.redeemForm(s.c, s.code) {
					fmt.Fprintf(&b, "--x\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", k, vs[0])
				}
				b.WriteString("--x--\r\n")
				return a.do(http.MethodPost, "/token", http.Header{"Content-Type": {"multipart/form-data; boundary=x"}}, b.String())
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/a duplicated code parameter", arrange: withCode,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/token", formHeader, a.redeemForm(s.c, s.code).Encode()+"&code="+strings.Repeat("B", 43))
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/a duplicated client_id", arrange: func(a *attackEnv, s *attackScene) { a.withCode(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/token", formHeader, a.redeemForm(s.c, s.code).Encode()+"&client_id="+s.other.id)
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/the client in Basic differs from the body",
			arrange: func(a *attackEnv, s *attackScene) { a.withCode(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/token", strings.NewReader(a.redeemForm(s.c, s.code).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(s.other.id, "")
				return a.send(noRedirects, req)
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/parameters in the query string are ignored", arrange: withCode,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/token?"+a.redeemForm(s.c, s.code).Encode(), formHeader, "client_id="+s.c.id)
			}, status: 400, code: invalidRequest, check: codeAlive},
		{name: "token-endpoint/an unknown client", arrange: withCode,
			act:    redeem(func(_ *attackEnv, _ *attackScene, v url.Values) { v.Set("client_id", "no-such-client") }),
			status: 401, code: "invalid_client", check: codeAlive},
		{name: "token-endpoint/refresh replay after the grace window revokes the family",
			arrange: func(a *attackEnv, s *attackScene) { a.rotated(s) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				a.clock.Advance(31 * time.Second) // the default grace period is 30 s
				return a.tokenPost(refreshOf(s.c, s.v["old"]))
			}, status: 401, code: invalidGrant, upstream: up(cognitotest.EndpointRevoke, 1),
			check: func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) {
				assertGrantDead(t, a, s.refresh, s.access, s.c)
			}},
		{name: "token-endpoint/refresh token of another client",
			arrange: func(a *attackEnv, s *attackScene) { a.withTokens(s); s.other = a.register(loopbackRedirect) },
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.tokenPost(refreshOf(s.other, s.refresh))
			}, status: 401, code: invalidGrant, check: grantAlive},
		{name: "token-endpoint/refresh token with a forged MAC", arrange: withTokens,
			act:    refresh(func(s *attackScene) string { return tamperRefresh(s.refresh, "", b64e(make([]byte, 32))) }),
			status: 401, code: invalidGrant, check: grantAlive},
		{name: "token-endpoint/refresh token of a future generation", arrange: withTokens,
			act:    refresh(func(s *attackScene) string { return tamperRefresh(s.refresh, "2", "") }),
			status: 401, code: invalidGrant, check: grantAlive},
		{name: "token-endpoint/refresh token with a padded generation", arrange: withTokens,
			act:    refresh(func(s *attackScene) string { return tamperRefresh(s.refresh, "01", "") }),
			status: 401, code: invalidGrant, check: grantAlive},
		{name: "token-endpoint/an access token presented as a refresh token", arrange: withTokens,
			act:    refresh(func(s *attackScene) string { return s.access }),
			status: 401, code: invalidGrant, check: grantAlive},
		{name: "token-endpoint/a refresh without refresh_token is a bad request, not a dead grant", arrange: withTokens,
			act:    refresh(func(*attackScene) string { return "" }),
			status: 400, code: "invalid_request", check: grantAlive},
		{name: "token-endpoint/refresh widening the scope", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := refreshOf(s.c, s.refresh)
				form.Set("scope", "openid email profile")
				return a.tokenPost(form)
			}, status: 400, code: "invalid_scope", check: grantAlive},
		{name: "token-endpoint/refresh for another resource", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := refreshOf(s.c, s.refresh)
				form.Set("resource", "https://other.example/mcp")
				return a.tokenPost(form)
			}, status: 400, code: "invalid_target", check: grantAlive},
		{name: "token-endpoint/the password grant", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.tokenPost(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw-1"}, "client_id": {s.c.id}})
			}, status: 400, code: "unsupported_grant_type"},
		{name: "token-endpoint/rate limit per IP",
			config: func(cfg *cognitomcp.ProxyConfig) { cfg.RateLimits.Token = 2 },
			arrange: func(a *attackEnv, s *attackScene) {
				a.withClient(s)
				for range 2 {
					a.tokenPost(url.Values{"grant_type": {"authorization_code"}, "client_id": {s.c.id}})
				}
			},
			act:    redeem(func(*attackEnv, *attackScene, url.Values) {}),
			status: 429, code: "temporarily_unavailable", // slow_down would send TS SDK clients back to sign in
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.Equal(t, "30", o.header.Get("Retry-After"), "two a minute: one refills in 30 s")
			}},

		// --- Mix-up.
		{name: "mix-up/callback carrying another issuer's iss", arrange: withCallback,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(s.c, withParam(s.callback, "iss", "https://evil.example"))
			},
			status: 400, code: invalidRequest, check: callbackWorks},
		{name: "mix-up/callback carrying the proxy's own issuer as iss", arrange: withCallback,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(s.c, withParam(s.callback, "iss", a.proxy.Issuer()))
			},
			status: 400, code: invalidRequest, check: callbackWorks},
		{name: "mix-up/a state of another transaction",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withCallback(s)
				attacker := a.newClient(s.c.id, s.c.redirect)
				s.v["attackerCallback"] = a.callbackOf(attacker)
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				// The victim's browser is sent the attacker's callback: its
				// state names the attacker's transaction.
				return a.browse(s.c, s.v["attackerCallback"])
			}, status: 400, code: accessDenied, check: callbackWorks},
		{name: "mix-up/a Cognito code of another transaction is injected",
			arrange: func(a *attackEnv, s *attackScene) {
				a.withCallback(s)
				attacker := a.newClient(s.c.id, s.c.redirect)
				cb, _ := url.Parse(a.callbackOf(attacker))
				s.v["attackerCode"] = cb.Query().Get("code")
			},
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(s.c, withParam(s.callback, "code", s.v["attackerCode"]))
			}, status: 302, code: "server_error", location: "client", upstream: up(cognitotest.EndpointToken, 1)},
		{name: "mix-up/a repeated state parameter", arrange: withCallback,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(s.c, s.callback+"&state="+strings.Repeat("A", 43))
			}, status: 400, code: invalidRequest, check: callbackWorks},

		// --- Headers.
		{name: "headers/an Authorization of 20 KiB",
			act:    func(a *attackEnv, _ *attackScene) *attackOutcome { return a.mcpBearer(strings.Repeat("a", 20<<10)) },
			status: 401, code: invalidToken, challenge: invalidToken},
		{name: "headers/request headers over 32 KiB", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				h := http.Header{"Authorization": {"Bearer " + s.access}}
				for i := range 40 {
					h.Set(fmt.Sprintf("X-Padding-%d", i), strings.Repeat("p", 1000))
				}
				return a.mcpWith(h)
			}, status: 431, code: invalidRequest},
		{name: "headers/two Authorization headers", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access, "Bearer " + s.access}})
			}, status: 400, code: invalidRequest, challenge: invalidRequest},
		{name: "headers/Bearer in odd case is accepted", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"bEaReR " + s.access}})
			}, status: 200, challenge: "none"},
		{name: "headers/Bearer followed by a tab", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer\t" + s.access}})
			}, status: 401, code: invalidToken, challenge: "bare"},
		{name: "headers/junk after the token", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access + " admin"}})
			}, status: 400, code: invalidRequest, challenge: invalidRequest},
		{name: "headers/token in the query string", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, a.proxy.Resource()+"?access_token="+s.access, http.Header{"Content-Type": {"application/json"}}, "{}")
			}, status: 401, code: invalidToken, challenge: "bare"},
		{name: "headers/token in a form body", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, a.proxy.Resource(), formHeader, "access_token="+s.access)
			}, status: 401, code: invalidToken, challenge: "bare"},
		{name: "headers/Basic credentials", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Basic " + b64e([]byte("alice:alice-pw-1"))}})
			}, status: 401, code: invalidToken, challenge: "bare"},

		// --- DNS rebinding: the MCP endpoint checks Origin before anything else.
		{name: "dns-rebinding/a foreign Origin with a valid token", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {"http://evil.example"}})
			}, status: 403, code: accessDenied, challenge: "none",
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.NotContains(t, o.body, "alice", "the MCP handler never ran")
				assert.Empty(t, o.header.Get("Access-Control-Allow-Origin"))
			}},
		{name: "dns-rebinding/a foreign Origin's preflight",
			act: func(a *attackEnv, _ *attackScene) *attackOutcome {
				return a.do(http.MethodOptions, a.proxy.Resource(), http.Header{"Origin": {"http://evil.example"},
					"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization"}}, "")
			}, status: 403, code: accessDenied, challenge: "none"},
		{name: "dns-rebinding/a preflight without Origin is no way past authentication",
			act: func(a *attackEnv, _ *attackScene) *attackOutcome {
				return a.do(http.MethodOptions, a.proxy.Resource(), http.Header{"Access-Control-Request-Method": {"POST"}}, "")
			}, status: 401, code: invalidToken, challenge: "bare"},
		{name: "dns-rebinding/Origin null", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {"null"}})
			}, status: 403, code: accessDenied, challenge: "none"},
		{name: "dns-rebinding/the server's host on another port", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {"http://127.0.0.1:1"}})
			}, status: 403, code: accessDenied, challenge: "none"},
		{name: "dns-rebinding/the server's host over another scheme", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {strings.Replace(a.srv.URL, "http://", "https://", 1)}})
			}, status: 403, code: accessDenied, challenge: "none"},
		{name: "dns-rebinding/an origin outside a configured allow-list",
			config:  func(cfg *cognitomcp.ProxyConfig) { cfg.AllowedOrigins = []string{"https://inspector.example"} },
			arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {a.srv.URL}})
			}, status: 403, code: accessDenied, challenge: "none",
			check: func(t *testing.T, a *attackEnv, s *attackScene, _ *attackOutcome) {
				o := a.mcpWith(http.Header{"Authorization": {"Bearer " + s.access}, "Origin": {"https://inspector.example"}})
				assert.Equal(t, http.StatusOK, o.status, "the configured origin is allowed")
				assert.Equal(t, "https://inspector.example", o.header.Get("Access-Control-Allow-Origin"))
			}},

		// --- Limits: methods, body sizes, parameters, rates.
		{name: "limits/GET /register", act: func(a *attackEnv, _ *attackScene) *attackOutcome { return a.do(http.MethodGet, "/register", nil, "") },
			status: 405, code: invalidRequest},
		{name: "limits/PUT /token", act: func(a *attackEnv, _ *attackScene) *attackOutcome {
			return a.do(http.MethodPut, "/token", formHeader, "grant_type=x")
		},
			status: 405, code: invalidRequest},
		{name: "limits/DELETE /consent", act: func(a *attackEnv, _ *attackScene) *attackOutcome { return a.do(http.MethodDelete, "/consent", nil, "") },
			status: 405, code: invalidRequest},
		{name: "limits/POST /auth/callback", act: func(a *attackEnv, _ *attackScene) *attackOutcome {
			return a.do(http.MethodPost, "/auth/callback", formHeader, "code=x&state=y")
		}, status: 405, code: invalidRequest},
		{name: "limits/POST /jwks", act: func(a *attackEnv, _ *attackScene) *attackOutcome {
			return a.do(http.MethodPost, "/jwks", formHeader, "")
		},
			status: 405, code: invalidRequest},
		{name: "limits/an oversized consent body", arrange: withConsent,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				form := maps.Clone(s.form)
				form.Set("action", "approve")
				form.Set("pad", strings.Repeat("p", 70<<10))
				return a.submit(s.c, "/consent", form)
			}, status: 400, code: invalidRequest, check: consentWorks},
		{name: "limits/an oversized revoke body", arrange: withTokens,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.do(http.MethodPost, "/revoke", formHeader, url.Values{"client_id": {s.c.id}, "token": {s.refresh},
					"pad": {strings.Repeat("p", 70<<10)}}.Encode())
			}, status: 400, code: invalidRequest, check: grantAlive},
		{name: "limits/repeated authorize parameters", arrange: withClient,
			act: func(a *attackEnv, s *attackScene) *attackOutcome {
				return a.browse(s.c, s.c.authorizeURL(nil)+"&redirect_uri="+url.QueryEscape("https://evil.example/cb"))
			}, status: 400, code: invalidRequest},
		{name: "limits/a state of 4 KiB", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("state", strings.Repeat("s", 4<<10)) }),
			status: 400, code: invalidRequest},
		{name: "limits/an authorize query of 100 KiB", arrange: withClient,
			act:    authorizeEdit(func(v url.Values) { v.Set("state", strings.Repeat("s", 100<<10)) }),
			status: 431, code: invalidRequest},
		{name: "limits/consent page renderings count against the authorize rate limit",
			config: func(cfg *cognitomcp.ProxyConfig) { cfg.RateLimits.Authorize = 3 },
			arrange: func(a *attackEnv, s *attackScene) {
				a.withClient(s)
				o := a.authorizeWith(s.c, nil)
				require.Equal(a.t, http.StatusFound, o.status)
				s.v["consent"] = o.location().String()
				for range 2 {
					require.Equal(a.t, http.StatusOK, a.browse(s.c, s.v["consent"]).status)
				}
			},
			act:    func(a *attackEnv, s *attackScene) *attackOutcome { return a.browse(s.c, s.v["consent"]) },
			status: 429, code: "temporarily_unavailable"},
		{name: "limits/authorize rate limit per IP",
			config: func(cfg *cognitomcp.ProxyConfig) { cfg.RateLimits.Authorize = 2 },
			arrange: func(a *attackEnv, s *attackScene) {
				a.withClient(s)
				for range 2 {
					a.authorizeWith(s.c, nil)
				}
			},
			act:    authorizeEdit(nil),
			status: 429, code: "temporarily_unavailable",
			check: func(t *testing.T, _ *attackEnv, _ *attackScene, o *attackOutcome) {
				assert.NotEmpty(t, o.header.Get("Retry-After"))
			}},
	}
}

// mustInt reads a JSON number claim.
func mustInt(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			panic(err)
		}
		return i
	case float64:
		return int64(n)
	}
	panic(fmt.Sprintf("not a number: %T", v))
}
