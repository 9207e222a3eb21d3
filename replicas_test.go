package cognitomcp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

// Replica indexes of a replicaSet.
const (
	replicaA = iota
	replicaB
	replicaC
)

// revocationBound is the RevocationCheckInterval of the replica sets: the
// documented bound on how long a revocation takes to reach every replica.
const revocationBound = 10 * time.Second

// replicaSet is several Proxy instances, each with its own Redis client (as
// separate processes would have), behind ONE public base URL, so they share
// one issuer and one resource, in front of one fake Cognito pool and one
// real redis-server. A request goes to the replica its X-Replica header
// names ("A", "B", …), or else to the current one (use). It embeds a
// proxyFixture whose srv is the shared server and whose proxy is replica A,
// so the oauthClient helpers work unchanged.
type replicaSet struct {
	*proxyFixture
	redis *testredis.Server
	rdb   *redis.Client // the test's own view of Redis
	tap   *cognitoTap   // Cognito's tokens as the replicas received them

	redisOpts func(*redis.Options)

	mu       sync.Mutex
	proxies  []*cognitomcp.Proxy
	handlers []http.Handler
	served   []int
	current  int
}

type replicaOptions struct {
	Replicas int
	// Persist runs Redis with appendfsync always, for Stop and Restart.
	Persist bool
	// Config edits the configuration of every replica.
	Config func(*cognitomcp.ProxyConfig)
	// Redis edits the options of every replica's Redis client.
	Redis func(*redis.Options)
}

func newReplicaSet(t *testing.T, opts replicaOptions) *replicaSet {
	t.Helper()
	f := &proxyFixture{t: t, clock: newTestClock(), logs: &syncBuffer{}, responses: &responseLog{}}
	rs := &replicaSet{proxyFixture: f, redisOpts: opts.Redis}
	rs.redis = testredis.StartWithOptions(t, testredis.StartOptions{Persist: opts.Persist})
	rs.rdb = rs.redis.Client(t)
	f.srv = httptest.NewServer(f.responses.record(http.HandlerFunc(rs.route)))
	t.Cleanup(f.srv.Close)
	f.pool = cognitotest.NewUserPool(cognitotest.Options{Now: f.clock.Now})
	t.Cleanup(f.pool.Close)
	f.pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com",
		Groups: []string{"admin", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	f.app = f.pool.AddClient(cognitotest.Client{Secret: "upstream-secret-value", CallbackURLs: []string{f.srv.URL + "/auth/callback"}})
	f.pool.SetAutoLogin("alice")
	rs.tap = &cognitoTap{base: f.pool.Transport()}
	f.cfg = cognitomcp.ProxyConfig{
		IssuerURL: f.pool.Issuer, ClientID: f.app.ID, ClientSecret: "upstream-secret-value",
		BaseURL: f.srv.URL, Keys: cognitomcp.KeyConfig{MasterSecret: testMasterSecret},
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    f.clock.Now, HTTPClient: &http.Client{Transport: rs.tap},
		RateLimits:              cognitomcp.RateLimits{Register: 1000, Authorize: 1000, Token: 1000},
		RevocationCheckInterval: revocationBound,
	}
	if opts.Config != nil {
		opts.Config(&f.cfg)
	}
	for range opts.Replicas {
		rs.add(nil)
	}
	if len(rs.proxies) > 0 {
		f.proxy = rs.proxies[0]
	}
	return rs
}

// add starts one more replica: the shared configuration edited by mod, with
// a Redis client of its own. It returns the replica's index.
func (rs *replicaSet) add(mod func(*cognitomcp.ProxyConfig)) int {
	rs.t.Helper()
	cfg := rs.cfg
	ro := &redis.Options{Addr: rs.redis.Addr}
	if rs.redisOpts != nil {
		rs.redisOpts(ro)
	}
	rdb := redis.NewClient(ro)
	rs.t.Cleanup(func() { _ = rdb.Close() })
	cfg.Store = cognitomcp.NewRedisStore(rdb, cognitomcp.RedisStoreOptions{})
	if mod != nil {
		mod(&cfg)
	}
	p, err := cognitomcp.NewProxy(rs.t.Context(), cfg)
	require.NoError(rs.t, err)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.proxies = append(rs.proxies, p)
	rs.handlers = append(rs.handlers, p.Handler(mcpEcho))
	rs.served = append(rs.served, 0)
	if rs.proxy == nil {
		rs.proxy = p
	}
	return len(rs.proxies) - 1
}

// use makes replica i serve the requests that name no replica.
func (rs *replicaSet) use(i int) {
	rs.mu.Lock()
	rs.current = i
	rs.mu.Unlock()
}

// stop takes replica i out of service, as a process that was stopped: a
// request routed to it fails the test.
func (rs *replicaSet) stop(i int) {
	rs.mu.Lock()
	rs.handlers[i] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.t.Errorf("stopped replica %s got %s %s", replicaName(i), r.Method, r.URL.Path)
		http.Error(w, "replica stopped", http.StatusBadGateway)
	})
	rs.mu.Unlock()
}

func (rs *replicaSet) route(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	i := rs.current
	if name := r.Header.Get("X-Replica"); len(name) == 1 {
		i = int(name[0] - 'A')
	}
	h := rs.handlers[i]
	rs.served[i]++
	rs.mu.Unlock()
	h.ServeHTTP(w, r)
}

func (rs *replicaSet) servedBy(i int) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.served[i]
}

func replicaName(i int) string { return string(rune('A' + i)) }

// send sends req to replica i and reads the whole answer. It is safe in any
// goroutine: it never fails the test itself.
func (rs *replicaSet) send(i int, req *http.Request) (*http.Response, []byte, error) {
	req.Header.Set("X-Replica", replicaName(i))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// sendJSON is send, with the answer decoded as a JSON object (nil when it
// is not one).
func (rs *replicaSet) sendJSON(i int, req *http.Request) (*http.Response, map[string]any, error) {
	resp, b, err := rs.send(i, req)
	if err != nil {
		return nil, nil, err
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp, out, nil
}

// postOn posts form to path on replica i and decodes a JSON answer.
func (rs *replicaSet) postOn(i int, path string, form url.Values) (*http.Response, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, rs.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return rs.sendJSON(i, req)
}

// mcpOn calls the MCP endpoint on replica i with token.
func (rs *replicaSet) mcpOn(i int, token string) (*http.Response, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, rs.proxy.Resource(), strings.NewReader(`{}`))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return rs.sendJSON(i, req)
}

// mustMCP is mcpOn for the test goroutine; it returns the status and the
// WWW-Authenticate header.
func (rs *replicaSet) mustMCP(i int, token string) (int, string) {
	rs.t.Helper()
	resp, _, err := rs.mcpOn(i, token)
	require.NoError(rs.t, err)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// mustPost is postOn for the test goroutine.
func (rs *replicaSet) mustPost(i int, path string, form url.Values) (int, map[string]any) {
	rs.t.Helper()
	resp, out, err := rs.postOn(i, path, form)
	require.NoError(rs.t, err)
	return resp.StatusCode, out
}

// refreshForm is the refresh_token grant of client c.
func refreshForm(c *oauthClient, rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}}
}

// redisKey is the Redis key under which the proxy keeps the record id of
// kind: the RedisStore prefix, the kind, and the hex SHA-256 of both
// length-prefixed (the proxy's storeKey).
func redisKey(kind, id string) string {
	var buf []byte
	for _, p := range []string{kind, id} {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	sum := sha256.Sum256(buf)
	return "cognitomcp:" + kind + ":" + hex.EncodeToString(sum[:])
}

// grantID is the grant id at the head of a refresh token (gid.gen.mac).
func grantID(t *testing.T, refreshToken string) string {
	t.Helper()
	gid, _, ok := strings.Cut(refreshToken, ".")
	require.True(t, ok, "refresh token is gid.gen.mac")
	return gid
}

// TestReplicasEachStepOnAnotherReplica runs one sign-in whose every step
// lands on another replica, then revokes on A and checks that B and C
// refuse the revoked tokens within RevocationCheckInterval, and A at once.
func TestReplicasEachStepOnAnotherReplica(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 3})

	// Register on A.
	rs.use(replicaA)
	c := rs.register(loopbackRedirect)

	// Authorize on B.
	rs.use(replicaB)
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	consent := location(t, resp)
	require.Equal(t, "/consent", consent.Path)

	// Consent (page and answer) and the Cognito callback on C.
	rs.use(replicaC)
	form, _ := c.consentForm(consent.String())
	form.Set("action", "approve")
	resp, body = c.postForm(rs.srv.URL+"/consent", form)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	resp, body = c.get(location(t, resp).String()) // Cognito, auto-login
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	resp, body = c.get(location(t, resp).String()) // the callback
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	back := location(t, resp)
	require.Equal(t, "client-state", back.Query().Get("state"))
	code := back.Query().Get("code")
	require.NotEmpty(t, code, back.String())

	// Token on A.
	rs.use(replicaA)
	access, refresh := c.redeem(code)

	// MCP call on B.
	rs.use(replicaB)
	resp, claims := rs.mcp(access)
	require.Equal(t, http.StatusOK, resp.StatusCode, claims)
	assert.Equal(t, "alice", claims["username"])
	assert.Equal(t, c.id, claims["mcp_client"])

	// Refresh on C.
	rs.use(replicaC)
	status, out := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	require.Equal(t, http.StatusOK, status, out)
	access2, refresh2 := out["access_token"].(string), out["refresh_token"].(string)
	require.NotEqual(t, refresh, refresh2)

	for i := range 3 {
		assert.Positive(t, rs.servedBy(i), "replica %s served part of the flow", replicaName(i))
	}

	// Every replica has verified (and cached) both access tokens.
	for i := range 3 {
		for _, tok := range []string{access, access2} {
			status, _ := rs.mustMCP(i, tok)
			require.Equal(t, http.StatusOK, status, "replica %s", replicaName(i))
		}
	}

	// Revoke the access token on A: refused on A at once, on B and C once
	// RevocationCheckInterval has passed.
	status, out = rs.mustPost(replicaA, "/revoke", url.Values{"client_id": {c.id}, "token": {access2}, "token_type_hint": {"access_token"}})
	require.Equal(t, http.StatusOK, status, out)
	status, challenge := rs.mustMCP(replicaA, access2)
	assert.Equal(t, http.StatusUnauthorized, status, "refused at once on the revoking replica")
	assert.Contains(t, challenge, `error="invalid_token"`)
	rs.clock.Advance(revocationBound)
	for _, i := range []int{replicaB, replicaC} {
		status, challenge := rs.mustMCP(i, access2)
		assert.Equal(t, http.StatusUnauthorized, status, "replica %s: revoked access token refused within the bound", replicaName(i))
		assert.Contains(t, challenge, `error="invalid_token"`)
	}
	// The rest of the family still works: only that access token was revoked.
	for i := range 3 {
		status, _ := rs.mustMCP(i, access)
		require.Equal(t, http.StatusOK, status, "replica %s", replicaName(i))
	}

	// Revoke the refresh token on A: the whole family dies, at once for
	// refresh on every replica (the grant is gone from the store), and for
	// its access tokens on B and C within the bound.
	status, out = rs.mustPost(replicaA, "/revoke", url.Values{"client_id": {c.id}, "token": {refresh2}})
	require.Equal(t, http.StatusOK, status, out)
	assert.Equal(t, 1, rs.pool.RevokedRefreshTokens(), "Cognito's refresh token revoked upstream")
	for i := range 3 {
		status, out := rs.mustPost(i, "/token", refreshForm(c, refresh2))
		assert.Equal(t, http.StatusUnauthorized, status, "replica %s", replicaName(i))
		assert.Equal(t, "invalid_grant", out["error"], "replica %s", replicaName(i))
	}
	// A, which revoked, refuses the family's access tokens at once, cache or
	// not; B and C within the bound.
	status, challenge = rs.mustMCP(replicaA, access)
	assert.Equal(t, http.StatusUnauthorized, status, "refused at once on the revoking replica")
	assert.Contains(t, challenge, `error="invalid_token"`)
	rs.clock.Advance(revocationBound)
	for i := range 3 {
		status, challenge := rs.mustMCP(i, access)
		assert.Equal(t, http.StatusUnauthorized, status, "replica %s: access token of a revoked family", replicaName(i))
		assert.Contains(t, challenge, `error="invalid_token"`)
	}
}

// TestReplicasRaces races one code and one refresh token over three
// replicas: one redemption wins; the refreshes cause one refresh at Cognito
// and give every caller the same, working tokens; concurrent MCP calls that
// find Cognito's token expired refresh it once too.
func TestReplicasRaces(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 3, Config: func(cfg *cognitomcp.ProxyConfig) {
		cfg.AccessTokenTTL = 3 * time.Hour // outlives Cognito's, for the last race
	}})
	c := rs.register(loopbackRedirect)

	t.Log("50 concurrent redemptions of one code over three replicas")
	code := c.signIn(nil).Get("code")
	require.NotEmpty(t, code)
	codeForm := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
		"code_verifier": {c.verifier}, "redirect_uri": {c.redirect}}
	statuses := race(t, 50, func(i int) (int, map[string]any, error) {
		resp, out, err := rs.postOn(i%3, "/token", codeForm)
		if err != nil {
			return 0, nil, err
		}
		return resp.StatusCode, out, nil
	})
	assert.Equal(t, map[string]int{"200": 1, "401 invalid_grant": 49}, statuses)

	t.Log("30 concurrent refreshes of one grant over three replicas, Cognito's token due")
	_, rt := c.login()
	rs.clock.Advance(56 * time.Minute) // Cognito's access token (60 min) has less than 5 min left
	before := rs.pool.TokenGrants("refresh_token")
	var mu sync.Mutex
	answers := map[string]int{} // access token + refresh token → callers that got them
	statuses = race(t, 30, func(i int) (int, map[string]any, error) {
		resp, out, err := rs.postOn(i%3, "/token", refreshForm(c, rt))
		if err != nil {
			return 0, nil, err
		}
		if resp.StatusCode == http.StatusOK {
			mu.Lock()
			answers[out["access_token"].(string)+" "+out["refresh_token"].(string)]++
			mu.Unlock()
		}
		return resp.StatusCode, out, nil
	})
	require.Equal(t, map[string]int{"200": 30}, statuses)
	assert.Equal(t, before+1, rs.pool.TokenGrants("refresh_token"), "Cognito refreshed once for the grant")
	require.Len(t, answers, 1, "every caller within the grace period got the same answer")
	var access, refresh string
	for k := range answers {
		access, refresh, _ = strings.Cut(k, " ")
	}
	for i := range 3 {
		status, _ := rs.mustMCP(i, access)
		assert.Equal(t, http.StatusOK, status, "replica %s", replicaName(i))
	}
	status, out := rs.mustPost(replicaB, "/token", refreshForm(c, refresh))
	require.Equal(t, http.StatusOK, status, "the rotated refresh token refreshes: %v", out)
	access = out["access_token"].(string)

	t.Log("30 concurrent MCP calls over three replicas, Cognito's token expired")
	rs.clock.Advance(61 * time.Minute) // past the Cognito token refreshed above; the proxy token lives 3h
	before = rs.pool.TokenGrants("refresh_token")
	statuses = race(t, 30, func(i int) (int, map[string]any, error) {
		resp, out, err := rs.mcpOn(i%3, access)
		if err != nil {
			return 0, nil, err
		}
		return resp.StatusCode, out, nil
	})
	assert.Equal(t, map[string]int{"200": 30}, statuses)
	assert.Equal(t, before+1, rs.pool.TokenGrants("refresh_token"), "Cognito refreshed once behind the requests")
}

// race runs n calls of op at once and counts their outcomes ("200", or the
// status and the OAuth error).
func race(t *testing.T, n int, op func(i int) (int, map[string]any, error)) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			status, out, err := op(i)
			if !assert.NoError(t, err) {
				return
			}
			key := strconv.Itoa(status)
			if e, _ := out["error"].(string); status != http.StatusOK && e != "" {
				key += " " + e
			}
			mu.Lock()
			counts[key]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}

// fixedKeys are explicit keys, as an operator would configure them.
func fixedKeys() cognitomcp.KeyConfig {
	return cognitomcp.KeyConfig{
		SigningKeys:    []cognitomcp.SigningKey{{ID: "sig-2030", Secret: []byte(strings.Repeat("s", 32))}},
		EncryptionKeys: []cognitomcp.EncryptionKey{{ID: "enc-2030", Key: []byte(strings.Repeat("e", 32))}},
		CookieKeys:     [][]byte{[]byte(strings.Repeat("c", 32))},
	}
}

// TestRestartKeepsEverything stops the only replica and starts a new one
// with the same keys and Redis: a registered client, an access token, a
// refresh token and a sign-in in flight (the browser at Cognito) all carry
// over.
func TestRestartKeepsEverything(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 1, Config: func(cfg *cognitomcp.ProxyConfig) { cfg.Keys = fixedKeys() }})
	c := rs.register(loopbackRedirect)
	access, refresh := c.login()
	status, _ := rs.mustMCP(replicaA, access)
	require.Equal(t, http.StatusOK, status)

	// A sign-in in flight: consent given, the browser away at Cognito.
	resp, body := c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	form, _ := c.consentForm(location(t, resp).String())
	form.Set("action", "approve")
	resp, body = c.postForm(rs.srv.URL+"/consent", form)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	resp, body = c.get(location(t, resp).String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	callback := location(t, resp)

	// Restart: A goes; a new process with the same keys and Redis takes over.
	rs.stop(replicaA)
	a2 := rs.add(nil)
	rs.use(a2)

	// The registered client still authorizes.
	resp, body = c.get(c.authorizeURL(nil))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	assert.Equal(t, "/consent", location(t, resp).Path)

	// The access token still verifies (the new process has no cache).
	status, challenge := rs.mustMCP(a2, access)
	assert.Equal(t, http.StatusOK, status, challenge)

	// The sign-in in flight completes.
	resp, body = c.get(callback.String())
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	code := location(t, resp).Query().Get("code")
	require.NotEmpty(t, code)
	status, out := rs.mustPost(a2, "/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {c.id}, "code_verifier": {c.verifier}, "redirect_uri": {c.redirect}})
	assert.Equal(t, http.StatusOK, status, out)

	// The refresh token still refreshes, and its new access token works.
	status, out = rs.mustPost(a2, "/token", refreshForm(c, refresh))
	require.Equal(t, http.StatusOK, status, out)
	status, _ = rs.mustMCP(a2, out["access_token"].(string))
	assert.Equal(t, http.StatusOK, status)
}

// redisValue reads a raw value from Redis.
func (rs *replicaSet) redisValue(ctx context.Context, key string) ([]byte, error) {
	return rs.rdb.Get(ctx, key).Bytes()
}

// TestReplicasRevokeDuringKeyRollout: during an encryption-key rollout a
// replica that has the new key first seals with it, which a replica still
// without it cannot open; a revocation written there is nevertheless seen
// on that replica (a revocation record counts by its presence), where a
// value that does not open would read as "not revoked".
func TestReplicasRevokeDuringKeyRollout(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{})
	old, err := rs.cfg.Keys.Expanded()
	require.NoError(t, err)
	rs.add(func(cfg *cognitomcp.ProxyConfig) { cfg.Keys = old }) // A: the old keys only
	rollout := old
	rollout.EncryptionKeys = append([]cognitomcp.EncryptionKey{{ID: "enc-new", Key: bytes.Repeat([]byte("n"), 32)}}, old.EncryptionKeys...)
	rs.add(func(cfg *cognitomcp.ProxyConfig) { cfg.Keys = rollout }) // B: the new key first
	rs.proxy = rs.proxies[replicaA]

	rs.use(replicaA)
	c := rs.register(loopbackRedirect)
	access, _ := c.login()
	status, _ := rs.mustMCP(replicaA, access)
	require.Equal(t, http.StatusOK, status)

	status, out := rs.mustPost(replicaB, "/revoke", url.Values{"client_id": {c.id}, "token": {access}, "token_type_hint": {"access_token"}})
	require.Equal(t, http.StatusOK, status, out)
	rs.clock.Advance(revocationBound) // past A's cache
	status, _ = rs.mustMCP(replicaA, access)
	assert.Equal(t, http.StatusUnauthorized, status, "A, which cannot open B's record, refuses the token all the same")
}

// deleteFailingRedis is a RedisStore whose deletes of grants fail while
// failing is set (a Redis blip on one replica's connection).
type deleteFailingRedis struct {
	*cognitomcp.RedisStore
	failing atomic.Bool
}

func (s *deleteFailingRedis) Delete(ctx context.Context, key string) error {
	if s.failing.Load() && strings.HasPrefix(key, "grant:") {
		return errors.New("redis delete: i/o timeout")
	}
	return s.RedisStore.Delete(ctx, key)
}

// TestReplicasReplayRevocationRetried: a refresh token replayed (RFC 9700
// §4.14.2) on a replica whose store cannot record the revocation is
// answered 503, not invalid_grant, so that the client comes back, and the
// revocation with it; once it is recorded, the thief's newer refresh token
// is dead on every replica.
func TestReplicasReplayRevocationRetried(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: 2})
	rdb := redis.NewClient(&redis.Options{Addr: rs.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	flaky := &deleteFailingRedis{RedisStore: cognitomcp.NewRedisStore(rdb, cognitomcp.RedisStoreOptions{})}
	c3 := rs.add(func(cfg *cognitomcp.ProxyConfig) { cfg.Store = flaky })
	c := rs.register(loopbackRedirect)
	_, stolen := c.login()

	status, out := rs.mustPost(replicaB, "/token", refreshForm(c, stolen)) // the thief, first
	require.Equal(t, http.StatusOK, status, out)
	thief := out["refresh_token"].(string)

	rs.clock.Advance(time.Minute) // past the grace period: the rightful client's token is a replay
	flaky.failing.Store(true)
	status, out = rs.mustPost(c3, "/token", refreshForm(c, stolen))
	assert.Equal(t, http.StatusServiceUnavailable, status, "a revocation the store did not record: %v", out["error"])
	assert.Equal(t, "temporarily_unavailable", out["error"])

	flaky.failing.Store(false)
	status, out = rs.mustPost(c3, "/token", refreshForm(c, stolen)) // the client comes back
	assert.Equal(t, http.StatusUnauthorized, status, "%v", out)
	status, out = rs.mustPost(replicaB, "/token", refreshForm(c, thief))
	assert.Equal(t, http.StatusUnauthorized, status, "the thief's token, on another replica: %v", out["error"])
}
