package cognitomcp_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// testClock is a settable clock shared by the fake pool and the verifier.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Unix(1_900_000_000, 0)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// verifierFixture is a fake pool with AWS hostnames, a user in two groups,
// a user in none, an app client, and verifiers for both token kinds.
type verifierFixture struct {
	pool   *cognitotest.UserPool
	clock  *testClock
	client *cognitotest.Client
	access *cognitomcp.Verifier
	id     *cognitomcp.Verifier
}

func newVerifierFixture(t *testing.T, skew time.Duration) *verifierFixture {
	t.Helper()
	clock := newTestClock()
	pool := cognitotest.NewUserPool(cognitotest.Options{Region: "eu-west-1", AWSHostnames: true, Now: clock.Now})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "pw-alice-1", Email: "alice@example.com",
		Groups: []string{"admin", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	pool.AddUser(cognitotest.User{Username: "bob", Password: "pw-bob-1"})
	client := pool.AddClient(cognitotest.Client{Secret: "s3cret", CallbackURLs: []string{"http://localhost/cb"}})
	newV := func(use cognitomcp.TokenUse) *cognitomcp.Verifier {
		v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
			UserPoolID: pool.PoolID, ClientIDs: []string{client.ID}, TokenUse: use,
			ClockSkew: skew, HTTPClient: pool.HTTPClient(), Now: clock.Now, CacheSize: -1,
		})
		require.NoError(t, err)
		return v
	}
	return &verifierFixture{pool: pool, clock: clock, client: client, access: newV(cognitomcp.AccessToken), id: newV(cognitomcp.IDToken)}
}

func (f *verifierFixture) accessToken(mod func(*cognitotest.TokenOptions)) string {
	o := cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID}
	if mod != nil {
		mod(&o)
	}
	return f.pool.MintAccessToken(o)
}

// resign returns tok with its header and payload replaced through edit and
// signed by sign (which receives the signing input).
func resign(t *testing.T, tok string, edit func(h, p map[string]any), sign func(input string) []byte) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	var h, p map[string]any
	require.NoError(t, json.Unmarshal(b64d(t, parts[0]), &h))
	require.NoError(t, json.Unmarshal(b64d(t, parts[1]), &p))
	edit(h, p)
	input := b64e(mustJSON(t, h)) + "." + b64e(mustJSON(t, p))
	return input + "." + b64e(sign(input))
}

func b64d(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func b64e(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func rs256(key *rsa.PrivateKey) func(string) []byte {
	return func(input string) []byte {
		d := sha256.Sum256([]byte(input))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
}

func hs256(secret []byte) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

func TestVerifier(t *testing.T) {
	f := newVerifierFixture(t, 30*time.Second)
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(f.pool.AccessPublicKey()))})
	other := cognitotest.NewUserPool(cognitotest.Options{Region: "eu-west-1", PoolID: "eu-west-1_Other", AWSHostnames: true, Now: f.clock.Now})
	t.Cleanup(other.Close)
	other.AddUser(cognitotest.User{Username: "alice", Password: "pw"})
	good := f.accessToken(nil)
	noop := func(string) []byte { return nil }

	tests := []struct {
		name    string
		token   func() string
		use     cognitomcp.TokenUse
		advance time.Duration
		wantErr error
		check   func(t *testing.T, c *cognitomcp.Claims)
	}{
		{name: "good access token", token: func() string { return good }, check: func(t *testing.T, c *cognitomcp.Claims) {
			assert.Equal(t, "alice", c.Username)
			assert.Equal(t, f.client.ID, c.ClientID)
			assert.Equal(t, cognitomcp.AccessToken, c.TokenUse)
			assert.Equal(t, []string{"admin", "staff"}, c.Groups)
			assert.Equal(t, f.pool.Issuer, c.Issuer)
			assert.NotEmpty(t, c.Subject)
			assert.Equal(t, f.clock.Now().Add(time.Hour).Unix(), c.Expiry.Unix())
		}},
		{name: "good ID token", use: cognitomcp.IDToken, token: func() string {
			return f.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID})
		}, check: func(t *testing.T, c *cognitomcp.Claims) {
			assert.Equal(t, "alice", c.Username)
			assert.Equal(t, "alice@example.com", c.Email)
			assert.Equal(t, f.client.ID, c.ClientID)
			var extra struct {
				Tenant string `json:"custom:tenant"`
			}
			require.NoError(t, c.Decode(&extra))
			assert.Equal(t, "acme", extra.Tenant)
		}},
		{name: "ID token where an access token is required", wantErr: cognitomcp.ErrWrongTokenUse, token: func() string {
			return f.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID})
		}},
		{name: "access token where an ID token is required", use: cognitomcp.IDToken, wantErr: cognitomcp.ErrWrongTokenUse,
			token: func() string { return good }},
		{name: "access token of another app client", wantErr: cognitomcp.ErrWrongClient, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Claims = map[string]any{"client_id": "someotherclient"} })
		}},
		{name: "ID token for another app client", use: cognitomcp.IDToken, wantErr: cognitomcp.ErrWrongClient, token: func() string {
			return f.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID, Claims: map[string]any{"aud": "someotherclient"}})
		}},
		{name: "missing client_id", wantErr: cognitomcp.ErrWrongClient, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Claims = map[string]any{"client_id": nil} })
		}},
		{name: "missing token_use", wantErr: cognitomcp.ErrWrongTokenUse, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Claims = map[string]any{"token_use": nil} })
		}},
		{name: "token of another pool", wantErr: cognitomcp.ErrUnknownKey, token: func() string {
			return other.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID})
		}},
		{name: "issuer of another pool", wantErr: cognitomcp.ErrWrongIssuer, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Issuer = other.Issuer })
		}},
		{name: "the updated issuer form", token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Issuer = f.pool.OtherIssuer() })
		}, check: func(t *testing.T, c *cognitomcp.Claims) {
			assert.True(t, strings.HasPrefix(c.Issuer, "https://issuer-cognito-idp.eu-west-1.amazonaws.com/"), c.Issuer)
		}},
		{name: "issuer over plain http", wantErr: cognitomcp.ErrWrongIssuer, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Issuer = strings.Replace(f.pool.Issuer, "https:", "http:", 1) })
		}},
		{name: "expired", advance: time.Hour + time.Minute, wantErr: cognitomcp.ErrTokenExpired, token: func() string { return good }},
		{name: "expired within the skew", advance: time.Hour + 20*time.Second, token: func() string { return good }},
		{name: "nbf in the future", wantErr: cognitomcp.ErrTokenNotYetValid, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) {
				o.Claims = map[string]any{"nbf": f.clock.Now().Add(time.Minute).Unix()}
			})
		}},
		{name: "nbf in the future within the skew", token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) {
				o.Claims = map[string]any{"nbf": f.clock.Now().Add(10 * time.Second).Unix()}
			})
		}},
		{name: "issued in the future", wantErr: cognitomcp.ErrTokenNotYetValid, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.IssuedAt = f.clock.Now().Add(10 * time.Minute) })
		}},
		{name: "no exp", wantErr: cognitomcp.ErrMalformedToken, token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Claims = map[string]any{"exp": nil} })
		}},
		{name: "alg none", wantErr: cognitomcp.ErrUnsupportedAlg, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { h["alg"] = "none" }, noop)
		}},
		{name: "HS256 with the RSA public key as secret", wantErr: cognitomcp.ErrUnsupportedAlg, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { h["alg"] = "HS256" }, hs256(pubPEM))
		}},
		{name: "RS512", wantErr: cognitomcp.ErrUnsupportedAlg, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { h["alg"] = "RS512" }, rs256(attacker))
		}},
		{name: "attacker key embedded as jwk", wantErr: cognitomcp.ErrInvalidSignature, token: func() string {
			return resign(t, good, func(h, _ map[string]any) {
				h["jwk"] = map[string]any{"kty": "RSA", "n": b64e(attacker.N.Bytes()), "e": "AQAB"}
				h["jku"] = "https://evil.example/jwks.json"
			}, rs256(attacker))
		}},
		{name: "kid with a path", wantErr: cognitomcp.ErrUnknownKey, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { h["kid"] = "../../etc/passwd" }, rs256(attacker))
		}},
		{name: "no kid", wantErr: cognitomcp.ErrUnknownKey, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { delete(h, "kid") }, rs256(attacker))
		}},
		{name: "crit header", wantErr: cognitomcp.ErrMalformedToken, token: func() string {
			return resign(t, good, func(h, _ map[string]any) { h["crit"] = []string{"exp"} }, rs256(attacker))
		}},
		{name: "tampered payload", wantErr: cognitomcp.ErrInvalidSignature, token: func() string {
			parts := strings.Split(good, ".")
			var p map[string]any
			require.NoError(t, json.Unmarshal(b64d(t, parts[1]), &p))
			p["cognito:groups"] = []string{"admin", "root"}
			return parts[0] + "." + b64e(mustJSON(t, p)) + "." + parts[2]
		}},
		{name: "tampered signature", wantErr: cognitomcp.ErrInvalidSignature, token: func() string {
			parts := strings.Split(good, ".")
			sig := b64d(t, parts[2])
			sig[10] ^= 1
			return parts[0] + "." + parts[1] + "." + b64e(sig)
		}},
		{name: "user in no group", token: func() string {
			return f.accessToken(func(o *cognitotest.TokenOptions) { o.Username = "bob" })
		}, check: func(t *testing.T, c *cognitomcp.Claims) {
			assert.Nil(t, c.Groups)
			assert.False(t, c.InGroup("admin"))
			assert.Equal(t, "bob", c.Username)
		}},
		{name: "empty", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return "" }},
		{name: "two parts", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return good[:strings.LastIndex(good, ".")] }},
		{name: "four parts", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return good + ".x" }},
		{name: "bad base64", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return "!!!." + good[strings.Index(good, ".")+1:] }},
		{name: "header not JSON", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return b64e([]byte("nope")) + good[strings.Index(good, "."):] }},
		{name: "oversized", wantErr: cognitomcp.ErrMalformedToken, token: func() string { return strings.Repeat("a", 17<<10) + ".b.c" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.token()
			if tc.advance != 0 {
				f.clock.Advance(tc.advance)
				defer f.clock.Advance(-tc.advance)
			}
			v := f.access
			if tc.use == cognitomcp.IDToken {
				v = f.id
			}
			c, err := v.Verify(t.Context(), raw)
			if tc.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tc.wantErr)
				assert.ErrorIs(t, err, cognitomcp.ErrInvalidToken, "every token failure is an invalid_token")
				var e *cognitomcp.Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, http.StatusUnauthorized, e.Status)
				assert.Equal(t, "invalid_token", e.Code)
				if raw != "" {
					assert.NotContains(t, e.Description, raw[:min(len(raw), 20)])
				}
				assert.Nil(t, c)
				return
			}
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifierRequiredScopes(t *testing.T) {
	f := newVerifierFixture(t, 0)
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, RequiredScopes: []string{"mcp/tools"},
		HTTPClient: f.pool.HTTPClient(), Now: f.clock.Now,
	})
	require.NoError(t, err)
	_, err = v.Verify(t.Context(), f.accessToken(nil))
	var e *cognitomcp.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusForbidden, e.Status)
	assert.Equal(t, "insufficient_scope", e.Code)
	assert.ErrorIs(t, err, cognitomcp.ErrInsufficientScope)

	c, err := v.Verify(t.Context(), f.accessToken(func(o *cognitotest.TokenOptions) { o.Scopes = []string{"openid", "mcp/tools"} }))
	require.NoError(t, err)
	assert.True(t, c.HasScope("mcp/tools"))

	// Behind RequireToken, the refusal names the scopes to ask for: the
	// middleware's own, those the token holds (openid email profile) and the
	// required one, as RequireScopes' does.
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v, ResourceMetadataURL: testPRM, Scopes: []string{"openid"}})(echoClaims)
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+f.accessToken(nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Equal(t, `Bearer error="insufficient_scope", error_description="the token lacks a required scope", resource_metadata="`+testPRM+`", scope="openid email profile mcp/tools"`,
		rec.Header().Get("WWW-Authenticate"))
}

// TestVerifierIssuedAtLeeway: iat is Cognito's clock rounded down to the
// second, so a server whose clock lags Cognito's by a second sees a token
// used at once (a client_credentials token) as issued in the future. iat
// gets 5 minutes of leeway whatever ClockSkew is; exp and nbf keep ClockSkew
// (0 here).
func TestVerifierIssuedAtLeeway(t *testing.T) {
	f := newVerifierFixture(t, 0)
	now := f.clock.Now()
	tests := []struct {
		name    string
		opts    cognitotest.TokenOptions
		wantErr error
	}{
		{name: "machine token issued a second ahead of the server's clock", opts: cognitotest.TokenOptions{IssuedAt: now.Add(time.Second)}},
		{name: "user token issued a second ahead", opts: cognitotest.TokenOptions{Username: "alice", IssuedAt: now.Add(time.Second)}},
		{name: "issued 5 minutes ahead", opts: cognitotest.TokenOptions{IssuedAt: now.Add(5 * time.Minute)}},
		{name: "issued more than 5 minutes ahead", opts: cognitotest.TokenOptions{IssuedAt: now.Add(5*time.Minute + time.Second)},
			wantErr: cognitomcp.ErrTokenNotYetValid},
		{name: "exp stays strict", opts: cognitotest.TokenOptions{IssuedAt: now.Add(-time.Hour - time.Second), TTL: time.Hour},
			wantErr: cognitomcp.ErrTokenExpired},
		{name: "nbf stays strict", opts: cognitotest.TokenOptions{Claims: map[string]any{"nbf": now.Add(time.Second).Unix()}},
			wantErr: cognitomcp.ErrTokenNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.ClientID = f.client.ID
			c, err := f.access.Verify(t.Context(), f.pool.MintAccessToken(tc.opts))
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.ErrorIs(t, err, cognitomcp.ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.opts.IssuedAt.Unix(), c.IssuedAt.Unix())
		})
	}
}

func TestVerifierKeyRotation(t *testing.T) {
	f := newVerifierFixture(t, 0)
	before := f.pool.Requests(cognitotest.EndpointJWKS)

	f.pool.RotateKeys()
	rotated := f.accessToken(nil)

	// Within the rate-limit window the new kid is unknown and nothing is fetched.
	_, err := f.access.Verify(t.Context(), rotated)
	require.ErrorIs(t, err, cognitomcp.ErrUnknownKey)
	assert.Equal(t, before, f.pool.Requests(cognitotest.EndpointJWKS))

	// After it, one fetch finds the new key.
	f.clock.Advance(2 * time.Minute)
	_, err = f.access.Verify(t.Context(), rotated)
	require.NoError(t, err)
	assert.Equal(t, before+1, f.pool.Requests(cognitotest.EndpointJWKS))
}

func TestVerifierUnknownKidsFetchOncePerWindow(t *testing.T) {
	f := newVerifierFixture(t, 0)
	f.clock.Advance(2 * time.Minute)
	before := f.pool.Requests(cognitotest.EndpointJWKS)
	attacker := must(rsa.GenerateKey(rand.Reader, 2048))
	good := f.accessToken(nil)

	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			tok := resign(t, good, func(h, _ map[string]any) { h["kid"] = "unknown-" + string(rune('a'+i%26)) + time.Duration(i).String() }, rs256(attacker))
			_, err := f.access.Verify(t.Context(), tok)
			assert.ErrorIs(t, err, cognitomcp.ErrUnknownKey)
		})
	}
	wg.Wait()
	assert.Equal(t, before+1, f.pool.Requests(cognitotest.EndpointJWKS), "200 unknown kids, one fetch")
}

func TestVerifierKeySetUnavailable(t *testing.T) {
	f := newVerifierFixture(t, 0)
	old := f.accessToken(nil)
	f.pool.RotateKeys()
	rotated := f.accessToken(nil)
	f.pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: http.StatusInternalServerError})
	f.clock.Advance(2 * time.Minute)

	_, err := f.access.Verify(t.Context(), rotated)
	require.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
	assert.False(t, errors.Is(err, cognitomcp.ErrInvalidToken), "unreachable keys are not an invalid token")
	var e *cognitomcp.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusServiceUnavailable, e.Status)

	// Tokens under keys already known verify without the network.
	_, err = f.access.Verify(t.Context(), old)
	require.NoError(t, err)

	// Once the JWKS answers again, the next window recovers.
	f.pool.ClearFaults()
	f.clock.Advance(2 * time.Minute)
	_, err = f.access.Verify(t.Context(), rotated)
	require.NoError(t, err)
}

func TestNewVerifierConfig(t *testing.T) {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	t.Cleanup(pool.Close)
	tests := []struct {
		name    string
		cfg     cognitomcp.VerifierConfig
		wantErr string
	}{
		{"no pool or issuer", cognitomcp.VerifierConfig{ClientIDs: []string{"c"}}, "UserPoolID or IssuerURL"},
		{"no client ids", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer}, "ClientIDs"},
		{"malformed pool id", cognitomcp.VerifierConfig{UserPoolID: "nounderscore", ClientIDs: []string{"c"}}, "not of the form"},
		{"region mismatch", cognitomcp.VerifierConfig{UserPoolID: "eu-west-1_abc", Region: "us-east-1", ClientIDs: []string{"c"}}, "Region"},
		{"bad token use", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, TokenUse: "refresh"}, "TokenUse"},
		{"http issuer off loopback", cognitomcp.VerifierConfig{IssuerURL: "http://cognito.example.com/p", ClientIDs: []string{"c"}}, "plain http"},
		{"skew too large", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, ClockSkew: time.Hour}, "ClockSkew"},
		// Not silently the default, as a negative CacheMaxBytes is not.
		{"negative JWKS refresh interval", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, JWKSRefreshInterval: -time.Minute},
			"VerifierConfig.JWKSRefreshInterval: -1m0s is negative"},
		// What strings.Split of an empty setting gives: it would refuse every token.
		{"blank required scope", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, RequiredScopes: strings.Split("", ",")},
			`VerifierConfig.RequiredScopes: "" is not a name`},
		{"required scope of white space", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, RequiredScopes: []string{"openid", " "}},
			`VerifierConfig.RequiredScopes: " " is not a name`},
		{"required scopes in one string", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, RequiredScopes: []string{"openid mcp/tools"}},
			`VerifierConfig.RequiredScopes: "openid mcp/tools" is not a name`},
		// An ID token's aud is the app client: Audience would be ignored.
		{"audience with ID tokens", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, TokenUse: cognitomcp.IDToken,
			Audience: "https://mcp.example.com/mcp"}, "VerifierConfig.Audience"},
		// An ID token has no scope claim: RequiredScopes would refuse every one.
		{"required scopes with ID tokens", cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}, TokenUse: cognitomcp.IDToken,
			RequiredScopes: []string{"openid"}}, "VerifierConfig.RequiredScopes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cognitomcp.NewVerifier(t.Context(), tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
	t.Run("no required scopes, and Audience with access tokens, are fine", func(t *testing.T) {
		_, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"},
			RequiredScopes: []string{}, Audience: "https://mcp.example.com/mcp"})
		require.NoError(t, err)
	})
	t.Run("discovery unreachable fails closed", func(t *testing.T) {
		pool.InjectFault(cognitotest.EndpointDiscovery, cognitotest.Fault{Status: http.StatusServiceUnavailable})
		defer pool.ClearFaults()
		_, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{"c"}})
		require.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
	})
}

func TestRegionFromPoolID(t *testing.T) {
	for in, want := range map[string]string{
		"us-east-1_AbC123":     "us-east-1",
		"us-gov-west-1_x":      "us-gov-west-1",
		"eusc-de-east-1_Ab9":   "eusc-de-east-1",
		"ap-southeast-2_dEIHP": "ap-southeast-2",
	} {
		got, err := cognitomcp.RegionFromPoolID(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "nounderscore", "us-east-1_", "_abc", "us-east-1_a/b", strings.Repeat("a", 50) + "_abcdef"} {
		_, err := cognitomcp.RegionFromPoolID(bad)
		assert.Error(t, err, bad)
	}
}

// TestVerifierAudience: with Audience set, an access token must carry it in
// aud (Cognito's resource binding): a token bound to another resource, or to
// none, is refused as issued for another resource; without Audience aud is
// not looked at.
func TestVerifierAudience(t *testing.T) {
	f := newVerifierFixture(t, 0)
	const mine = "https://mcp.example.com/mcp"
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, Audience: mine,
		HTTPClient: f.pool.HTTPClient(), Now: f.clock.Now,
	})
	require.NoError(t, err)
	bound := func(resource string) string {
		return f.accessToken(func(o *cognitotest.TokenOptions) { o.Resource = resource })
	}
	c, err := v.Verify(t.Context(), bound(mine))
	require.NoError(t, err)
	assert.Equal(t, "alice", c.Username)
	for name, tok := range map[string]string{"another resource": bound("https://other.example/mcp"), "no resource": bound("")} {
		_, err := v.Verify(t.Context(), tok)
		assert.ErrorIs(t, err, cognitomcp.ErrWrongAudience, name)
		assert.ErrorIs(t, err, cognitomcp.ErrInvalidToken, name)
	}
	_, err = f.access.Verify(t.Context(), bound("https://other.example/mcp"))
	assert.NoError(t, err, "without Audience, aud is not checked")
}
