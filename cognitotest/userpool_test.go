package cognitotest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/cognitomcp/cognitomcp/cognitotest"
)

const (
	callback = "https://app.example.test/callback"
	verifier = "dBjftJeZ4CVP-mJ0kkKHg3HXCCjcnahhnOV3PfVTDoQwGNT01"
)

// challenge is the S256 code_challenge of verifier.
var challenge = func() string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}()

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a pool with a user, a public (PKCE) client and a secret client.
type fixture struct {
	pool    *cognitotest.UserPool
	clock   *clock
	user    *cognitotest.User
	public  *cognitotest.Client
	private *cognitotest.Client
}

func newFixture(t *testing.T, opts cognitotest.Options) *fixture {
	t.Helper()
	f := &fixture{clock: newClock()}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	f.pool = cognitotest.NewUserPool(opts)
	t.Cleanup(f.pool.Close)
	f.user = f.pool.AddUser(cognitotest.User{
		Username: "alice", Password: "correct horse", Email: "alice@example.com", EmailVerified: true,
	})
	f.public = f.pool.AddClient(cognitotest.Client{
		CallbackURLs: []string{callback}, LogoutURLs: []string{"https://app.example.test/bye"},
	})
	f.private = f.pool.AddClient(cognitotest.Client{Secret: "s3cr3t", CallbackURLs: []string{callback}})
	return f
}

// noFollow is a client that returns redirects instead of following them.
func noFollow(p *cognitotest.UserPool) *http.Client {
	c := p.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// reply is a decoded HTTP response.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func do(t *testing.T, c *http.Client, method, rawURL string, body io.Reader, header http.Header) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, body)
	require.NoError(t, err)
	maps.Copy(req.Header, header)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// post sends a form to the domain; basic, if given, is client id and secret.
func post(t *testing.T, p *cognitotest.UserPool, path string, form url.Values, basic ...string) reply {
	t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if len(basic) == 2 {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic[0]+":"+basic[1])))
	}
	return do(t, p.HTTPClient(), http.MethodPost, p.DomainURL+path, strings.NewReader(form.Encode()), h)
}

// auth returns Basic credentials for a secret client, none for a public one.
func auth(c *cognitotest.Client) []string {
	if c.Secret == "" {
		return nil
	}
	return []string{c.ID, c.Secret}
}

func authorizeURL(p *cognitotest.UserPool, c *cognitotest.Client, extra url.Values) string {
	q := url.Values{"client_id": {c.ID}, "redirect_uri": {callback}, "response_type": {"code"}}
	for k, v := range extra {
		q[k] = v
	}
	return p.DomainURL + "/oauth2/authorize?" + q.Encode()
}

// redirectQuery returns the query of a 302's Location.
func redirectQuery(t *testing.T, r reply) url.Values {
	t.Helper()
	require.Equal(t, http.StatusFound, r.status, r.raw)
	loc, err := url.Parse(r.header.Get("Location"))
	require.NoError(t, err)
	return loc.Query()
}

// autoCode gets a code for alice through auto-login.
func autoCode(t *testing.T, f *fixture, c *cognitotest.Client, extra url.Values) string {
	t.Helper()
	f.pool.SetAutoLogin("alice")
	r := do(t, noFollow(f.pool), http.MethodGet, authorizeURL(f.pool, c, extra), nil, nil)
	code := redirectQuery(t, r).Get("code")
	require.NotEmpty(t, code)
	return code
}

// signIn runs auto-login with PKCE and redeems the code.
func signIn(t *testing.T, f *fixture, c *cognitotest.Client, extra url.Values) reply {
	t.Helper()
	q := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	maps.Copy(q, extra)
	code := autoCode(t, f, c, q)
	r := post(t, f.pool, "/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {c.ID}, "code": {code},
		"redirect_uri": {callback}, "code_verifier": {verifier},
	}, auth(c)...)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	return r
}

func str(r reply, key string) string { s, _ := r.body[key].(string); return s }

func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	_, claims, err := cognitotest.DecodeJWT(token)
	require.NoError(t, err)
	return claims
}

func claimNames(t *testing.T, token string) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(claimsOf(t, token)))
}

func TestDiscoveryDocumentHasCognitosKeys(t *testing.T) {
	want := []string{
		"authorization_endpoint", "end_session_endpoint", "id_token_signing_alg_values_supported",
		"issuer", "jwks_uri", "response_types_supported", "revocation_endpoint", "scopes_supported",
		"subject_types_supported", "token_endpoint", "token_endpoint_auth_methods_supported",
		"userinfo_endpoint",
	}
	for _, tc := range []struct {
		name string
		opts cognitotest.Options
	}{
		{"loopback", cognitotest.Options{}},
		{"aws hostnames", cognitotest.Options{AWSHostnames: true, Region: "ap-southeast-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFixture(t, tc.opts).pool
			r := do(t, p.HTTPClient(), http.MethodGet, p.Issuer+"/.well-known/openid-configuration", nil, nil)
			require.Equal(t, http.StatusOK, r.status)
			assert.Equal(t, want, slices.Sorted(maps.Keys(r.body)))
			assert.Equal(t, p.Issuer, r.body["issuer"])
			assert.Equal(t, p.Issuer+"/.well-known/jwks.json", r.body["jwks_uri"])
			assert.Equal(t, p.DomainURL+"/oauth2/token", r.body["token_endpoint"])
			assert.Equal(t, p.DomainURL+"/oauth2/userInfo", r.body["userinfo_endpoint"])
			assert.Equal(t, []any{"RS256"}, r.body["id_token_signing_alg_values_supported"])
			assert.Equal(t, []any{"code", "token"}, r.body["response_types_supported"])
			assert.Equal(t, []any{"client_secret_basic", "client_secret_post"}, r.body["token_endpoint_auth_methods_supported"])
			issuerHost, _ := url.Parse(p.Issuer)
			domainHost, _ := url.Parse(p.DomainURL)
			assert.NotEqual(t, issuerHost.Host, domainHost.Host, "discovery is not on the domain")
			assert.Equal(t, p.URL, p.DomainURL)
		})
	}
}

func TestIssuerForms(t *testing.T) {
	const pool = "eu-central-1_AbCdEf123"
	for _, tc := range []struct {
		name          string
		opts          cognitotest.Options
		issuer, other string
	}{
		{"aws original", cognitotest.Options{PoolID: pool, AWSHostnames: true},
			"https://cognito-idp.eu-central-1.amazonaws.com/" + pool,
			"https://issuer-cognito-idp.eu-central-1.amazonaws.com/" + pool},
		{"aws updated", cognitotest.Options{PoolID: pool, AWSHostnames: true, UpdatedIssuer: true},
			"https://issuer-cognito-idp.eu-central-1.amazonaws.com/" + pool,
			"https://cognito-idp.eu-central-1.amazonaws.com/" + pool},
		{"loopback", cognitotest.Options{PoolID: pool}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			p := f.pool
			assert.Equal(t, "eu-central-1", p.Region)
			assert.Equal(t, pool, p.PoolID)
			if tc.issuer != "" {
				assert.Equal(t, tc.issuer, p.Issuer)
				assert.Equal(t, tc.other, p.OtherIssuer())
				assert.Equal(t, "https://fakepool.auth.eu-central-1.amazoncognito.com", p.DomainURL)
			}
			assert.NotEqual(t, p.Issuer, p.OtherIssuer())
			ctx := oidc.ClientContext(t.Context(), p.HTTPClient())
			for _, iss := range []string{p.Issuer, p.OtherIssuer()} {
				provider, err := oidc.NewProvider(ctx, iss)
				require.NoError(t, err, iss)
				at := p.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID, Issuer: iss})
				_, err = provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, at)
				assert.NoError(t, err, iss)
				id := p.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID, Issuer: iss})
				_, err = provider.Verifier(&oidc.Config{ClientID: f.public.ID}).Verify(ctx, id)
				assert.NoError(t, err, iss)
			}
			provider, err := oidc.NewProvider(ctx, p.OtherIssuer())
			require.NoError(t, err)
			at := p.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID})
			_, err = provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, at)
			assert.ErrorContains(t, err, "issued by a different provider", "tokens carry Issuer by default")
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	assert.PanicsWithValue(t, `cognitotest: invalid PoolID "nounderscore": want {region}_{suffix}`, func() {
		cognitotest.NewUserPool(cognitotest.Options{PoolID: "nounderscore"})
	})
	assert.Panics(t, func() { cognitotest.NewUserPool(cognitotest.Options{Region: "eu-west-1", PoolID: "us-east-1_x"}) })
	p := newFixture(t, cognitotest.Options{PoolID: "us-gov-west-1_Abc"}).pool
	assert.Equal(t, "us-gov-west-1", p.Region)
	p = newFixture(t, cognitotest.Options{Region: "eu-west-2"}).pool
	assert.Equal(t, "eu-west-2_FakePool01", p.PoolID)
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+/eu-west-2_FakePool01$`, p.Issuer)

	// Cognito's ranges: access and ID tokens 5 min to 1 day, refresh
	// tokens 60 min to 10 years, the rotation grace 0 to 60 s.
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name string
		opts cognitotest.Options
		ok   bool
	}{
		{"access token 5 min", cognitotest.Options{AccessTokenTTL: 5 * time.Minute}, true},
		{"access token 1 day", cognitotest.Options{AccessTokenTTL: day}, true},
		{"access token under 5 min", cognitotest.Options{AccessTokenTTL: 5*time.Minute - time.Second}, false},
		{"access token over 1 day", cognitotest.Options{AccessTokenTTL: day + time.Second}, false},
		{"negative access token", cognitotest.Options{AccessTokenTTL: -time.Hour}, false},
		{"ID token 5 min and 1 day", cognitotest.Options{IDTokenTTL: 5 * time.Minute, AccessTokenTTL: day}, true},
		{"ID token under 5 min", cognitotest.Options{IDTokenTTL: time.Minute}, false},
		{"ID token over 1 day", cognitotest.Options{IDTokenTTL: 2 * day}, false},
		{"refresh token 60 min", cognitotest.Options{RefreshTokenTTL: time.Hour}, true},
		{"refresh token 10 years", cognitotest.Options{RefreshTokenTTL: 3650 * day}, true},
		{"refresh token under 60 min", cognitotest.Options{RefreshTokenTTL: 59 * time.Minute}, false},
		{"refresh token over 10 years", cognitotest.Options{RefreshTokenTTL: 3651 * day}, false},
		{"rotation grace 60 s", cognitotest.Options{RefreshTokenRotationGrace: time.Minute}, true},
		{"rotation grace over 60 s", cognitotest.Options{RefreshTokenRotationGrace: time.Minute + time.Second}, false},
		{"negative rotation grace", cognitotest.Options{RefreshTokenRotationGrace: -time.Second}, false},
		{"negative LoginSessionTTL", cognitotest.Options{LoginSessionTTL: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ok {
				assert.NotPanics(t, func() { newFixture(t, tc.opts) })
				return
			}
			assert.Panics(t, func() { newFixture(t, tc.opts) })
		})
	}
	assert.PanicsWithValue(t, "cognitotest: AccessTokenTTL 1m0s is outside Cognito's range 5m0s to 24h0m0s", func() {
		cognitotest.NewUserPool(cognitotest.Options{AccessTokenTTL: time.Minute})
	})
}

func TestJWKSHasSeparateIDAndAccessKeys(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	r := do(t, p.HTTPClient(), http.MethodGet, p.Issuer+"/.well-known/jwks.json", nil, nil)
	require.Equal(t, http.StatusOK, r.status)
	keys := r.body["keys"].([]any)
	require.Len(t, keys, 2)
	var kids []string
	for _, k := range keys {
		k := k.(map[string]any)
		assert.Equal(t, []string{"alg", "e", "kid", "kty", "n", "use"}, slices.Sorted(maps.Keys(k)))
		assert.Equal(t, "RS256", k["alg"])
		assert.Equal(t, "sig", k["use"])
		assert.Equal(t, "RSA", k["kty"])
		kids = append(kids, k["kid"].(string))
	}
	assert.ElementsMatch(t, []string{p.IDKeyID(), p.AccessKeyID()}, kids)
	assert.NotEqual(t, p.IDKeyID(), p.AccessKeyID())

	tokens := signIn(t, f, f.public, nil)
	for _, tc := range []struct{ name, token, kid string }{
		{"access", str(tokens, "access_token"), p.AccessKeyID()},
		{"id", str(tokens, "id_token"), p.IDKeyID()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header, _, err := cognitotest.DecodeJWT(tc.token)
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"kid": tc.kid, "alg": "RS256"}, header, "no typ")
			assert.True(t, strings.HasPrefix(tc.token, "eyJraWQiOi"), "kid first, as Cognito")
		})
	}
}

// The fake's tokens have exactly the claim sets the reference lists
// (cognito.md §1.3, checklist items 4 and 5).
func TestTokenClaimSets(t *testing.T) {
	accessBase := []string{"auth_time", "client_id", "event_id", "exp", "iat", "iss", "jti",
		"origin_jti", "scope", "sub", "token_use", "username", "version"}
	idBase := []string{"at_hash", "aud", "auth_time", "cognito:username", "email", "email_verified",
		"event_id", "exp", "iat", "iss", "jti", "origin_jti", "sub", "token_use"}
	with := func(base []string, extra ...string) []string {
		return slices.Sorted(slices.Values(append(slices.Clone(base), extra...)))
	}

	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.AddUser(cognitotest.User{Username: "bob", Password: "pw", Email: "bob@example.com",
		Groups: []string{"admins", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	p.AddResourceServer("https://api.example.test", "read", "write")
	m2m := p.AddClient(cognitotest.Client{Secret: "m2m-secret", ClientCredentials: true,
		AllowedScopes: []string{"https://api.example.test/read"}})
	flow := signIn(t, f, f.public, url.Values{"nonce": {"n-0S6"}})
	bound := signIn(t, f, f.public, url.Values{"resource": {"https://mcp.example.test/"}})
	cc := post(t, p, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, m2m.ID, m2m.Secret)
	require.Equal(t, http.StatusOK, cc.status, cc.raw)
	bobAccess := p.MintAccessToken(cognitotest.TokenOptions{Username: "bob", ClientID: f.public.ID})

	for _, tc := range []struct {
		name  string
		token string
		want  []string
	}{
		{"access token", str(flow, "access_token"), accessBase},
		{"access token with groups", bobAccess, with(accessBase, "cognito:groups")},
		{"access token bound to a resource", str(bound, "access_token"), with(accessBase, "aud")},
		{"client credentials access token", str(cc, "access_token"),
			[]string{"auth_time", "client_id", "exp", "iat", "iss", "jti", "scope", "sub", "token_use", "version"}},
		{"id token with nonce", str(flow, "id_token"), with(idBase, "nonce")},
		{"id token without nonce", str(bound, "id_token"), idBase},
		{"id token with groups and custom attributes", p.MintIDToken(cognitotest.TokenOptions{
			Username: "bob", ClientID: f.public.ID, AccessToken: bobAccess}),
			with(idBase, "cognito:groups", "custom:tenant")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, claimNames(t, tc.token))
		})
	}

	t.Run("values", func(t *testing.T) {
		at, id := claimsOf(t, str(flow, "access_token")), claimsOf(t, str(flow, "id_token"))
		assert.Equal(t, "access", at["token_use"])
		assert.Equal(t, f.public.ID, at["client_id"])
		assert.Equal(t, "openid email profile", at["scope"])
		assert.Equal(t, "alice", at["username"])
		assert.Equal(t, f.user.Sub, at["sub"])
		assert.Equal(t, json.Number("2"), at["version"])
		assert.Equal(t, "id", id["token_use"])
		assert.Equal(t, f.public.ID, id["aud"])
		assert.Equal(t, "alice", id["cognito:username"])
		assert.Equal(t, true, id["email_verified"])
		assert.Equal(t, "n-0S6", id["nonce"])
		assert.Equal(t, at["origin_jti"], id["origin_jti"])
		assert.Equal(t, at["event_id"], id["event_id"])
		assert.NotEqual(t, at["jti"], id["jti"])
		sum := sha256.Sum256([]byte(str(flow, "access_token")))
		assert.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:16]), id["at_hash"])
		assert.Equal(t, "https://mcp.example.test/", claimsOf(t, str(bound, "access_token"))["aud"])
		assert.Equal(t, []any{"admins", "staff"}, claimsOf(t, bobAccess)["cognito:groups"])
		m := claimsOf(t, str(cc, "access_token"))
		assert.Equal(t, m2m.ID, m["sub"])
		assert.Equal(t, "https://api.example.test/read", m["scope"])
	})
}

func TestMintOptions(t *testing.T) {
	f := newFixture(t, cognitotest.Options{AccessTokenTTL: 5 * time.Minute, IDTokenTTL: 10 * time.Minute})
	p := f.pool
	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, p.Issuer)
	require.NoError(t, err)
	verify := func(tok string) error {
		_, err := provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, tok)
		return err
	}
	base := cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID}
	now := f.clock.Now().Unix()

	at := claimsOf(t, p.MintAccessToken(base))
	assert.Equal(t, json.Number(itoa(now)), at["iat"], "Now is the clock")
	assert.Equal(t, json.Number(itoa(now+300)), at["exp"], "AccessTokenTTL")
	id := claimsOf(t, p.MintIDToken(base))
	assert.Equal(t, json.Number(itoa(now+600)), id["exp"], "IDTokenTTL")

	o := base
	o.Claims = map[string]any{"custom": "x", "event_id": nil}
	o.Header = map[string]any{"typ": "at+jwt"}
	o.Scopes = []string{"openid"}
	tok := p.MintAccessToken(o)
	header, claims, err := cognitotest.DecodeJWT(tok)
	require.NoError(t, err)
	assert.Equal(t, "at+jwt", header["typ"])
	assert.Equal(t, "x", claims["custom"])
	assert.NotContains(t, claims, "event_id")
	assert.Equal(t, "openid", claims["scope"])
	assert.NoError(t, verify(tok))

	expired := base
	expired.TTL = -time.Minute
	var expErr *oidc.TokenExpiredError
	assert.ErrorAs(t, verify(p.MintAccessToken(expired)), &expErr)

	_, claims, _ = cognitotest.DecodeJWT(p.MintAccessToken(base))
	hs := cognitotest.SignWithHS256(map[string]any{"kid": p.AccessKeyID()}, claims, x509.MarshalPKCS1PublicKey(p.AccessPublicKey()))
	assert.Error(t, verify(hs), "HS256 with the public key as secret")
	assert.Error(t, verify(cognitotest.SignWithNone(map[string]any{"kid": p.AccessKeyID()}, claims)))
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	assert.Error(t, verify(cognitotest.SignWithKey(map[string]any{"kid": p.AccessKeyID()}, claims, foreign)))

	assert.Panics(t, func() { p.MintAccessToken(cognitotest.TokenOptions{Username: "nobody"}) })
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

var (
	inputRE = regexp.MustCompile(`<input [^>]*>`)
	attrRE  = regexp.MustCompile(`([a-z]+)="([^"]*)"`)
)

// parseLoginForm returns the hidden fields and the names of all inputs.
func parseLoginForm(body string) (hidden url.Values, names []string) {
	hidden = url.Values{}
	for _, in := range inputRE.FindAllString(body, -1) {
		attrs := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(in, -1) {
			attrs[m[1]] = html.UnescapeString(m[2])
		}
		names = append(names, attrs["name"])
		if attrs["type"] == "hidden" {
			hidden.Set(attrs["name"], attrs["value"])
		}
	}
	return hidden, names
}

func TestLoginFormFlowWithPKCE(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	browser := noFollow(p)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser.Jar = jar

	r := do(t, browser, http.MethodGet, authorizeURL(p, f.public, url.Values{
		"state": {"st&1"}, "nonce": {"n1"}, "scope": {"openid email"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}), nil, nil)
	require.Equal(t, http.StatusFound, r.status)
	loc, err := url.Parse(r.header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "/login", loc.Path, "authorize redirects to the managed login page")

	page := do(t, browser, http.MethodGet, p.DomainURL+loc.RequestURI(), nil, nil)
	require.Equal(t, http.StatusOK, page.status)
	assert.Contains(t, page.raw, `id="signin"`)
	hidden, names := parseLoginForm(page.raw)
	assert.Subset(t, names, []string{"username", "password"})
	assert.Equal(t, "st&1", hidden.Get("state"))
	assert.Equal(t, challenge, hidden.Get("code_challenge"))

	submit := func(password string) reply {
		form := maps.Clone(hidden)
		form.Set("username", "alice")
		form.Set("password", password)
		return do(t, browser, http.MethodPost, p.DomainURL+"/login", strings.NewReader(form.Encode()),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	bad := submit("wrong")
	assert.Equal(t, http.StatusOK, bad.status)
	assert.Contains(t, bad.raw, "Incorrect username or password.")
	assert.Contains(t, bad.raw, `id="signin"`)

	good := submit("correct horse")
	q := redirectQuery(t, good)
	assert.True(t, strings.HasPrefix(good.header.Get("Location"), callback+"?"))
	assert.Equal(t, "st&1", q.Get("state"))

	tokens := post(t, p, "/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {f.public.ID}, "code": {q.Get("code")},
		"redirect_uri": {callback}, "code_verifier": {verifier},
	})
	require.Equal(t, http.StatusOK, tokens.status, tokens.raw)
	assert.Equal(t, []string{"access_token", "expires_in", "id_token", "refresh_token", "token_type"}, slices.Sorted(maps.Keys(tokens.body)))
	assert.Equal(t, "Bearer", tokens.body["token_type"])
	assert.Equal(t, 3600.0, tokens.body["expires_in"])
	assert.Len(t, strings.Split(str(tokens, "refresh_token"), "."), 5, "refresh tokens look like a JWE")
	assert.Equal(t, "*", tokens.header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "application/json;charset=UTF-8", tokens.header.Get("Content-Type"))

	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, p.Issuer)
	require.NoError(t, err)
	idt, err := provider.Verifier(&oidc.Config{ClientID: f.public.ID}).Verify(ctx, str(tokens, "id_token"))
	require.NoError(t, err)
	assert.Equal(t, "n1", idt.Nonce)
	assert.NoError(t, idt.VerifyAccessToken(str(tokens, "access_token")), "at_hash")
	assert.Equal(t, "openid email", claimsOf(t, str(tokens, "access_token"))["scope"])

	assert.Equal(t, 1, p.TokenGrants("authorization_code"))
	assert.Equal(t, 1, p.Requests(cognitotest.EndpointAuthorize))
	assert.Equal(t, 3, p.Requests(cognitotest.EndpointLogin))
}

func TestAutoLoginWithOAuth2Config(t *testing.T) {
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		t.Run(map[oauth2.AuthStyle]string{oauth2.AuthStyleInHeader: "client_secret_basic", oauth2.AuthStyleInParams: "client_secret_post"}[style], func(t *testing.T) {
			f := newFixture(t, cognitotest.Options{AWSHostnames: true})
			p := f.pool
			conf := &oauth2.Config{
				ClientID: f.private.ID, ClientSecret: f.private.Secret, RedirectURL: callback,
				Scopes: []string{"openid", "email"},
				Endpoint: oauth2.Endpoint{
					AuthURL: p.DomainURL + "/oauth2/authorize", TokenURL: p.DomainURL + "/oauth2/token", AuthStyle: style,
				},
			}
			v := oauth2.GenerateVerifier()
			p.SetAutoLogin("alice")
			q := redirectQuery(t, do(t, noFollow(p), http.MethodGet, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(v)), nil, nil))
			assert.Equal(t, "s1", q.Get("state"))

			ctx := context.WithValue(t.Context(), oauth2.HTTPClient, p.HTTPClient())
			tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
			require.NoError(t, err)
			assert.NotEmpty(t, tok.RefreshToken)
			assert.NotEmpty(t, tok.Extra("id_token"))
			assert.Equal(t, "alice", claimsOf(t, tok.AccessToken)["username"])

			p.SetAutoLogin("")
			r := do(t, noFollow(p), http.MethodGet, conf.AuthCodeURL("s2"), nil, nil)
			require.Equal(t, http.StatusFound, r.status)
			assert.True(t, strings.HasPrefix(r.header.Get("Location"), "/login?"), "login form again")
		})
	}
}

func refresh(t *testing.T, f *fixture, c *cognitotest.Client, token string) reply {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	if c.Secret == "" {
		form.Set("client_id", c.ID)
	}
	return post(t, f.pool, "/oauth2/token", form, auth(c)...)
}

func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name             string
		option, runtime  bool
		wantRefreshToken bool
	}{
		{name: "no rotation, like Cognito"},
		{name: "rotation option", option: true, wantRefreshToken: true},
		{name: "rotation switched on", runtime: true, wantRefreshToken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cognitotest.Options{RefreshTokenRotation: tc.option})
			first := signIn(t, f, f.private, url.Values{"resource": {"https://mcp.example.test/"}, "nonce": {"n"}})
			rt := str(first, "refresh_token")
			f.pool.SetRefreshTokenRotation(tc.runtime || tc.option)
			f.clock.Advance(10 * time.Minute)

			second := refresh(t, f, f.private, rt)
			require.Equal(t, http.StatusOK, second.status, second.raw)
			want := []string{"access_token", "expires_in", "id_token", "token_type"}
			if tc.wantRefreshToken {
				want = append(want, "refresh_token")
			}
			assert.ElementsMatch(t, want, slices.Collect(maps.Keys(second.body)))

			for _, kind := range []string{"access_token", "id_token"} {
				a, b := claimsOf(t, str(first, kind)), claimsOf(t, str(second, kind))
				assert.Equal(t, a["origin_jti"], b["origin_jti"], kind)
				assert.NotEqual(t, a["jti"], b["jti"], kind)
				assert.Equal(t, a["auth_time"], b["auth_time"], "%s keeps the sign-in time", kind)
				ai, _ := a["iat"].(json.Number).Int64()
				bi, _ := b["iat"].(json.Number).Int64()
				assert.Equal(t, int64(600), bi-ai, kind)
			}
			assert.Equal(t, "https://mcp.example.test/", claimsOf(t, str(second, "access_token"))["aud"], "resource binding survives")
			assert.NotContains(t, claimsOf(t, str(second, "id_token")), "nonce")

			again := refresh(t, f, f.private, rt)
			if tc.wantRefreshToken {
				assert.Equal(t, "invalid_grant", again.body["error"], "the rotated-out token stops working")
				again = refresh(t, f, f.private, str(second, "refresh_token"))
			}
			assert.Equal(t, http.StatusOK, again.status, again.raw)
			assert.Equal(t, 2, f.pool.TokenGrants("refresh_token"))
		})
	}

	t.Run("expires after RefreshTokenTTL", func(t *testing.T) {
		f := newFixture(t, cognitotest.Options{RefreshTokenTTL: 24 * time.Hour})
		rt := str(signIn(t, f, f.public, nil), "refresh_token")
		f.clock.Advance(23 * time.Hour)
		assert.Equal(t, http.StatusOK, refresh(t, f, f.public, rt).status)
		f.clock.Advance(time.Hour)
		assert.Equal(t, "invalid_grant", refresh(t, f, f.public, rt).body["error"])
	})

	// With RetryGracePeriodSeconds, the token rotated out keeps working
	// (with new tokens, a refresh token included) for the grace period
	// after its first rotation.
	for _, tc := range []struct {
		name  string
		opts  cognitotest.Options
		setup func(p *cognitotest.UserPool)
	}{
		{"rotation grace option", cognitotest.Options{RefreshTokenRotation: true, RefreshTokenRotationGrace: 30 * time.Second}, nil},
		{"rotation grace set", cognitotest.Options{}, func(p *cognitotest.UserPool) {
			p.SetRefreshTokenRotation(true)
			p.SetRefreshTokenRotationGrace(30 * time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			if tc.setup != nil {
				tc.setup(f.pool)
			}
			old := str(signIn(t, f, f.private, nil), "refresh_token")
			first := refresh(t, f, f.private, old)
			require.Equal(t, http.StatusOK, first.status, first.raw)
			f.clock.Advance(29 * time.Second)
			retry := refresh(t, f, f.private, old)
			require.Equal(t, http.StatusOK, retry.status, "within the grace: %s", retry.raw)
			assert.NotEmpty(t, str(retry, "refresh_token"))
			assert.NotEqual(t, str(first, "refresh_token"), str(retry, "refresh_token"))
			f.clock.Advance(time.Second)
			assert.Equal(t, "invalid_grant", refresh(t, f, f.private, old).body["error"], "the grace is over")
			assert.Equal(t, http.StatusOK, post(t, f.pool, "/oauth2/revoke", url.Values{"token": {old}}, auth(f.private)...).status)
			assert.Zero(t, f.pool.RevokedRefreshTokens(), "a token rotated out revokes nothing")
			assert.Equal(t, http.StatusOK, refresh(t, f, f.private, str(first, "refresh_token")).status)
			assert.Equal(t, http.StatusOK, refresh(t, f, f.private, str(retry, "refresh_token")).status)
		})
	}

	t.Run("rotation grace outside Cognito's range", func(t *testing.T) {
		p := newFixture(t, cognitotest.Options{}).pool
		assert.Panics(t, func() { p.SetRefreshTokenRotationGrace(61 * time.Second) })
		assert.Panics(t, func() { p.SetRefreshTokenRotationGrace(-time.Second) })
		assert.NotPanics(t, func() { p.SetRefreshTokenRotationGrace(time.Minute) })
		assert.NotPanics(t, func() { p.SetRefreshTokenRotationGrace(0) })
	})
}

func userInfo(t *testing.T, p *cognitotest.UserPool, token string) reply {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return do(t, p.HTTPClient(), http.MethodGet, p.DomainURL+"/oauth2/userInfo", nil, h)
}

func TestRevoke(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(f *fixture) *cognitotest.Client
	}{
		{"public client", func(f *fixture) *cognitotest.Client { return f.public }},
		{"secret client", func(f *fixture) *cognitotest.Client { return f.private }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cognitotest.Options{})
			p, c := f.pool, tc.client(f)
			tokens := signIn(t, f, c, nil)
			rt, at := str(tokens, "refresh_token"), str(tokens, "access_token")
			other := str(signIn(t, f, c, nil), "refresh_token")
			require.Equal(t, http.StatusOK, userInfo(t, p, at).status)

			form := url.Values{"token": {rt}}
			if c.Secret == "" {
				form.Set("client_id", c.ID)
			}
			r := post(t, p, "/oauth2/revoke", form, auth(c)...)
			assert.Equal(t, http.StatusOK, r.status, r.raw)
			assert.Empty(t, r.raw)
			assert.True(t, p.IsRevoked(rt))
			assert.False(t, p.IsRevoked(other), "other sessions are untouched")

			assert.Equal(t, "invalid_grant", refresh(t, f, c, rt).body["error"])
			ui := userInfo(t, p, at)
			assert.Equal(t, http.StatusUnauthorized, ui.status)
			assert.Contains(t, ui.header.Get("WWW-Authenticate"), `error="invalid_token"`)
			assert.Equal(t, http.StatusOK, refresh(t, f, c, other).status)

			ctx := t.Context()
			provider, err := oidc.NewProvider(ctx, p.Issuer)
			require.NoError(t, err)
			_, err = provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, at)
			assert.NoError(t, err, "a revoked JWT stays locally verifiable")

			assert.Equal(t, http.StatusOK, post(t, p, "/oauth2/revoke", form, auth(c)...).status, "revoking twice is fine")
			assert.Equal(t, 1, p.RevokedRefreshTokens())
		})
	}
}

func TestRevokeErrors(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	noRevoke := p.AddClient(cognitotest.Client{CallbackURLs: []string{callback}, DisableRevocation: true})
	rt := str(signIn(t, f, f.private, nil), "refresh_token")
	tokens := signIn(t, f, f.public, nil)
	for _, tc := range []struct {
		name   string
		form   url.Values
		basic  []string
		status int
		code   string
	}{
		{"unknown token", url.Values{"token": {"nope"}, "client_id": {f.public.ID}}, nil, 200, ""},
		{"secret client without Basic", url.Values{"token": {rt}, "client_id": {f.private.ID}, "client_secret": {f.private.Secret}}, nil, 401, "invalid_client"},
		{"secret client, wrong secret", url.Values{"token": {rt}}, []string{f.private.ID, "wrong"}, 401, "invalid_client"},
		{"unknown client", url.Values{"token": {rt}, "client_id": {"nope"}}, nil, 401, "invalid_client"},
		{"public client by Basic with an empty secret", url.Values{"token": {"x"}}, []string{f.public.ID, ""}, 401, "invalid_client"},
		{"no token", url.Values{"client_id": {f.public.ID}}, nil, 400, "invalid_request"},
		{"revocation disabled", url.Values{"token": {"x"}, "client_id": {noRevoke.ID}}, nil, 400, "invalid_request"},
		{"access token", url.Values{"token": {str(tokens, "access_token")}, "client_id": {f.public.ID}}, nil, 400, "unsupported_token_type"},
		{"another client's refresh token", url.Values{"token": {rt}, "client_id": {f.public.ID}}, nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, p, "/oauth2/revoke", tc.form, tc.basic...)
			assert.Equal(t, tc.status, r.status, r.raw)
			if tc.code != "" {
				assert.Equal(t, tc.code, r.body["error"])
			}
		})
	}
	assert.False(t, p.IsRevoked(rt))
	assert.Zero(t, p.RevokedRefreshTokens())
}

func TestTokenEndpointErrors(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.AddResourceServer("rs", "read")
	cc := p.AddClient(cognitotest.Client{Secret: "cc", ClientCredentials: true, AllowedScopes: []string{"rs/read"}})
	codeGrant := func(c *cognitotest.Client, pkce bool) url.Values {
		extra := url.Values{}
		if pkce {
			extra = url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		}
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {c.ID},
			"code": {autoCode(t, f, c, extra)}, "redirect_uri": {callback}}
	}
	publicRT := str(signIn(t, f, f.public, nil), "refresh_token")
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		send  func(t *testing.T) reply
		code  string
		descr string
	}{
		{name: "no grant_type", code: "invalid_request", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("client_id", f.public.ID))
		}},
		{name: "unknown grant_type", code: "unsupported_grant_type", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "password", "client_id", f.public.ID))
		}},
		{name: "JSON body", code: "invalid_request", send: func(t *testing.T) reply {
			return do(t, p.HTTPClient(), http.MethodPost, p.DomainURL+"/oauth2/token", strings.NewReader(`{}`),
				http.Header{"Content-Type": {"application/json"}})
		}},
		{name: "unknown client", code: "invalid_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "refresh_token", "refresh_token", "x", "client_id", "nope"))
		}},
		{name: "secret client without secret", code: "invalid_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", codeGrant(f.private, false))
		}},
		{name: "secret client, wrong Basic secret", code: "invalid_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", codeGrant(f.private, false), f.private.ID, "wrong")
		}},
		{name: "secret client, wrong post secret", code: "invalid_client", send: func(t *testing.T) reply {
			g := codeGrant(f.private, false)
			g.Set("client_secret", "wrong")
			return post(t, p, "/oauth2/token", g)
		}},
		{name: "public client sending a secret", code: "unauthorized_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", codeGrant(f.public, false), f.public.ID, "made-up")
		}},
		{name: "public client by Basic with an empty secret", code: "invalid_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", codeGrant(f.public, false), f.public.ID, "")
		}},
		{name: "no code", code: "invalid_request", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "authorization_code", "client_id", f.public.ID, "redirect_uri", callback))
		}},
		{name: "unknown code", code: "invalid_grant", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "authorization_code", "client_id", f.public.ID, "code", "nope", "redirect_uri", callback))
		}},
		{name: "another client's code", code: "invalid_grant", send: func(t *testing.T) reply {
			g := codeGrant(f.public, false)
			g.Del("client_id")
			return post(t, p, "/oauth2/token", g, f.private.ID, f.private.Secret)
		}},
		{name: "redirect_uri mismatch", code: "unauthorized_client", descr: "invalid_redirect", send: func(t *testing.T) reply {
			g := codeGrant(f.public, false)
			g.Set("redirect_uri", callback+"/other")
			return post(t, p, "/oauth2/token", g)
		}},
		{name: "PKCE verifier missing", code: "invalid_grant", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", codeGrant(f.public, true))
		}},
		{name: "PKCE verifier wrong", code: "invalid_grant", send: func(t *testing.T) reply {
			g := codeGrant(f.public, true)
			g.Set("code_verifier", strings.Repeat("a", 43))
			return post(t, p, "/oauth2/token", g)
		}},
		{name: "expired code", code: "invalid_grant", send: func(t *testing.T) reply {
			g := codeGrant(f.public, false)
			f.clock.Advance(5 * time.Minute)
			defer f.clock.Advance(-5 * time.Minute)
			return post(t, p, "/oauth2/token", g)
		}},
		{name: "no refresh_token", code: "invalid_request", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "refresh_token", "client_id", f.public.ID))
		}},
		{name: "unknown refresh_token", code: "invalid_grant", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "refresh_token", "client_id", f.public.ID, "refresh_token", "nope"))
		}},
		{name: "another client's refresh_token", code: "invalid_grant", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "refresh_token", "refresh_token", publicRT), f.private.ID, f.private.Secret)
		}},
		{name: "client_credentials for a public client", code: "unauthorized_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "client_credentials", "client_id", f.public.ID))
		}},
		{name: "client_credentials not enabled", code: "unauthorized_client", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "client_credentials"), f.private.ID, f.private.Secret)
		}},
		{name: "client_credentials unknown scope", code: "invalid_scope", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "client_credentials", "scope", "rs/write"), cc.ID, cc.Secret)
		}},
		{name: "client_credentials openid scope", code: "invalid_scope", send: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", form("grant_type", "client_credentials", "scope", "openid"), cc.ID, cc.Secret)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.send(t)
			assert.Equal(t, http.StatusBadRequest, r.status, r.raw)
			assert.Equal(t, tc.code, r.body["error"], r.raw)
			if tc.descr != "" {
				assert.Equal(t, tc.descr, r.body["error_description"])
			}
			assert.Equal(t, "application/json;charset=UTF-8", r.header.Get("Content-Type"))
		})
	}
	assert.Zero(t, p.TokenGrants("client_credentials"))
}

func TestCodeIsSingleUse(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	g := url.Values{"grant_type": {"authorization_code"}, "client_id": {f.public.ID},
		"code": {autoCode(t, f, f.public, nil)}, "redirect_uri": {callback}}
	assert.Equal(t, http.StatusOK, post(t, f.pool, "/oauth2/token", g).status)
	replay := post(t, f.pool, "/oauth2/token", g)
	assert.Equal(t, http.StatusBadRequest, replay.status)
	assert.Equal(t, "invalid_grant", replay.body["error"])
	assert.Equal(t, 1, f.pool.TokenGrants("authorization_code"))
}

func TestAuthorizeErrors(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.SetAutoLogin("alice")
	for _, tc := range []struct {
		name   string
		query  url.Values
		page   bool   // 400 error page, no redirect
		errStr string // error= on the redirect; "" for success
	}{
		{name: "unknown client", query: url.Values{"client_id": {"nope"}}, page: true},
		{name: "redirect_uri mismatch", query: url.Values{"redirect_uri": {callback + "/x"}}, page: true},
		{name: "no redirect_uri", query: url.Values{"redirect_uri": {""}}, page: true},
		{name: "implicit grant", query: url.Values{"response_type": {"token"}}, errStr: "unsupported_response_type"},
		{name: "no response_type", query: url.Values{"response_type": {""}}, errStr: "invalid_request"},
		{name: "email without openid", query: url.Values{"scope": {"email"}}, errStr: "invalid_scope"},
		{name: "profile and email without openid", query: url.Values{"scope": {"profile email"}}, errStr: "invalid_scope"},
		{name: "scope not allowed", query: url.Values{"scope": {"openid phone"}}, errStr: "invalid_scope"},
		{name: "plain PKCE", query: url.Values{"code_challenge": {verifier}, "code_challenge_method": {"plain"}}, errStr: "invalid_request"},
		{name: "challenge without method", query: url.Values{"code_challenge": {challenge}}, errStr: "invalid_request"},
		{name: "method without challenge", query: url.Values{"code_challenge_method": {"S256"}}, errStr: "invalid_request"},
		{name: "relative resource", query: url.Values{"resource": {"/mcp"}}, errStr: "invalid_target"},
		{name: "success", query: url.Values{"scope": {"openid"}, "resource": {"https://mcp.example.test"}}},
		{name: "email with openid", query: url.Values{"scope": {"email openid"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"state": {"abc"}}
			maps.Copy(q, tc.query)
			r := do(t, noFollow(p), http.MethodGet, authorizeURL(p, f.public, q), nil, nil)
			if tc.page {
				assert.Equal(t, http.StatusBadRequest, r.status)
				assert.Empty(t, r.header.Get("Location"))
				assert.Contains(t, r.raw, "An error was encountered")
				return
			}
			got := redirectQuery(t, r)
			assert.True(t, strings.HasPrefix(r.header.Get("Location"), callback+"?"))
			assert.Equal(t, "abc", got.Get("state"), "state is echoed")
			assert.Equal(t, tc.errStr, got.Get("error"))
			assert.Equal(t, tc.errStr == "", got.Get("code") != "")
		})
	}
}

func TestClientCredentials(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.AddResourceServer("https://api.example.test", "read", "write")
	p.AddResourceServer("other", "admin")
	m2m := p.AddClient(cognitotest.Client{Secret: "m2m", ClientCredentials: true,
		AllowedScopes: []string{"https://api.example.test/read", "https://api.example.test/write"}})
	for _, tc := range []struct {
		name  string
		scope string
		post  bool
		want  string
	}{
		{name: "all allowed scopes by default", want: "https://api.example.test/read https://api.example.test/write"},
		{name: "requested scope, client_secret_post", scope: "https://api.example.test/write", post: true, want: "https://api.example.test/write"},
		{name: "scopes the client may not use are dropped", scope: "https://api.example.test/read other/admin", want: "https://api.example.test/read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			if tc.scope != "" {
				form.Set("scope", tc.scope)
			}
			basic := []string{m2m.ID, m2m.Secret}
			if tc.post {
				form.Set("client_id", m2m.ID)
				form.Set("client_secret", m2m.Secret)
				basic = nil
			}
			r := post(t, p, "/oauth2/token", form, basic...)
			require.Equal(t, http.StatusOK, r.status, r.raw)
			assert.ElementsMatch(t, []string{"access_token", "expires_in", "token_type"}, slices.Collect(maps.Keys(r.body)))
			c := claimsOf(t, str(r, "access_token"))
			assert.Equal(t, tc.want, c["scope"])
			assert.Equal(t, m2m.ID, c["sub"])
			assert.Equal(t, m2m.ID, c["client_id"])
			assert.NotContains(t, c, "username")
		})
	}
	assert.Equal(t, 3, p.TokenGrants("client_credentials"))
}

func TestUserInfo(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.AddUser(cognitotest.User{Username: "bob", Email: "bob@example.com", Attributes: map[string]string{"custom:tenant": "acme", "name": "Bob"}})
	mint := func(o cognitotest.TokenOptions) string {
		o.ClientID = f.public.ID
		if o.Username == "" {
			o.Username = "bob"
		}
		return p.MintAccessToken(o)
	}
	t.Run("attributes by scope", func(t *testing.T) {
		for _, tc := range []struct {
			scopes []string
			want   map[string]any
		}{
			{[]string{"openid"}, map[string]any{"sub": "", "username": "bob", "email": "bob@example.com", "email_verified": "false", "custom:tenant": "acme", "name": "Bob"}},
			{[]string{"openid", "email"}, map[string]any{"sub": "", "username": "bob", "email": "bob@example.com", "email_verified": "false"}},
			{[]string{"openid", "profile"}, map[string]any{"sub": "", "username": "bob", "custom:tenant": "acme", "name": "Bob"}},
		} {
			r := userInfo(t, p, mint(cognitotest.TokenOptions{Scopes: tc.scopes}))
			require.Equal(t, http.StatusOK, r.status, r.raw)
			assert.NotEmpty(t, r.body["sub"])
			tc.want["sub"] = r.body["sub"]
			assert.Equal(t, tc.want, r.body, tc.scopes)
		}
	})
	t.Run("go-oidc", func(t *testing.T) {
		ctx := oidc.ClientContext(t.Context(), p.HTTPClient())
		provider, err := oidc.NewProvider(ctx, p.Issuer)
		require.NoError(t, err)
		at := mint(cognitotest.TokenOptions{Username: "alice"})
		info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at}))
		require.NoError(t, err)
		assert.Equal(t, f.user.Sub, info.Subject)
		assert.True(t, info.EmailVerified, `Cognito sends "true"`)
	})
	m2m := p.AddClient(cognitotest.Client{Secret: "x", ClientCredentials: true})
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", http.StatusBadRequest},
		{"no openid scope", mint(cognitotest.TokenOptions{Scopes: []string{"aws.cognito.signin.user.admin"}}), http.StatusUnauthorized},
		{"expired", mint(cognitotest.TokenOptions{TTL: -time.Second}), http.StatusUnauthorized},
		{"id token", p.MintIDToken(cognitotest.TokenOptions{Username: "bob", ClientID: f.public.ID}), http.StatusUnauthorized},
		{"client credentials token", p.MintAccessToken(cognitotest.TokenOptions{ClientID: m2m.ID, Scopes: []string{"openid"}}), http.StatusUnauthorized},
		{"foreign issuer", mint(cognitotest.TokenOptions{Issuer: "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}), http.StatusUnauthorized},
		{"garbage", "abc.def.ghi", http.StatusUnauthorized},
		{"alg none", func() string {
			h, c, _ := cognitotest.DecodeJWT(mint(cognitotest.TokenOptions{}))
			return cognitotest.SignWithNone(h, c)
		}(), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := userInfo(t, p, tc.token)
			assert.Equal(t, tc.status, r.status, r.raw)
			assert.NotEmpty(t, r.header.Get("WWW-Authenticate"))
		})
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	for _, tc := range []struct {
		name     string
		query    url.Values
		location string // "" means an error page
	}{
		{"allowed logout_uri", url.Values{"client_id": {f.public.ID}, "logout_uri": {"https://app.example.test/bye"}}, "https://app.example.test/bye"},
		{"logout_uri not allowed", url.Values{"client_id": {f.public.ID}, "logout_uri": {"https://evil.example/"}}, ""},
		{"unknown client", url.Values{"client_id": {"nope"}, "logout_uri": {"https://app.example.test/bye"}}, ""},
		{"no logout_uri", url.Values{"client_id": {f.public.ID}}, ""},
		{"sign in again", url.Values{"client_id": {f.public.ID}, "redirect_uri": {callback}, "response_type": {"code"}},
			"/oauth2/authorize?client_id=" + f.public.ID + "&redirect_uri=" + url.QueryEscape(callback) + "&response_type=code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, noFollow(p), http.MethodGet, p.DomainURL+"/logout?"+tc.query.Encode(), nil, nil)
			if tc.location == "" {
				assert.Equal(t, http.StatusBadRequest, r.status)
				assert.Empty(t, r.header.Get("Location"))
				return
			}
			assert.Equal(t, http.StatusFound, r.status)
			assert.Equal(t, tc.location, r.header.Get("Location"))
		})
	}
	assert.Equal(t, 5, p.Requests(cognitotest.EndpointLogout))
}

func TestFaults(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	at := p.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID})
	requests := map[cognitotest.Endpoint]func(t *testing.T) reply{
		cognitotest.EndpointToken: func(t *testing.T) reply {
			return post(t, p, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {f.public.ID}, "refresh_token": {"x"}})
		},
		cognitotest.EndpointRevoke: func(t *testing.T) reply {
			return post(t, p, "/oauth2/revoke", url.Values{"token": {"x"}, "client_id": {f.public.ID}})
		},
		cognitotest.EndpointJWKS: func(t *testing.T) reply {
			return do(t, p.HTTPClient(), http.MethodGet, p.Issuer+"/.well-known/jwks.json", nil, nil)
		},
		cognitotest.EndpointDiscovery: func(t *testing.T) reply {
			return do(t, p.HTTPClient(), http.MethodGet, p.Issuer+"/.well-known/openid-configuration", nil, nil)
		},
		cognitotest.EndpointUserInfo: func(t *testing.T) reply { return userInfo(t, p, at) },
		cognitotest.EndpointAuthorize: func(t *testing.T) reply {
			return do(t, noFollow(p), http.MethodGet, authorizeURL(p, f.public, nil), nil, nil)
		},
		cognitotest.EndpointLogin: func(t *testing.T) reply {
			return do(t, noFollow(p), http.MethodGet, p.DomainURL+"/login?client_id="+f.public.ID, nil, nil)
		},
		cognitotest.EndpointLogout: func(t *testing.T) reply {
			return do(t, noFollow(p), http.MethodGet, p.DomainURL+"/logout", nil, nil)
		},
	}
	for e, send := range requests {
		t.Run("status on "+string(e), func(t *testing.T) {
			before := p.Requests(e)
			p.InjectFault(e, cognitotest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
			r := send(t)
			assert.Equal(t, http.StatusServiceUnavailable, r.status)
			assert.Equal(t, "server_error", r.body["error"])
			assert.NotEqual(t, http.StatusServiceUnavailable, send(t).status, "Times: 1")
			assert.Equal(t, before+2, p.Requests(e))
		})
	}

	t.Run("429 until cleared", func(t *testing.T) {
		p.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Status: http.StatusTooManyRequests})
		for range 3 {
			r := requests[cognitotest.EndpointToken](t)
			assert.Equal(t, http.StatusTooManyRequests, r.status)
			assert.Equal(t, "too_many_requests", r.body["error"])
		}
		p.ClearFaults()
		assert.Equal(t, http.StatusBadRequest, requests[cognitotest.EndpointToken](t).status)
	})

	t.Run("Times counts down", func(t *testing.T) {
		p.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: 500, Times: 2})
		var got []int
		for range 3 {
			got = append(got, requests[cognitotest.EndpointJWKS](t).status)
		}
		assert.Equal(t, []int{500, 500, 200}, got)
	})

	t.Run("malformed JSON", func(t *testing.T) {
		p.InjectFault(cognitotest.EndpointDiscovery, cognitotest.Fault{MalformedJSON: true, Times: 1})
		r := requests[cognitotest.EndpointDiscovery](t)
		assert.Equal(t, http.StatusOK, r.status)
		assert.False(t, json.Valid([]byte(r.raw)))
		p.InjectFault(cognitotest.EndpointDiscovery, cognitotest.Fault{MalformedJSON: true, Times: 1})
		_, err := oidc.NewProvider(t.Context(), p.Issuer)
		assert.Error(t, err)
		_, err = oidc.NewProvider(t.Context(), p.Issuer)
		assert.NoError(t, err, "fault used up")
	})

	t.Run("delay honours the client's deadline", func(t *testing.T) {
		p.InjectFault(cognitotest.EndpointToken, cognitotest.Fault{Delay: time.Hour, Times: 1})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.DomainURL+"/oauth2/token", strings.NewReader("grant_type=x"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		_, err = p.HTTPClient().Do(req)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("delay then the normal answer", func(t *testing.T) {
		p.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Delay: 10 * time.Millisecond, Times: 1})
		start := time.Now()
		r := requests[cognitotest.EndpointJWKS](t)
		assert.Equal(t, http.StatusOK, r.status)
		assert.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)
		assert.Len(t, r.body["keys"], 2)
	})
}

func TestRotateKeys(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, p.Issuer)
	require.NoError(t, err)
	verifier := provider.Verifier(&oidc.Config{SkipClientIDCheck: true})
	opts := cognitotest.TokenOptions{Username: "alice", ClientID: f.public.ID}
	old := p.MintAccessToken(opts)
	_, err = verifier.Verify(ctx, old)
	require.NoError(t, err)
	oldAccess, oldID := p.AccessKeyID(), p.IDKeyID()

	p.RotateKeys()
	assert.NotEqual(t, oldAccess, p.AccessKeyID())
	assert.NotEqual(t, oldID, p.IDKeyID())
	kids := func() []string {
		r := do(t, p.HTTPClient(), http.MethodGet, p.Issuer+"/.well-known/jwks.json", nil, nil)
		var out []string
		for _, k := range r.body["keys"].([]any) {
			out = append(out, k.(map[string]any)["kid"].(string))
		}
		return out
	}
	assert.ElementsMatch(t, []string{oldAccess, oldID, p.AccessKeyID(), p.IDKeyID()}, kids())
	fetches := p.Requests(cognitotest.EndpointJWKS)

	fresh := p.MintAccessToken(opts)
	header, _, _ := cognitotest.DecodeJWT(fresh)
	assert.Equal(t, p.AccessKeyID(), header["kid"])
	_, err = verifier.Verify(ctx, fresh)
	assert.NoError(t, err, "unknown kid makes go-oidc refetch")
	assert.Equal(t, fetches+1, p.Requests(cognitotest.EndpointJWKS))
	_, err = verifier.Verify(ctx, old)
	assert.NoError(t, err, "previous keys are still published")

	p.DropOldKeys()
	assert.ElementsMatch(t, []string{p.AccessKeyID(), p.IDKeyID()}, kids())
	provider, err = oidc.NewProvider(ctx, p.Issuer)
	require.NoError(t, err)
	verifier = provider.Verifier(&oidc.Config{SkipClientIDCheck: true})
	_, err = verifier.Verify(ctx, old)
	assert.Error(t, err)
	_, err = verifier.Verify(ctx, fresh)
	assert.NoError(t, err)
}

// TestConcurrentUse hammers one pool from 50 goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, cognitotest.Options{})
	p := f.pool
	p.SetAutoLogin("alice")
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			assert.NoError(t, hammer(t.Context(), f, i))
		})
	}
	wg.Go(p.RotateKeys)
	wg.Wait()
	assert.Equal(t, n, p.TokenGrants("authorization_code"))
	assert.Equal(t, n, p.TokenGrants("refresh_token"))
	assert.Equal(t, 2*n, p.Requests(cognitotest.EndpointToken))
	assert.Equal(t, n, p.Requests(cognitotest.EndpointUserInfo))
	assert.Equal(t, n, p.RevokedRefreshTokens())
}

// hammer runs one sign-in, refresh, userInfo and revoke; it reports errors
// instead of failing, as it runs off the test goroutine.
func hammer(ctx context.Context, f *fixture, i int) error {
	p := f.pool
	name := "user" + strconv.Itoa(i)
	p.AddUser(cognitotest.User{Username: name, Groups: []string{"g"}})
	_ = p.MintAccessToken(cognitotest.TokenOptions{Username: name, ClientID: f.public.ID})
	p.InjectFault(cognitotest.EndpointLogout, cognitotest.Fault{Status: 500})
	client := noFollow(p)
	send := func(method, rawURL string, form url.Values, header http.Header) (*http.Response, map[string]any, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
		if err != nil {
			return nil, nil, err
		}
		maps.Copy(req.Header, header)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m, nil
	}
	resp, _, err := send(http.MethodGet, authorizeURL(p, f.public, nil), nil, nil)
	if err != nil {
		return err
	}
	loc, _ := resp.Location()
	_, tok, err := send(http.MethodPost, p.DomainURL+"/oauth2/token", url.Values{"grant_type": {"authorization_code"},
		"client_id": {f.public.ID}, "code": {loc.Query().Get("code")}, "redirect_uri": {callback}}, nil)
	if err != nil {
		return err
	}
	rt, _ := tok["refresh_token"].(string)
	at, _ := tok["access_token"].(string)
	resp, _, err = send(http.MethodPost, p.DomainURL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"},
		"client_id": {f.public.ID}, "refresh_token": {rt}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("refresh: %v %v", err, resp)
	}
	resp, _, err = send(http.MethodGet, p.DomainURL+"/oauth2/userInfo", nil, http.Header{"Authorization": {"Bearer " + at}})
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("userInfo: %v %v", err, resp)
	}
	resp, _, err = send(http.MethodPost, p.DomainURL+"/oauth2/revoke", url.Values{"token": {rt}, "client_id": {f.public.ID}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: %v %v", err, resp)
	}
	p.ClearFaults()
	return nil
}

// TestDiscoveryOnlyAtTheIssuer: discovery and the JWKS answer only under
// an issuer path of the pool (a wrong discovery URL fails, as at Cognito).
func TestDiscoveryOnlyAtTheIssuer(t *testing.T) {
	f := newFixture(t, cognitotest.Options{PoolID: "eu-central-1_AbCdEf123", AWSHostnames: true})
	client := f.pool.HTTPClient()
	for url, want := range map[string]int{
		f.pool.Issuer + "/.well-known/openid-configuration":                                                           http.StatusOK,
		f.pool.OtherIssuer() + "/.well-known/jwks.json":                                                               http.StatusOK,
		"https://cognito-idp.eu-central-1.amazonaws.com/junk/eu-central-1_AbCdEf123/.well-known/openid-configuration": http.StatusNotFound,
		"https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Other99/.well-known/openid-configuration":        http.StatusNotFound,
		// Another region's hosts: a pool answers only on its own region's.
		"https://cognito-idp.us-east-1.amazonaws.com/eu-central-1_AbCdEf123/.well-known/openid-configuration":           http.StatusNotFound,
		"https://issuer-cognito-idp.us-east-1.amazonaws.com/eu-central-1_AbCdEf123/.well-known/jwks.json":               http.StatusNotFound,
		"https://sts.eu-central-1.amazonaws.com/eu-central-1_AbCdEf123/.well-known/jwks.json":                           http.StatusNotFound,
		"https://issuer-cognito-idp.eu-central-1.amazonaws.com/eu-central-1_AbCdEf123/.well-known/openid-configuration": http.StatusOK,
	} {
		resp, err := client.Get(url)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, url)
	}
}

// TestIgnoreResource: on the Lite tier or the classic hosted UI, Cognito
// has no resource binding, so resource is ignored: no aud, no error.
func TestIgnoreResource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ignore   bool
		resource string
		wantAud  any    // nil: no aud claim
		errStr   string // error= on the redirect
	}{
		{name: "binding (default)", resource: "https://mcp.example.test/", wantAud: "https://mcp.example.test/"},
		{name: "binding refuses a relative resource", resource: "/mcp", errStr: "invalid_target"},
		{name: "ignored", ignore: true, resource: "https://mcp.example.test/"},
		{name: "ignored, even relative", ignore: true, resource: "/mcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cognitotest.Options{IgnoreResource: tc.ignore})
			if tc.errStr != "" {
				f.pool.SetAutoLogin("alice")
				r := do(t, noFollow(f.pool), http.MethodGet, authorizeURL(f.pool, f.public, url.Values{"resource": {tc.resource}}), nil, nil)
				assert.Equal(t, tc.errStr, redirectQuery(t, r).Get("error"))
				return
			}
			tokens := signIn(t, f, f.public, url.Values{"resource": {tc.resource}})
			assert.Equal(t, tc.wantAud, claimsOf(t, str(tokens, "access_token"))["aud"])
			assert.Equal(t, tc.wantAud, claimsOf(t, str(refresh(t, f, f.public, str(tokens, "refresh_token")), "access_token"))["aud"])

			// The login form carries resource only when it binds.
			f.pool.SetAutoLogin("")
			r := do(t, noFollow(f.pool), http.MethodGet, authorizeURL(f.pool, f.public, url.Values{"resource": {tc.resource}}), nil, nil)
			loc, err := url.Parse(r.header.Get("Location"))
			require.NoError(t, err)
			assert.Equal(t, !tc.ignore, loc.Query().Has("resource"))
		})
	}
}
