package cognitomcp_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// requireNoServerErrors checks every response the replicas wrote: no 5xx
// but 503, and every 503 with Retry-After.
func requireNoServerErrors(t *testing.T, rs *replicaSet) {
	t.Helper()
	for _, r := range rs.responses.all() {
		if r.Status < 500 {
			continue
		}
		assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s answered %d: %s", r.Path, r.Status, r.Body)
		assert.NotEmpty(t, r.Header.Get("Retry-After"), "%s 503 without Retry-After", r.Path)
	}
}

// assertUnavailable checks a JSON endpoint's answer during an outage.
func assertUnavailable(t *testing.T, what string, resp *http.Response, out map[string]any) {
	t.Helper()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %v", what, out)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"), what)
	assert.Equal(t, "temporarily_unavailable", out["error"], what)
	assert.Empty(t, resp.Header.Get("WWW-Authenticate"), "%s: an outage is no reason to sign in again", what)
}

// assertUnavailablePage checks a browser endpoint's answer during an outage.
func assertUnavailablePage(t *testing.T, what string, resp *http.Response, body string) {
	t.Helper()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", what, body)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"), what)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html", what)
	assert.Empty(t, resp.Header.Get("Location"), what)
}

// inFlight starts a sign-in and stops with the browser at Cognito's
// redirect back: it returns the callback URL, not yet visited.
func inFlight(t *testing.T, c *oauthClient) *url.URL {
	t.Helper()
	resp, body := c.get(c.approve(nil).String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	return location(t, resp)
}

// TestRedisOutageProxy kills Redis (SIGKILL, appendfsync always) in the
// middle of sign-ins on two replicas: everything that needs the store
// answers 503 with Retry-After (never 500, never a pass); once Redis is
// back, service recovers by itself and every acknowledged write is there.
func TestRedisOutageProxy(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 2, Persist: true, Config: func(cfg *cognitomcp.ProxyConfig) {
		// A client that lives in the configuration, not the store, so that
		// /token gets past the client lookup to the code and the lock.
		cfg.UpstreamClientRedirectURIs = []string{loopbackRedirect}
	}, Redis: func(o *redis.Options) {
		// Fail fast while Redis is down. go-redis's defaults (3 retries, 5
		// dial attempts 100ms apart) give the same 503s, each after ~2s.
		o.MaxRetries, o.DialerRetries, o.DialTimeout = -1, 1, time.Second
	}})
	ctx := t.Context()

	// Acknowledged before the kill.
	c := rs.register(loopbackRedirect)
	access, refresh := c.login()
	pendingCode := c.signIn(nil).Get("code")
	u := rs.newClient(rs.app.ID, loopbackRedirect)
	_, uRefresh := u.login()
	uCode := u.signIn(nil).Get("code")
	callback := inFlight(t, c)
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	consentPage := location(t, resp)
	for i := range 2 {
		status, _ := rs.mustMCP(i, access) // cached on both replicas now
		require.Equal(t, http.StatusOK, status)
	}
	codeForm := func(c *oauthClient, code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
			"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
	}

	rs.redis.Stop()

	for i := range 2 {
		name := "replica " + replicaName(i) + " "
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rs.srv.URL+"/register",
			strings.NewReader(`{"redirect_uris":["`+loopbackRedirect+`"],"token_endpoint_auth_method":"none"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, b, err := rs.send(i, req)
		require.NoError(t, err)
		var out map[string]any
		_ = jsonDecode(bytes.NewReader(b), &out)
		assertUnavailable(t, name+"/register", resp, out)

		for what, form := range map[string]url.Values{
			"refresh (client lookup)":   refreshForm(c, refresh),
			"refresh (grant lock)":      refreshForm(u, uRefresh),
			"redeem (client lookup)":    codeForm(c, pendingCode),
			"redeem (take of the code)": codeForm(u, uCode),
		} {
			resp, out, err := rs.postOn(i, "/token", form)
			require.NoError(t, err)
			assertUnavailable(t, name+"/token "+what, resp, out)
		}
		resp, out, err = rs.postOn(i, "/revoke", url.Values{"client_id": {c.id}, "token": {refresh}})
		require.NoError(t, err)
		assertUnavailable(t, name+"/revoke", resp, out)

		// Verified before the outage: served from this replica's cache
		// until RevocationCheckInterval runs out.
		status, _ := rs.mustMCP(i, access)
		assert.Equal(t, http.StatusOK, status, name+"MCP within the cache interval")
	}
	rs.clock.Advance(revocationBound)
	for i := range 2 {
		resp, out, err := rs.mcpOn(i, access)
		require.NoError(t, err)
		assertUnavailable(t, "replica "+replicaName(i)+" MCP after the cache interval", resp, out)
	}
	for i := range 2 {
		rs.use(i)
		resp, body := c.get(c.authorizeURL(nil))
		assertUnavailablePage(t, "/authorize", resp, body)
		resp, body = c.get(consentPage.String())
		assertUnavailablePage(t, "consent page", resp, body)
		resp, body = c.get(callback.String())
		assertUnavailablePage(t, "callback", resp, body)
	}
	resp, err := http.Get(rs.srv.URL + "/.well-known/oauth-authorization-server")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "metadata needs no store")

	rs.redis.Restart(t)

	// Recovery by itself: each replica's Redis client reconnects.
	for i := range 2 {
		require.Eventually(t, func() bool {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rs.srv.URL+"/register",
				strings.NewReader(`{"redirect_uris":["`+loopbackRedirect+`"],"token_endpoint_auth_method":"none"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, _, err := rs.send(i, req)
			return err == nil && resp.StatusCode == http.StatusCreated
		}, 10*time.Second, 20*time.Millisecond, "replica %s recovers", replicaName(i))
	}

	// Nothing acknowledged before the kill was lost; nothing half-done
	// during the outage was consumed.
	rs.use(replicaB)
	resp, body = c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, "the client registered before the kill: %s", body)
	for i := range 2 {
		status, challenge := rs.mustMCP(i, access)
		assert.Equal(t, http.StatusOK, status, "replica %s: the grant issued before the kill: %s", replicaName(i), challenge)
	}
	status, out := rs.mustPost(replicaA, "/token", codeForm(c, pendingCode))
	assert.Equal(t, http.StatusOK, status, "a code issued before the kill: %v", out)
	status, out = rs.mustPost(replicaB, "/token", codeForm(u, uCode))
	assert.Equal(t, http.StatusOK, status, "a code whose take failed during the outage: %v", out)
	status, out = rs.mustPost(replicaA, "/token", refreshForm(c, refresh))
	assert.Equal(t, http.StatusOK, status, "refresh: %v", out)
	status, out = rs.mustPost(replicaB, "/token", refreshForm(u, uRefresh))
	assert.Equal(t, http.StatusOK, status, "refresh through the lock: %v", out)
	form, _ := c.consentForm(consentPage.String())
	assert.NotEmpty(t, form.Get("csrf"), "the transaction pending at the consent page")
	resp, body = c.get(callback.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, "the sign-in in flight: %s", body)
	code := location(t, resp).Query().Get("code")
	require.NotEmpty(t, code)
	status, out = rs.mustPost(replicaA, "/token", codeForm(c, code))
	assert.Equal(t, http.StatusOK, status, out)

	requireNoServerErrors(t, rs)
}

// TestRedisDumpHoldsNoSecrets runs full flows on two replicas (consent page,
// callback, token, MCP calls, a refresh that also refreshes at Cognito, a
// revocation; a sign-in left at the consent page and a code left
// unredeemed) and then reads every key and value in Redis: none holds a
// token, code, CSRF token, transaction id, Cognito token or code, client
// secret, master secret, user data or JSON in clear; every value is in the
// sealed format; every key expires. It logs the bytes stored per grant.
func TestRedisDumpHoldsNoSecrets(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 2})
	ctx := t.Context()
	rs.use(replicaA)
	c := rs.register(loopbackRedirect)

	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	consent := location(t, resp)
	rs.use(replicaB)
	form, _ := c.consentForm(consent.String()) // the page renders
	txn, csrf := form.Get("txn"), form.Get("csrf")
	form.Set("action", "approve")
	resp, body = c.postForm(rs.srv.URL+"/consent", form)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	resp, body = c.get(location(t, resp).String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	callback := location(t, resp)
	cognitoCode := callback.Query().Get("code")
	rs.use(replicaA)
	resp, body = c.get(callback.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	code := location(t, resp).Query().Get("code")
	access, refresh := c.redeem(code)
	status, _ := rs.mustMCP(replicaB, access)
	require.Equal(t, http.StatusOK, status)
	rs.clock.Advance(56 * time.Minute) // the refresh refreshes at Cognito too
	grantsBefore := rs.pool.TokenGrants("refresh_token")
	status, out := rs.mustPost(replicaB, "/token", refreshForm(c, refresh))
	require.Equal(t, http.StatusOK, status, out)
	require.Equal(t, grantsBefore+1, rs.pool.TokenGrants("refresh_token"))
	access2, refresh2 := out["access_token"].(string), out["refresh_token"].(string)
	status, _ = rs.mustMCP(replicaA, access2)
	require.Equal(t, http.StatusOK, status)
	status, _ = rs.mustPost(replicaA, "/revoke", url.Values{"client_id": {c.id}, "token": {access}, "token_type_hint": {"access_token"}})
	require.Equal(t, http.StatusOK, status)

	// Left live in the store: a sign-in at the consent page, an unused code.
	resp, body = c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	form2, _ := c.consentForm(location(t, resp).String())
	unusedCode := c.signIn(nil).Get("code")
	require.NotEmpty(t, unusedCode)

	rs.tap.mu.Lock()
	cognitoTokens := slices.Clone(rs.tap.tokens)
	rs.tap.mu.Unlock()
	require.GreaterOrEqual(t, len(cognitoTokens), 5, "access, ID and refresh token of the sign-ins, and the refreshed ones")
	secrets := map[string]string{
		"access token": access, "refreshed access token": access2, "refresh token": refresh, "rotated refresh token": refresh2,
		"code": code, "unused code": unusedCode, "transaction id": txn, "CSRF token": csrf,
		"pending transaction id": form2.Get("txn"), "pending CSRF token": form2.Get("csrf"),
		"Cognito's code": cognitoCode, "Cognito client secret": "upstream-secret-value", "master secret": string(testMasterSecret),
		"PKCE verifier": c.verifier,
		"email":         "alice@example.com", "username": "alice", "tenant attribute": "acme",
	}
	for i, rt := range []string{refresh, refresh2} {
		secrets["refresh token MAC "+strconv.Itoa(i)] = rt[strings.LastIndexByte(rt, '.')+1:]
	}
	for i, tok := range cognitoTokens {
		secrets["Cognito token "+strconv.Itoa(i)] = tok
		if _, body, ok := strings.Cut(tok, "."); ok { // the claims of a JWT, still base64
			secrets["Cognito token claims "+strconv.Itoa(i)], _, _ = strings.Cut(body, ".")
		}
	}
	inClear := []string{"access_token", "refresh_token", "id_token", `"at"`, `"rt"`, `"sub"`, `"secret"`, `"client_id"`,
		`"redirect_uri"`, `"code_challenge"`, `"upstream`, `"grant_id"`, `"user"`, `"gen"`, "cognito:", "Bearer"}

	keyShape := regexp.MustCompile(`^cognitomcp:(client|txn|csrf|code|codeused|grant|revoked|consent):[0-9a-f]{64}$`)
	kinds := map[string]int{}
	var kid []byte
	var keys int
	iter := rs.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		keys++
		require.Regexp(t, keyShape, key, "a key is a kind and a hash")
		kind := strings.Split(key, ":")[1]
		kinds[kind]++
		typ, err := rs.rdb.Type(ctx, key).Result()
		require.NoError(t, err)
		require.Equal(t, "string", typ, key)
		value, err := rs.redisValue(ctx, key)
		require.NoError(t, err)
		dump, err := rs.rdb.Dump(ctx, key).Result()
		require.NoError(t, err)
		ttl, err := rs.rdb.PTTL(ctx, key).Result()
		require.NoError(t, err)
		assert.Positive(t, ttl, "%s expires", key)

		// The sealed format: version 1, the key id, nonce, ciphertext, tag.
		require.Greater(t, len(value), 2+12+16, key)
		assert.Equal(t, byte(0x01), value[0], "%s: format version", key)
		n := int(value[1])
		require.Greater(t, len(value), 2+n+12+16, key)
		if kid == nil {
			kid = value[2 : 2+n]
		}
		assert.Equal(t, kid, value[2:2+n], "%s: one encryption key id throughout", key)

		for what, s := range secrets {
			assert.NotContains(t, key, s, "key %s holds the %s", key, what)
			assert.False(t, bytes.Contains(value, []byte(s)), "value of %s holds the %s", key, what)
			assert.NotContains(t, dump, s, "DUMP of %s holds the %s", key, what)
		}
		for _, s := range inClear {
			assert.False(t, bytes.Contains(value, []byte(s)), "value of %s holds %q in clear", key, s)
		}
		if kind == "grant" {
			t.Logf("grant %s…: %d bytes stored (value), %d bytes DUMP", key[len("cognitomcp:grant:"):][:8], len(value), len(dump))
		}
	}
	require.NoError(t, iter.Err())
	t.Logf("%d keys in Redis by kind: %v", keys, kinds)
	for _, kind := range []string{"client", "txn", "csrf", "code", "codeused", "grant", "revoked"} {
		assert.Positive(t, kinds[kind], "the dump covers %s records", kind)
	}
}

// jwtHeader decodes the header of a JWS.
func jwtHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	h, _, err := cognitotest.DecodeJWT(token)
	require.NoError(t, err)
	return h
}

// TestKeyRotationSigning rotates the access-token signing key over fresh
// proxy instances sharing one Redis: with [k2, k1] old tokens verify and new
// ones carry kid k2; with [k2] alone the old ones are refused.
func TestKeyRotationSigning(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k1 := cognitomcp.SigningKey{ID: "k1", Secret: bytes.Repeat([]byte("1"), 32)}
	k2 := cognitomcp.SigningKey{ID: "k2", PrivateKey: ec}
	signing := func(keys ...cognitomcp.SigningKey) func(*cognitomcp.ProxyConfig) {
		return func(cfg *cognitomcp.ProxyConfig) { cfg.Keys.SigningKeys = keys }
	}
	rs := newReplicaSet(t, replicaOptions{})

	p1 := rs.add(signing(k1))
	rs.use(p1)
	c := rs.register(loopbackRedirect)
	old, rt := c.login()
	assert.Equal(t, "k1", jwtHeader(t, old)["kid"])
	assert.Equal(t, "HS256", jwtHeader(t, old)["alg"])

	p2 := rs.add(signing(k2, k1))
	rs.use(p2)
	status, challenge := rs.mustMCP(p2, old)
	assert.Equal(t, http.StatusOK, status, "[k2, k1]: a k1 token verifies: %s", challenge)
	status, out := rs.mustPost(p2, "/token", refreshForm(c, rt))
	require.Equal(t, http.StatusOK, status, out)
	refreshed := out["access_token"].(string)
	assert.Equal(t, "k2", jwtHeader(t, refreshed)["kid"], "[k2, k1]: new tokens carry k2")
	assert.Equal(t, "ES256", jwtHeader(t, refreshed)["alg"])
	fresh, _ := c.login()
	assert.Equal(t, "k2", jwtHeader(t, fresh)["kid"])
	status, _ = rs.mustMCP(p2, fresh)
	assert.Equal(t, http.StatusOK, status)
	req, _ := http.NewRequest(http.MethodGet, rs.srv.URL+"/jwks", nil)
	_, jwks, err := rs.send(p2, req)
	require.NoError(t, err)
	assert.Contains(t, string(jwks), `"kid":"k2"`, "the ES256 key is published")
	assert.NotContains(t, string(jwks), `"k1"`, "an HS256 key never is")

	// A replica still on [k1] refuses k2 tokens: roll a new key out as a
	// verifying key ([k1, k2]) everywhere before any replica signs with it.
	status, _ = rs.mustMCP(p1, refreshed)
	assert.Equal(t, http.StatusUnauthorized, status)

	p3 := rs.add(signing(k2))
	status, challenge = rs.mustMCP(p3, old)
	assert.Equal(t, http.StatusUnauthorized, status, "[k2]: a k1 token is refused")
	assert.Contains(t, challenge, `error="invalid_token"`)
	for _, tok := range []string{refreshed, fresh} {
		status, challenge = rs.mustMCP(p3, tok)
		assert.Equal(t, http.StatusOK, status, "[k2]: k2 tokens verify: %s", challenge)
	}
	requireNoServerErrors(t, rs)
}

// sealedKID returns the key id inside a sealed value in Redis (byte 0 the
// format version 0x01, byte 1 the key id's length, then the key id).
func sealedKID(t *testing.T, rs *replicaSet, key string) string {
	t.Helper()
	v, err := rs.redisValue(t.Context(), key)
	require.NoError(t, err, key)
	require.Greater(t, len(v), 2, key)
	require.Equal(t, byte(0x01), v[0], "%s: format version", key)
	require.GreaterOrEqual(t, len(v), 2+int(v[1]), key)
	return string(v[2 : 2+int(v[1])])
}

// TestKeyRotationEncryption rotates the store's encryption key over fresh
// proxy instances sharing one Redis: with [e2, e1] old values open and new
// writes use e2; with [e2] alone values sealed under e1 count as absent
// (invalid_grant, invalid_client, invalid_token; never a 500).
func TestKeyRotationEncryption(t *testing.T) {
	e1 := cognitomcp.EncryptionKey{ID: "e1", Key: bytes.Repeat([]byte("1"), 32)}
	e2 := cognitomcp.EncryptionKey{ID: "e2", Key: bytes.Repeat([]byte("2"), 32)}
	encryption := func(keys ...cognitomcp.EncryptionKey) func(*cognitomcp.ProxyConfig) {
		return func(cfg *cognitomcp.ProxyConfig) { cfg.Keys.EncryptionKeys = keys }
	}
	rs := newReplicaSet(t, replicaOptions{Config: func(cfg *cognitomcp.ProxyConfig) {
		// u, the upstream client, lives in the configuration, so its
		// grants can be refreshed whatever becomes of stored clients.
		cfg.UpstreamClientRedirectURIs = []string{loopbackRedirect}
	}})

	p1 := rs.add(encryption(e1))
	rs.use(p1)
	c := rs.register(loopbackRedirect)
	_, cRefresh := c.login()
	u := rs.newClient(rs.app.ID, loopbackRedirect)
	uAccess1, uRefresh1 := u.login() // rotated under [e2, e1]
	uAccess2, uRefresh2 := u.login() // left under e1
	g1, g2 := redisKey("grant", grantID(t, uRefresh1)), redisKey("grant", grantID(t, uRefresh2))
	assert.Equal(t, "e1", sealedKID(t, rs, redisKey("client", c.id)))
	assert.Equal(t, "e1", sealedKID(t, rs, g1))
	assert.Equal(t, "e1", sealedKID(t, rs, g2))

	p2 := rs.add(encryption(e2, e1))
	rs.use(p2)
	status, challenge := rs.mustMCP(p2, uAccess1)
	assert.Equal(t, http.StatusOK, status, "[e2, e1]: a grant sealed under e1 opens: %s", challenge)
	resp, body := c.get(c.authorizeURL(nil))
	assert.Equal(t, http.StatusFound, resp.StatusCode, "[e2, e1]: a client sealed under e1 opens: %s", body)
	status, out := rs.mustPost(p2, "/token", refreshForm(u, uRefresh1))
	require.Equal(t, http.StatusOK, status, out)
	uRefresh1 = out["refresh_token"].(string)
	assert.Equal(t, "e2", sealedKID(t, rs, g1), "[e2, e1]: the rewritten grant is sealed under e2")
	assert.Equal(t, "e1", sealedKID(t, rs, g2), "an untouched value keeps its key")
	c2 := rs.register(loopbackRedirect)
	assert.Equal(t, "e2", sealedKID(t, rs, redisKey("client", c2.id)), "[e2, e1]: new writes use e2")

	p3 := rs.add(encryption(e2))
	rs.use(p3)
	status, out = rs.mustPost(p3, "/token", refreshForm(u, uRefresh2))
	assert.Equal(t, http.StatusUnauthorized, status, "[e2]: a grant sealed under e1 is absent: %v", out)
	assert.Equal(t, "invalid_grant", out["error"])
	status, challenge = rs.mustMCP(p3, uAccess2)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, challenge, `error="invalid_token"`)
	status, out = rs.mustPost(p3, "/token", refreshForm(c, cRefresh))
	assert.Equal(t, http.StatusUnauthorized, status, "[e2]: a client sealed under e1 is absent: %v", out)
	assert.Equal(t, "invalid_client", out["error"])
	resp, body = c.get(c.authorizeURL(nil))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	assert.Empty(t, resp.Header.Get("Location"), "an unknown client never redirects")

	status, out = rs.mustPost(p3, "/token", refreshForm(u, uRefresh1))
	assert.Equal(t, http.StatusOK, status, "[e2]: values sealed under e2 open: %v", out)
	resp, body = c2.get(c2.authorizeURL(nil))
	assert.Equal(t, http.StatusFound, resp.StatusCode, body)
	assert.Contains(t, rs.logs.String(), "stored value does not open; treated as absent")
	requireNoServerErrors(t, rs)
}

// TestProxiesSharingAStore: two MCP servers on one store with one master
// secret (one Redis for several servers, the default prefix) do not read
// each other's records: A's registered client is unknown at B; and a
// refresh token of server A, presented at B by a client both servers know
// (the Cognito app client both are configured with, as an upstream
// client), reaches B's grant lookup and mints nothing there.
func TestProxiesSharingAStore(t *testing.T) {
	shared := cognitomcp.NewMemoryStore()
	clock := newTestClock()
	pool := newTestPool(t, clock)
	a := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = shared
		cfg.UpstreamClientRedirectURIs = []string{loopbackRedirect}
	})
	b := newProxyFixtureOn(t, pool, clock, func(cfg *cognitomcp.ProxyConfig) {
		cfg.Store = shared
		cfg.ClientID = a.app.ID // the same Cognito app client: a client id both servers know
		cfg.UpstreamClientRedirectURIs = []string{loopbackRedirect}
	})
	require.NotEqual(t, a.proxy.Resource(), b.proxy.Resource())

	c := a.register(loopbackRedirect)
	_, rt := c.login() // a sign-in for server A only
	atB := b.newClient(c.id, c.redirect)
	status, out := atB.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	assert.Equal(t, http.StatusUnauthorized, status, "server B must not refresh server A's grant: %v", out["error"])
	assert.Equal(t, "invalid_client", out["error"], "A's client is not B's")
	status, out = failureRefresh(c, rt)
	assert.Equal(t, http.StatusOK, status, "at A the sign-in goes on: %v", out["error"])

	u := a.newClient(a.app.ID, loopbackRedirect)
	_, urt := u.login()
	uAtB := b.newClient(a.app.ID, loopbackRedirect)
	status, out = uAtB.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {urt}, "client_id": {a.app.ID}})
	assert.Equal(t, http.StatusUnauthorized, status, "server B must not refresh server A's grant: %v", out)
	assert.Equal(t, "invalid_grant", out["error"], "past the client, at the grant")
	assert.Contains(t, b.logs.String(), "stored value does not open", "A's grant does not open at B")
	status, out = failureRefresh(u, urt)
	assert.Equal(t, http.StatusOK, status, "at A the sign-in goes on: %v", out["error"])
}
