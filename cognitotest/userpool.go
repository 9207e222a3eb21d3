// Package cognitotest provides a fake Amazon Cognito user pool for tests, in
// the spirit of net/http/httptest.
//
// NewUserPool starts two loopback HTTP servers, as Cognito has two hosts: the
// issuer host serves OIDC discovery and the JWKS under the issuer URL, and the
// user-pool domain serves /oauth2/authorize, /oauth2/token, /oauth2/revoke,
// /oauth2/userInfo, /login and /logout. Tokens have the header, claims and
// lifetimes of real Cognito tokens, signed with one RSA key for ID tokens and
// another for access tokens.
//
//	pool := cognitotest.NewUserPool(cognitotest.Options{})
//	defer pool.Close()
//	pool.AddUser(cognitotest.User{Username: "alice", Password: "pw", Groups: []string{"admin"}})
//	app := pool.AddClient(cognitotest.Client{CallbackURLs: []string{"http://127.0.0.1/cb"}})
//
//	provider, err := oidc.NewProvider(ctx, pool.Issuer)
//	// ...
//	at := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
//	_, err = provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, at)
//
// With Options.AWSHostnames the pool presents the real issuer and domain
// names (https://cognito-idp.{region}.amazonaws.com/{pool} and
// https://fakepool.auth.{region}.amazoncognito.com); reach them with the
// client from UserPool.HTTPClient, for example through oidc.ClientContext.
//
// Without SetAutoLogin, /oauth2/authorize redirects to /login, whose HTML
// form (inputs "username" and "password", submit button id "signin", the
// authorize parameters in hidden fields) posts back to /login; success
// redirects to the client's redirect_uri with code and state, and starts a
// managed-login session: a cookie on the domain host that, for
// Options.LoginSessionTTL (default 1 hour, as in Cognito), lets a later
// /oauth2/authorize from the same browser redirect back with a code at
// once, for any client of the pool. /logout ends the session.
//
// # What the fake models
//
// As Cognito does: the ORIGINAL and UPDATED issuer forms; discovery with
// Cognito's keys only, on the issuer host and not on the domain; separate
// ID and access keys, and key rotation; token claims and lifetimes, within
// Cognito's limits; the authorization code grant with exact redirect_uri
// match and optional S256 PKCE; single-use codes; client_secret_basic and
// client_secret_post; refresh without a new refresh token, or with
// rotation and its grace period; revocation of a refresh token and the
// tokens derived from it; userInfo for access tokens with openid;
// client_credentials with resource-server scopes; resource binding (aud)
// of managed login on the Essentials and Plus tiers, or its absence
// (Options.IgnoreResource); the managed-login session; error codes and
// where they are shown (error page or redirect).
//
// # Where it deviates
//
//   - The servers speak plain HTTP on loopback (with AWSHostnames, the
//     https URLs are reached through Transport). Client.CallbackURLs and
//     LogoutURLs accept any URL, http on 127.0.0.1 included, because
//     httptest servers listen there; Cognito requires https, except
//     http://localhost.
//   - SetAutoLogin signs a user in without a form and without a session,
//     a test shortcut Cognito does not have.
//   - In loopback mode the UPDATED issuer is {issuer host}/updated/{pool};
//     with AWSHostnames it is the real form.
//   - Multi-Region replication is not modelled: with AWSHostnames only the
//     pool's own region's issuer hosts answer.
//   - Some details are not documented by AWS and are chosen here: the
//     code lifetime (5 minutes); the session cookie's name and attributes;
//     the error code when email, phone or profile is asked for without
//     openid (invalid_scope); and rotation at /oauth2/token, which Cognito
//     documents only for GetTokensFromRefreshToken.
//   - There is no MFA, federation, password policy or account state, and
//     no Lambda trigger except SetPreTokenGeneration's scope suppression.
//
// A UserPool is safe for concurrent use.
package cognitotest

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a UserPool. The zero value gives a pool in us-east-1
// with Cognito's default token lifetimes.
type Options struct {
	// Region of the pool. Default "us-east-1", or the prefix of PoolID.
	Region string
	// PoolID is "{region}_{suffix}". Default Region+"_FakePool01". The
	// region is everything before the first "_".
	PoolID string
	// UpdatedIssuer selects the UPDATED issuer format. With AWSHostnames
	// the issuer is https://issuer-cognito-idp.{region}.amazonaws.com/{pool};
	// in loopback mode it is {issuer host}/updated/{pool}.
	UpdatedIssuer bool
	// AWSHostnames makes Issuer https://cognito-idp.{region}.amazonaws.com/{pool}
	// and DomainURL https://fakepool.auth.{region}.amazoncognito.com. They
	// are reachable only through HTTPClient or Transport.
	AWSHostnames bool
	// Now is the pool's clock for iat, exp, auth_time and code and refresh
	// token expiry. Default time.Now.
	Now func() time.Time
	// AccessTokenTTL and IDTokenTTL default to 60 minutes. Cognito
	// allows 5 minutes to 1 day; NewUserPool panics outside that range.
	AccessTokenTTL, IDTokenTTL time.Duration
	// RefreshTokenTTL defaults to 30 days. Cognito allows 60 minutes to
	// 10 years (3650 days); NewUserPool panics outside that range.
	RefreshTokenTTL time.Duration
	// RefreshTokenRotation makes the refresh_token grant return a new
	// refresh token and invalidate the one presented, after
	// RefreshTokenRotationGrace. Default off: refresh responses carry no
	// refresh_token, as in Cognito.
	RefreshTokenRotation bool
	// RefreshTokenRotationGrace is how long a refresh token rotated out
	// still works (Cognito's RetryGracePeriodSeconds), measured with Now;
	// within it the old token gets new tokens, a new refresh token
	// included. Default 0: the old token stops working at once. Cognito
	// allows 0 to 60 seconds; NewUserPool panics outside that range.
	RefreshTokenRotationGrace time.Duration
	// LoginSessionTTL is how long the managed-login session lasts after a
	// sign-in at /login, measured with Now: while it lasts, /oauth2/authorize
	// in the same browser (for any client of the pool) redirects back with a
	// code at once, without the form. Default 1 hour, as in Cognito.
	// NewUserPool panics if it is negative.
	LoginSessionTTL time.Duration
	// IgnoreResource makes /oauth2/authorize ignore the resource parameter:
	// no aud in access tokens and no error for a malformed value. This is
	// Cognito's Lite tier and classic hosted UI, where resource binding
	// (managed login on Essentials or Plus) is not available. Default
	// false: resource binds the access token's aud.
	IgnoreResource bool
}

// Cognito's limits on token lifetimes (API_TokenValidityUnitsType) and on
// the rotation grace (API_RefreshTokenRotationType).
const (
	minTokenTTL        = 5 * time.Minute
	maxTokenTTL        = 24 * time.Hour
	minRefreshTokenTTL = time.Hour
	maxRefreshTokenTTL = 3650 * 24 * time.Hour
	maxRotationGrace   = 60 * time.Second
)

// poolIDPattern is the CreateUserPool pattern for pool ids.
var poolIDPattern = regexp.MustCompile(`^[\w-]+_[0-9a-zA-Z]+$`)

// withDefaults fills in defaults and panics on an inconsistent pool id or
// a setting Cognito refuses, as httptest does for unusable configurations.
func (o Options) withDefaults() Options {
	if o.PoolID == "" {
		if o.Region == "" {
			o.Region = "us-east-1"
		}
		o.PoolID = o.Region + "_FakePool01"
	}
	if len(o.PoolID) > 55 || !poolIDPattern.MatchString(o.PoolID) {
		panic(fmt.Sprintf("cognitotest: invalid PoolID %q: want {region}_{suffix}", o.PoolID))
	}
	region, _, _ := strings.Cut(o.PoolID, "_")
	if o.Region != "" && o.Region != region {
		panic(fmt.Sprintf("cognitotest: Region %q does not match PoolID %q", o.Region, o.PoolID))
	}
	o.Region = region
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = time.Hour
	}
	if o.IDTokenTTL == 0 {
		o.IDTokenTTL = time.Hour
	}
	if o.RefreshTokenTTL == 0 {
		o.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	if o.LoginSessionTTL == 0 {
		o.LoginSessionTTL = time.Hour
	}
	checkRange("AccessTokenTTL", o.AccessTokenTTL, minTokenTTL, maxTokenTTL)
	checkRange("IDTokenTTL", o.IDTokenTTL, minTokenTTL, maxTokenTTL)
	checkRange("RefreshTokenTTL", o.RefreshTokenTTL, minRefreshTokenTTL, maxRefreshTokenTTL)
	checkRange("RefreshTokenRotationGrace", o.RefreshTokenRotationGrace, 0, maxRotationGrace)
	if o.LoginSessionTTL < 0 {
		panic(fmt.Sprintf("cognitotest: negative LoginSessionTTL %v", o.LoginSessionTTL))
	}
	return o
}

// checkRange panics unless min <= d <= max: Cognito refuses such a setting.
func checkRange(name string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		panic(fmt.Sprintf("cognitotest: %s %v is outside Cognito's range %v to %v", name, d, lo, hi))
	}
}

// UserPool is a fake Cognito user pool served by two loopback HTTP servers.
// Create it with NewUserPool and stop it with Close.
type UserPool struct {
	// Issuer is the iss of the pool's tokens and the base of its discovery
	// document, e.g. http://127.0.0.1:PORT/us-east-1_FakePool01.
	Issuer string
	// DomainURL is the user-pool domain (hosted UI) that serves /oauth2/*,
	// /login and /logout, e.g. http://127.0.0.1:PORT2.
	DomainURL string
	// URL equals DomainURL.
	URL string
	// PoolID is the user pool id, e.g. us-east-1_FakePool01.
	PoolID string
	// Region is the pool's region, the prefix of PoolID.
	Region string

	opts       Options
	issuerSrv  *httptest.Server
	domainSrv  *httptest.Server
	transport  *http.Transport
	closing    chan struct{}
	closeOnce  sync.Once
	issuerBase string // scheme://host of the issuer host, as clients see it
	requests   map[Endpoint]*atomic.Int64

	mu        sync.Mutex
	users     map[string]User
	clients   map[string]Client
	rsScopes  map[string]bool
	keys      keyring
	codes     map[string]*authCode
	refresh   map[string]*refreshToken
	sessions  map[string]*session // by origin_jti
	autoLogin string
	preToken  func(username string, scopes []string) (suppress []string)
	rotation  bool
	grace     time.Duration            // refresh token rotation grace
	logins    map[string]*loginSession // managed-login sessions by cookie value
	faults    map[Endpoint]*Fault
	grants    map[string]int
	revoked   int
}

// NewUserPool starts a fake user pool: one loopback server for the issuer
// host and one for the domain host. It panics if opts.PoolID is malformed or
// does not start with opts.Region, or if a lifetime or the rotation grace is
// outside the range Cognito allows (see Options).
func NewUserPool(opts Options) *UserPool {
	opts = opts.withDefaults()
	p := &UserPool{
		PoolID:    opts.PoolID,
		Region:    opts.Region,
		opts:      opts,
		transport: http.DefaultTransport.(*http.Transport).Clone(),
		closing:   make(chan struct{}),
		requests:  make(map[Endpoint]*atomic.Int64),
		users:     make(map[string]User),
		clients:   make(map[string]Client),
		rsScopes:  make(map[string]bool),
		keys:      newKeyring(),
		codes:     make(map[string]*authCode),
		refresh:   make(map[string]*refreshToken),
		sessions:  make(map[string]*session),
		rotation:  opts.RefreshTokenRotation,
		grace:     opts.RefreshTokenRotationGrace,
		logins:    make(map[string]*loginSession),
		faults:    make(map[Endpoint]*Fault),
		grants:    make(map[string]int),
	}
	for _, e := range allEndpoints {
		p.requests[e] = new(atomic.Int64)
	}
	// Listen first, set every field, then serve: handlers read the fields.
	p.issuerSrv = httptest.NewUnstartedServer(http.HandlerFunc(p.serveIssuerHost))
	p.domainSrv = httptest.NewUnstartedServer(p.domainHandler())
	p.issuerBase = "http://" + p.issuerSrv.Listener.Addr().String()
	p.DomainURL = "http://" + p.domainSrv.Listener.Addr().String()
	if opts.AWSHostnames {
		p.issuerBase = "https://cognito-idp." + p.Region + ".amazonaws.com"
		p.DomainURL = "https://fakepool.auth." + p.Region + ".amazoncognito.com"
	}
	p.URL = p.DomainURL
	p.Issuer = p.issuerForm(opts.UpdatedIssuer)
	p.issuerSrv.Start()
	p.domainSrv.Start()
	return p
}

// issuerForm returns the ORIGINAL (false) or UPDATED (true) issuer.
func (p *UserPool) issuerForm(updated bool) string {
	switch {
	case !updated:
		return p.issuerBase + "/" + p.PoolID
	case p.opts.AWSHostnames:
		return "https://issuer-cognito-idp." + p.Region + ".amazonaws.com/" + p.PoolID
	default:
		return p.issuerBase + "/updated/" + p.PoolID
	}
}

// OtherIssuer returns the issuer in the other format (ORIGINAL if Issuer is
// UPDATED and vice versa). The issuer host serves discovery under both, so
// oidc.NewProvider works with either; the pool's tokens carry Issuer unless
// TokenOptions.Issuer says otherwise. With AWSHostnames both are the real
// Cognito forms; in loopback mode the UPDATED form is {issuer host}/updated/{pool}.
func (p *UserPool) OtherIssuer() string {
	return p.issuerForm(!p.opts.UpdatedIssuer)
}

// Close shuts the servers down, cutting short any injected delays.
func (p *UserPool) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		p.issuerSrv.Close()
		p.domainSrv.Close()
		p.transport.CloseIdleConnections()
	})
}

// HTTPClient returns a new client that reaches the pool. With AWSHostnames
// it sends requests for *.amazonaws.com to the issuer host and
// *.amazoncognito.com to the domain host (keeping the Host header, over
// plain HTTP); other requests go out unchanged.
func (p *UserPool) HTTPClient() *http.Client {
	return &http.Client{Transport: p.Transport()}
}

// Transport returns the round tripper HTTPClient uses, for building clients
// with a cookie jar or a CheckRedirect of their own.
func (p *UserPool) Transport() http.RoundTripper {
	if !p.opts.AWSHostnames {
		return p.transport
	}
	return &rewriteTransport{
		base:   p.transport,
		issuer: p.issuerSrv.Listener.Addr().String(),
		domain: p.domainSrv.Listener.Addr().String(),
	}
}

// rewriteTransport routes AWS hostnames to the loopback listeners.
type rewriteTransport struct {
	base           http.RoundTripper
	issuer, domain string
}

func (t *rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	var addr string
	switch {
	case strings.HasSuffix(host, ".amazonaws.com"):
		addr = t.issuer
	case strings.HasSuffix(host, ".amazoncognito.com"):
		addr = t.domain
	default:
		return t.base.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host = "http", addr
	if r2.Host == "" {
		r2.Host = r.URL.Host
	}
	return t.base.RoundTrip(r2)
}

// User is a user of the pool.
type User struct {
	// Username is the sign-in name and the username / cognito:username
	// claim. Default Sub.
	Username string
	// Password is checked by the login form.
	Password string
	// Sub is the user's immutable id. Default a random UUID.
	Sub string
	// Email and EmailVerified become the email and email_verified claims
	// of ID tokens when Email is set.
	Email         string
	EmailVerified bool
	// Groups become cognito:groups in both tokens when non-empty.
	Groups []string
	// Attributes such as "custom:tenant" or "name" go into ID tokens and
	// userInfo responses.
	Attributes map[string]string
}

func (u User) clone() User {
	u.Groups = slices.Clone(u.Groups)
	if u.Attributes != nil {
		attrs := make(map[string]string, len(u.Attributes))
		for k, v := range u.Attributes {
			attrs[k] = v
		}
		u.Attributes = attrs
	}
	return u
}

// AddUser adds u, or replaces the user with the same Username, and returns a
// copy of the stored user with its defaults filled in. Changing the copy
// does not change the pool.
func (p *UserPool) AddUser(u User) *User {
	u = u.clone()
	if u.Sub == "" {
		u.Sub = newUUID()
	}
	if u.Username == "" {
		u.Username = u.Sub
	}
	p.mu.Lock()
	p.users[u.Username] = u
	p.mu.Unlock()
	u = u.clone()
	return &u
}

func (p *UserPool) user(username string) (User, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[username]
	return u.clone(), ok
}

// Client is an app client of the pool.
type Client struct {
	// ID defaults to 26 random lowercase letters and digits, like Cognito's.
	// It is the client_id and the aud of ID tokens.
	ID string
	// Secret is the client secret; empty means a public client.
	Secret string
	// CallbackURLs are the allowed redirect_uri values (exact match). Any
	// URL is accepted, http on 127.0.0.1 included (Cognito requires https,
	// except http://localhost).
	CallbackURLs []string
	// LogoutURLs are the allowed logout_uri values of /logout, accepted as
	// CallbackURLs are.
	LogoutURLs []string
	// AllowedScopes default to openid, email and profile. Resource-server
	// scopes are written identifier+"/"+scope.
	AllowedScopes []string
	// ClientCredentials allows the client_credentials grant (secret
	// clients only).
	ClientCredentials bool
	// DisableRevocation turns EnableTokenRevocation off: /oauth2/revoke
	// answers 400 invalid_request.
	DisableRevocation bool
}

func (c Client) clone() Client {
	c.CallbackURLs = slices.Clone(c.CallbackURLs)
	c.LogoutURLs = slices.Clone(c.LogoutURLs)
	c.AllowedScopes = slices.Clone(c.AllowedScopes)
	return c
}

// AddClient adds c, or replaces the client with the same ID, and returns a
// copy of the stored client with its defaults filled in.
func (p *UserPool) AddClient(c Client) *Client {
	c = c.clone()
	if c.ID == "" {
		c.ID = strings.ToLower(rand.Text()) // 26 characters of [a-z2-7]
	}
	if len(c.AllowedScopes) == 0 {
		c.AllowedScopes = []string{"openid", "email", "profile"}
	}
	p.mu.Lock()
	p.clients[c.ID] = c
	p.mu.Unlock()
	c = c.clone()
	return &c
}

func (p *UserPool) client(id string) (Client, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[id]
	return c.clone(), ok
}

// AddResourceServer registers custom scopes; each appears in tokens as
// identifier+"/"+scope.
func (p *UserPool) AddResourceServer(identifier string, scopes ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range scopes {
		p.rsScopes[identifier+"/"+s] = true
	}
}

// SetAutoLogin makes /oauth2/authorize sign username in at once and redirect
// back with a code, instead of redirecting to the login form. It starts no
// managed-login session, and takes precedence over one. "" (or a username
// with no user) turns it off.
func (p *UserPool) SetAutoLogin(username string) {
	p.mu.Lock()
	p.autoLogin = username
	p.mu.Unlock()
}

// SetPreTokenGeneration plays a pre-token generation Lambda trigger (event
// version V2_0, Essentials or Plus tier) that suppresses scopes: f is
// called for every token response to a user, at a code's exchange and at
// each refresh, with the user's name and the session's scopes, and the
// scopes it returns are left out of that access token's scope claim, as
// the trigger's claimsAndScopeOverrideDetails.accessTokenGeneration.
// scopesToSuppress does. nil removes the trigger.
func (p *UserPool) SetPreTokenGeneration(f func(username string, scopes []string) (suppress []string)) {
	p.mu.Lock()
	p.preToken = f
	p.mu.Unlock()
}

// SetRefreshTokenRotation switches refresh token rotation on or off; see
// Options.RefreshTokenRotation.
func (p *UserPool) SetRefreshTokenRotation(on bool) {
	p.mu.Lock()
	p.rotation = on
	p.mu.Unlock()
}

// SetRefreshTokenRotationGrace sets how long a refresh token rotated out
// from now on still works; see Options.RefreshTokenRotationGrace. It
// panics if d is outside Cognito's range, 0 to 60 seconds.
func (p *UserPool) SetRefreshTokenRotationGrace(d time.Duration) {
	checkRange("RefreshTokenRotationGrace", d, 0, maxRotationGrace)
	p.mu.Lock()
	p.grace = d
	p.mu.Unlock()
}

// TokenGrants reports how many successful token responses the token
// endpoint gave for grant ("authorization_code", "refresh_token",
// "client_credentials").
func (p *UserPool) TokenGrants(grant string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grants[grant]
}

// RevokedRefreshTokens reports how many refresh tokens /oauth2/revoke has
// revoked.
func (p *UserPool) RevokedRefreshTokens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revoked
}

// IsRevoked reports whether refreshToken was issued by the pool and revoked.
func (p *UserPool) IsRevoked(refreshToken string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	rt, ok := p.refresh[refreshToken]
	return ok && rt.sess.revoked
}

func (p *UserPool) now() time.Time { return p.opts.Now() }

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
