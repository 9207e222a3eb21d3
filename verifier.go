package cognitomcp

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// VerifierConfig configures a Verifier. The zero value of every optional
// field is a safe default.
type VerifierConfig struct {
	// UserPoolID is the Cognito user pool, e.g. "eu-west-1_AbCdEf123". The
	// region is everything before the first "_". Required unless IssuerURL
	// is set.
	UserPoolID string

	// Region, when set, must equal the region in UserPoolID. Optional.
	Region string

	// IssuerURL overrides the issuer derived from the pool: an emulator, a
	// test pool (cognitotest) or a Cognito-compatible stand-in. Discovery
	// runs against it. Plain http is allowed only on loopback hosts unless
	// InsecureAllowHTTPIssuer is set.
	IssuerURL string

	// ClientIDs are the app clients whose tokens are accepted: the client_id
	// claim of access tokens, the aud claim of ID tokens. Required.
	ClientIDs []string

	// TokenUse is the kind of token accepted. Default AccessToken. An ID
	// token is never accepted as an access token, nor the reverse.
	TokenUse TokenUse

	// RequiredScopes must all be in an access token's scope claim (403
	// insufficient_scope otherwise). Optional: nil requires nothing. A blank
	// entry, or one holding white space (what splitting an empty setting
	// gives), is an error, and so is any with TokenUse IDToken (an ID token
	// has no scope claim).
	RequiredScopes []string

	// Audience, when set, must be in an access token's aud claim, which
	// Cognito sets to the resource the client asked for (resource binding,
	// RFC 8707: managed login, Essentials or Plus tier): set it to this
	// server's resource URL, and a token of the same pool and app client for
	// another resource server is refused (MCP: a server accepts only tokens
	// issued for it). Default empty: aud is not checked, as Cognito's access
	// tokens carry none without resource binding. Access tokens only: with
	// TokenUse IDToken it is an error (an ID token's aud is the app client,
	// which ClientIDs checks).
	Audience string

	// ClockSkew is the tolerance on exp and nbf. Default 0; at most 5m. An
	// iat in the future is accepted up to 5 minutes ahead whatever
	// ClockSkew is: iat is Cognito's clock rounded down to
	// the second, so a server whose clock lags Cognito's by a second would
	// otherwise refuse a token used as soon as it is issued, as
	// client_credentials clients do. go-oidc allows as much on nbf;
	// aws-jwt-verify does not check iat.
	ClockSkew time.Duration

	// HTTPClient fetches discovery and the JWKS. Default: a client with a
	// 10 s timeout.
	HTTPClient *http.Client

	// JWKSRefreshInterval is the least time between two JWKS fetches caused
	// by tokens with an unknown kid. Default 1 minute; negative is an error.
	JWKSRefreshInterval time.Duration

	// CacheSize bounds the verified-token cache, in tokens. Default 10,000;
	// negative disables the cache. An entry never outlives its token's exp.
	CacheSize int

	// CacheMaxBytes bounds the verified-token cache's memory, as estimated
	// per entry: the token's payload, its decoded claims and a fixed
	// overhead of about 500 bytes (a Cognito access token's entry comes to
	// about 2 KiB). Default 64 MiB; negative is an error.
	CacheMaxBytes int64

	// Now is the clock. Default time.Now.
	Now func() time.Time

	// InsecureAllowHTTPIssuer allows a plain-http IssuerURL on a
	// non-loopback host. Never set it in production.
	InsecureAllowHTTPIssuer bool
}

// TokenVerifier verifies a raw bearer token. *Verifier implements it, and so
// does the proxy's verifier of its own tokens.
//
// RequireToken answers a Verify error by what it wraps: an *Error as it
// says; ErrInvalidToken or any of the token sentinels (ErrTokenExpired,
// ErrWrongClient…), 401 invalid_token, which makes an MCP client sign in
// again; ErrInsufficientScope, 403; ErrUnavailable or ErrKeySetUnavailable,
// 503 with Retry-After; anything else, 500 server_error, which no client
// recovers from. A verifier of its own should wrap one of these. Verify
// returns claims or an error: nil claims without an error is a 500 too.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Claims, error)
}

// TokenVerifierFunc adapts a function to TokenVerifier.
type TokenVerifierFunc func(ctx context.Context, raw string) (*Claims, error)

// Verify calls f.
func (f TokenVerifierFunc) Verify(ctx context.Context, raw string) (*Claims, error) {
	return f(ctx, raw)
}

// Verifier verifies Cognito JWTs. It is safe for concurrent use; make one per
// pool and token kind, and reuse it.
type Verifier struct {
	issuers   []string
	clientIDs []string
	use       TokenUse
	audience  string // VerifierConfig.Audience; access tokens only
	scopes    []string
	skew      time.Duration
	now       func() time.Time
	keys      *keySet
	cache     *tokenCache
}

// maxTokenBytes bounds the size of a token the Verifier will parse.
const maxTokenBytes = 16 << 10

var poolIDPattern = regexp.MustCompile(`^[\w-]+_[0-9a-zA-Z]+$`)

// NewVerifier validates cfg, runs OIDC discovery (go-oidc) against the pool's
// issuer and loads its JWKS. It fails when the pool cannot be reached, so a
// misconfigured server does not start.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	v, _, err := newVerifierWithDiscovery(ctx, cfg)
	return v, err
}

// newVerifierWithDiscovery is NewVerifier that also returns the discovery
// document, for the proxy, which needs Cognito's endpoints too.
func newVerifierWithDiscovery(ctx context.Context, cfg VerifierConfig) (*Verifier, *discoveryDoc, error) {
	issuers, discovery, err := cfg.issuers()
	if err != nil {
		return nil, nil, err
	}
	if len(cfg.ClientIDs) == 0 || slices.Contains(cfg.ClientIDs, "") {
		return nil, nil, errors.New("cognitomcp: VerifierConfig.ClientIDs: at least one non-empty app client id is required")
	}
	use := cfg.TokenUse
	if use == "" {
		use = AccessToken
	}
	if use != AccessToken && use != IDToken {
		return nil, nil, fmt.Errorf("cognitomcp: VerifierConfig.TokenUse: %q is neither %q nor %q", use, AccessToken, IDToken)
	}
	if use == IDToken && cfg.Audience != "" {
		return nil, nil, errors.New("cognitomcp: VerifierConfig.Audience: set with TokenUse IDToken, whose aud is the app client (ClientIDs checks it)")
	}
	if use == IDToken && len(cfg.RequiredScopes) > 0 {
		return nil, nil, errors.New("cognitomcp: VerifierConfig.RequiredScopes: set with TokenUse IDToken, which has no scope claim")
	}
	if s, bad := badName(cfg.RequiredScopes); bad {
		return nil, nil, fmt.Errorf("cognitomcp: VerifierConfig.RequiredScopes: %q is not a name", s)
	}
	if cfg.ClockSkew < 0 || cfg.ClockSkew > 5*time.Minute {
		return nil, nil, fmt.Errorf("cognitomcp: VerifierConfig.ClockSkew: %v is outside [0, 5m]", cfg.ClockSkew)
	}
	if cfg.CacheMaxBytes < 0 {
		return nil, nil, fmt.Errorf("cognitomcp: VerifierConfig.CacheMaxBytes: %d is negative", cfg.CacheMaxBytes)
	}
	if cfg.JWKSRefreshInterval < 0 {
		return nil, nil, fmt.Errorf("cognitomcp: VerifierConfig.JWKSRefreshInterval: %v is negative", cfg.JWKSRefreshInterval)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	doc, err := discover(ctx, client, discovery)
	if err != nil {
		return nil, nil, err
	}
	interval := cfg.JWKSRefreshInterval
	if interval == 0 {
		interval = time.Minute
	}
	ks := newKeySet(doc.JWKSURI, client, now, interval)
	if err := ks.load(ctx); err != nil {
		return nil, nil, fmt.Errorf("cognitomcp: load JWKS: %w: %w", ErrKeySetUnavailable, err)
	}
	size := cfg.CacheSize
	if size == 0 {
		size = 10_000
	}
	maxBytes := cfg.CacheMaxBytes
	if maxBytes == 0 {
		maxBytes = defaultCacheBytes
	}
	return &Verifier{
		issuers:   issuers,
		clientIDs: slices.Clone(cfg.ClientIDs),
		use:       use,
		audience:  cfg.Audience,
		scopes:    slices.Clone(cfg.RequiredScopes),
		skew:      cfg.ClockSkew,
		now:       now,
		keys:      ks,
		cache:     newTokenCacheBytes(size, maxBytes),
	}, doc, nil
}

// withTokenUse returns a Verifier of the same pool and keys for another
// token kind, with a cache of its own.
func (v *Verifier) withTokenUse(use TokenUse, cacheSize int) *Verifier {
	w := *v
	w.use = use
	w.cache = newTokenCache(cacheSize)
	return &w
}

// issuers returns the accepted issuers and the one to run discovery on.
func (cfg VerifierConfig) issuers() (accepted []string, discovery string, err error) {
	var poolForms []string
	if cfg.UserPoolID != "" {
		region, err := RegionFromPoolID(cfg.UserPoolID)
		if err != nil {
			return nil, "", err
		}
		if cfg.Region != "" && cfg.Region != region {
			return nil, "", fmt.Errorf("cognitomcp: VerifierConfig.Region: %q does not match the pool id's region %q", cfg.Region, region)
		}
		poolForms = CognitoIssuers(cfg.UserPoolID)
	}
	switch {
	case cfg.IssuerURL == "" && poolForms == nil:
		return nil, "", errors.New("cognitomcp: VerifierConfig.UserPoolID or IssuerURL is required")
	case cfg.IssuerURL == "":
		return poolForms, poolForms[0], nil
	}
	if err := checkIssuerURL(cfg.IssuerURL, cfg.InsecureAllowHTTPIssuer); err != nil {
		return nil, "", fmt.Errorf("cognitomcp: VerifierConfig.IssuerURL: %w", err)
	}
	if slices.Contains(poolForms, cfg.IssuerURL) {
		return poolForms, cfg.IssuerURL, nil // a pool's own form: both forms stay accepted
	}
	return []string{cfg.IssuerURL}, cfg.IssuerURL, nil
}

// RegionFromPoolID returns the AWS region of a user pool id: everything
// before the first "_" ("us-gov-west-1_AbC" → "us-gov-west-1").
func RegionFromPoolID(poolID string) (string, error) {
	if len(poolID) > 55 || !poolIDPattern.MatchString(poolID) {
		return "", fmt.Errorf("cognitomcp: user pool id %q is not of the form {region}_{id}", poolID)
	}
	region, _, _ := strings.Cut(poolID, "_")
	return region, nil
}

// CognitoIssuers returns both issuer forms of a user pool: the original
// https://cognito-idp.{region}.amazonaws.com/{pool} first, then
// https://issuer-cognito-idp.{region}.amazonaws.com/{pool}. It returns nil
// for a malformed pool id.
func CognitoIssuers(poolID string) []string {
	region, err := RegionFromPoolID(poolID)
	if err != nil {
		return nil
	}
	return []string{
		"https://cognito-idp." + region + ".amazonaws.com/" + poolID,
		"https://issuer-cognito-idp." + region + ".amazonaws.com/" + poolID,
	}
}

// checkIssuerURL requires an absolute https URL, or http on loopback. Its
// errors quote raw without its userinfo.
func checkIssuerURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an absolute URL without query, fragment or userinfo", redactURL(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowHTTP || isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q uses plain http on a non-loopback host", redactURL(raw))
	}
	return fmt.Errorf("%q is neither https nor http", redactURL(raw))
}

// redactURL is raw fit to quote in an error or a log: when it holds an "@",
// everything between its scheme and the last "@" becomes "xxxxx", since
// that may hold a password, even in a URL that does not parse as one with
// userinfo (a password holding "/", "?" or "#" unescaped).
func redactURL(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return raw
	}
	scheme := ""
	if i := strings.Index(raw[:at], "://"); i > 0 && isScheme(raw[:i]) {
		scheme = raw[:i+len("://")]
	}
	return scheme + "xxxxx" + raw[at:]
}

// isScheme reports whether s is a URI scheme (RFC 3986 §3.1).
func isScheme(s string) bool {
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// isLoopbackHost reports whether host is localhost or a loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// discoveryDoc is the part of Cognito's OpenID configuration the package
// uses.
type discoveryDoc struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	UserInfoEndpoint      string `json:"userinfo_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// discover runs OIDC discovery with go-oidc, which also checks that the
// document names the issuer it was fetched for.
func discover(ctx context.Context, client *http.Client, issuer string) (*discoveryDoc, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: discovery at %s: %w: %w", issuer, ErrKeySetUnavailable, err)
	}
	var doc discoveryDoc
	if err := p.Claims(&doc); err != nil || doc.JWKSURI == "" {
		return nil, fmt.Errorf("cognitomcp: discovery at %s: no jwks_uri", issuer)
	}
	return &doc, nil
}

// Verify checks a Cognito JWT and returns its claims. It checks, in order:
// the compact form and size; the header (alg RS256 only, a kid); the RS256
// signature with the pool's key for that kid (an unknown kid refetches the
// JWKS at most once per JWKSRefreshInterval); iss (either issuer form);
// exp and nbf with ClockSkew, iat with 5 minutes; token_use;
// client_id (access) or aud (ID) among ClientIDs; with Audience set, aud of
// an access token holding it; RequiredScopes, whose refusal names the scopes
// to ask for as RequireScopes' does. Every failure is an *Error that wraps a
// sentinel: a 401 invalid_token, a 403 insufficient_scope, or a 503 when the
// signing keys cannot be fetched.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	now := v.now()
	if c, ok := v.cache.get(raw, now); ok {
		return c, nil
	}
	c, err := v.verify(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(raw, c, c.Expiry.Add(v.skew), now)
	return c, nil
}

// cached returns the claims of raw if Verify verified it before and they
// are still cached (tokenLookup).
func (v *Verifier) cached(raw string) (*Claims, bool) {
	return v.cache.get(raw, v.now())
}

func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Claims, error) {
	payload, err := v.verifySignature(ctx, raw)
	if err != nil {
		return nil, err
	}
	var wire cognitoClaims
	if err := json.Unmarshal(payload, &wire); err != nil {
		return nil, tokenError(fmt.Errorf("%w: payload: %w", ErrMalformedToken, err), "invalid token")
	}
	if !slices.Contains(v.issuers, wire.Issuer) {
		return nil, tokenError(fmt.Errorf("%w: %q", ErrWrongIssuer, wire.Issuer), "invalid token")
	}
	if err := checkTimes(&wire, now, v.skew); err != nil {
		return nil, err
	}
	client, err := v.checkUseAndClient(&wire)
	if err != nil {
		return nil, err
	}
	c := claimsFromWire(&wire, client, payload)
	if err := checkScopes(c.Scopes, v.scopes); err != nil {
		return nil, err
	}
	return c, nil
}

// jwtHeader is the part of a JOSE header the Verifier reads.
type jwtHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// verifySignature checks the compact RS256 JWS and returns its payload.
// Only the pool's own keys are used: jku, x5u, jwk and x5c are ignored.
func (v *Verifier) verifySignature(ctx context.Context, raw string) ([]byte, error) {
	h, payload, signed, sig, err := splitCognitoJWS(raw)
	if err != nil {
		return nil, tokenError(err, "invalid token")
	}
	if h.Alg != "RS256" {
		return nil, tokenError(fmt.Errorf("%w: %.40q", ErrUnsupportedAlg, h.Alg), "invalid token")
	}
	pub, err := v.keys.key(ctx, h.Kid)
	if err != nil {
		if errors.Is(err, ErrKeySetUnavailable) {
			return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
				Description: "the signing keys are temporarily unavailable", Err: err}
		}
		return nil, tokenError(err, "invalid token")
	}
	digest := sha256String(signed)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, tokenError(ErrInvalidSignature, "invalid token")
	}
	return payload, nil
}

// splitCognitoJWS parses a compact JWS: header, payload, signing input, signature.
func splitCognitoJWS(raw string) (h jwtHeader, payload []byte, signed string, sig []byte, err error) {
	if len(raw) > maxTokenBytes {
		return h, nil, "", nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformedToken, maxTokenBytes)
	}
	hdr, body, sigPart, ok := cutJWS(raw)
	if !ok {
		return h, nil, "", nil, fmt.Errorf("%w: not a compact JWS in base64url", ErrMalformedToken)
	}
	hb, err1 := b64Strict.DecodeString(hdr)
	payload, err2 := b64Strict.DecodeString(body)
	sig, err3 := b64Strict.DecodeString(sigPart)
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, nil, "", nil, fmt.Errorf("%w: base64: %w", ErrMalformedToken, err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, "", nil, fmt.Errorf("%w: header: %w", ErrMalformedToken, err)
	}
	if len(h.Crit) > 0 {
		return h, nil, "", nil, fmt.Errorf("%w: crit header not supported", ErrMalformedToken)
	}
	return h, payload, raw[:len(hdr)+1+len(body)], sig, nil
}

// issuedAtLeeway is the tolerance on an iat in the future, whatever
// ClockSkew (at most as much) is: iat is Cognito's clock rounded down to
// the second.
const issuedAtLeeway = 5 * time.Minute

// checkTimes checks exp (required) and nbf against now with skew, and iat
// with issuedAtLeeway.
func checkTimes(w *cognitoClaims, now time.Time, skew time.Duration) error {
	if w.Expiry == nil {
		return tokenError(fmt.Errorf("%w: no exp", ErrMalformedToken), "invalid token")
	}
	if now.After(unixTime(w.Expiry).Add(skew)) {
		return tokenError(ErrTokenExpired, "token expired")
	}
	if w.NotBefore != nil && unixTime(w.NotBefore).After(now.Add(skew)) {
		return tokenError(ErrTokenNotYetValid, "token not yet valid")
	}
	if w.IssuedAt != nil && unixTime(w.IssuedAt).After(now.Add(issuedAtLeeway)) {
		return tokenError(fmt.Errorf("%w: issued in the future", ErrTokenNotYetValid), "token not yet valid")
	}
	return nil
}

// checkUseAndClient checks token_use and the app client, as aws-jwt-verify
// does: client_id for access tokens, aud for ID tokens.
// It returns the accepted client id.
func (v *Verifier) checkUseAndClient(w *cognitoClaims) (string, error) {
	if w.TokenUse != v.use {
		return "", tokenError(fmt.Errorf("%w: got %q, want %q", ErrWrongTokenUse, w.TokenUse, v.use), "invalid token")
	}
	client := w.ClientID
	if v.use == IDToken {
		client = ""
		for _, a := range w.Audience {
			if slices.Contains(v.clientIDs, a) {
				client = a
			}
		}
	}
	if client == "" || !slices.Contains(v.clientIDs, client) {
		return "", tokenError(ErrWrongClient, "invalid token")
	}
	if v.use == AccessToken && v.audience != "" && !slices.Contains(w.Audience, v.audience) {
		return "", tokenError(fmt.Errorf("%w: %.80q", ErrWrongAudience, []string(w.Audience)), "invalid token")
	}
	return client, nil
}

func claimsFromWire(w *cognitoClaims, client string, payload []byte) *Claims {
	c := &Claims{
		Issuer:   w.Issuer,
		Subject:  w.Subject,
		Username: w.Username,
		ClientID: client,
		TokenUse: w.TokenUse,
		Groups:   w.Groups,
		Scopes:   strings.Fields(w.Scope),
		Email:    w.Email,
		Expiry:   unixTime(w.Expiry),
		IssuedAt: unixTime(w.IssuedAt),
		raw:      payload,
	}
	if w.TokenUse == IDToken {
		c.Username = w.CognitoUsername
	}
	return c
}

// missingScopes returns the entries of want that are not in have.
func missingScopes(have, want []string) []string {
	var missing []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
