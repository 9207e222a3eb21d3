package cognitomcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ConsentMode says when the proxy shows its consent page, the defence
// against a confused deputy: the proxy is one Cognito app client for every
// MCP client, so without it any client could ride a user's Cognito session.
type ConsentMode int

const (
	// ConsentAlways shows the consent page on every authorization. Default.
	ConsentAlways ConsentMode = iota
	// ConsentRemember skips the page for a client this browser approved
	// before for the same redirect URI and scopes (a signed cookie, honoured
	// only on navigations the user started, as Sec-Fetch-Site tells: typed
	// or opened by an application, "none", or from this origin,
	// "same-origin"; never one another site pushed).
	ConsentRemember
	// ConsentOff never shows it. Any registered client can then obtain a
	// token for a user who has a Cognito session, with no click: use it only
	// when every client is trusted.
	ConsentOff
)

// ProxyConfig configures a Proxy. Every optional field documents its default.
type ProxyConfig struct {
	// UserPoolID is the Cognito user pool, e.g. "eu-west-1_AbCdEf123"; the
	// region is everything before the first "_". Required unless IssuerURL
	// is set.
	UserPoolID string
	// Region, when set, must match UserPoolID's region.
	Region string
	// IssuerURL overrides the pool's issuer: an emulator or a test pool.
	IssuerURL string
	// DomainURL is the hosted UI domain, e.g.
	// "https://myapp.auth.eu-west-1.amazoncognito.com" or a custom domain.
	// Default: the endpoints from the pool's discovery document.
	DomainURL string
	// ClientID is the Cognito app client the proxy signs users in with; its
	// allowed callback URLs must contain Issuer()+CallbackPath: BaseURL in
	// its canonical form (see BaseURL) followed by CallbackPath. Required.
	ClientID string
	// ClientSecret is that app client's secret. Empty for a public client,
	// which identifies itself with client_id in the body, as Cognito wants.
	ClientSecret string
	// ClientAuthMethod is how the proxy authenticates to Cognito's token
	// endpoint: "client_secret_basic" (default) or "client_secret_post".
	// Without a ClientSecret it does not apply (an unknown value is still
	// refused).
	ClientAuthMethod string
	// Scopes are what MCP clients may ask for (others they ask for are
	// dropped), advertised in metadata and challenges. The proxy asks
	// Cognito for those an authorization was granted, with "openid", and
	// grants only those Cognito's access token holds. Custom resource-server
	// scopes ("mcp-api/tools") work too. A scope RequireScopes requires must
	// be listed, or no client can obtain it (logged once). Default
	// {"openid", "email", "profile"}.
	Scopes []string
	// RequiredScopes are the scopes every sign-in asks for: those the 401
	// challenge and the protected resource metadata name (MCP clients ask
	// for exactly those), and those granted to a client that asks for none
	// of Scopes. Each must be one of Scopes. Default: all of Scopes. List
	// fewer to keep the others for step-up: RequireScopes answers a token
	// without one 403 insufficient_scope naming it, and the client signs in
	// again asking for it.
	RequiredScopes []string
	// ForwardResource sends the MCP client's RFC 8707 resource to Cognito,
	// which binds aud of its access token (managed login, Essentials or Plus
	// tier only). Default false.
	ForwardResource bool

	// BaseURL is the public URL of this server, and the proxy's issuer:
	// "https://mcp.example.com" or "https://example.com/tools". https, or
	// http on loopback. Required. It is used in its canonical form, the one
	// clients compute (a URL parser's): scheme and host in lower case, no
	// default port, no trailing slash.
	BaseURL string
	// MCPPath is the MCP endpoint's path under BaseURL. Default "/mcp".
	// The protected resource is Issuer()+MCPPath (BaseURL in its canonical
	// form, then MCPPath as given), byte for byte.
	MCPPath string
	// CallbackPath is the Cognito callback under BaseURL. Default
	// "/auth/callback". Cognito's app client must allow Issuer()+CallbackPath.
	CallbackPath string
	// ServiceName is what the consent page calls this server, and the
	// resource_name of its protected resource metadata. Default: the host
	// of BaseURL.
	ServiceName string

	// AllowedRedirectURIs are patterns that redirect URIs of registered
	// clients may match besides the defaults (https URLs and http on
	// loopback): "https://claude.ai/api/mcp/auth_callback",
	// "cursor://anysphere.cursor-mcp/oauth/callback", "https://*.example.com/cb".
	// A "*" matches within one host label or path segment.
	AllowedRedirectURIs []string
	// UpstreamClientRedirectURIs lets MCP clients that skip registration
	// and present Cognito's own ClientID (claude.ai does) use exactly these
	// redirect URIs. Default: none, and such requests are refused.
	UpstreamClientRedirectURIs []string
	// DisableClientIDMetadataDocuments turns off https client ids (CIMD,
	// MCP 2025-11-25). Default false: on.
	DisableClientIDMetadataDocuments bool
	// InsecureAllowLoopbackMetadataDocuments lets CIMD fetch from loopback
	// and http URLs. For tests only.
	InsecureAllowLoopbackMetadataDocuments bool

	// Consent is when the consent page shows. Default ConsentAlways.
	Consent ConsentMode
	// Keys sign tokens, encrypt the store and sign cookies. Required (a
	// MasterSecret of 32 random bytes is enough).
	Keys KeyConfig
	// Store keeps all state. Default NewMemoryStore(), which is right for
	// one replica only; use NewRedisStore for several.
	Store Store
	// InsecureAllowNonAtomicStore accepts a Store whose Take is not atomic
	// (an AtomicTaker reporting false). Codes, transactions and CSRF tokens
	// may then be taken twice, even within one process; refreshes are
	// serialised within one process only.
	InsecureAllowNonAtomicStore bool

	// The five durations below: zero means the default, and NewProxy
	// refuses a value outside the range given.

	// AccessTokenTTL is the lifetime of the proxy's access tokens. Default
	// 1h; 1m to 24h.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of a sign-in (its refresh-token
	// family). Default 30 days, Cognito's default; keep it at most
	// Cognito's. 1h to 3,650 days.
	RefreshTokenTTL time.Duration
	// RefreshGracePeriod is how long a used refresh token, presented again,
	// gets the same answer (a retried or duplicated request) rather than
	// revoking the family. Default 30s; 1s to 60s.
	RefreshGracePeriod time.Duration
	// ClientTTL is how long a registered client lives unused, once a
	// sign-in through it has completed (until then, a day). Default 90
	// days; 1h to 3,650 days.
	ClientTTL time.Duration
	// RevocationCheckInterval is how long a replica trusts a verified access
	// token before it checks the store for revocation again: the bound on how
	// long a revocation takes to reach every replica. Default 10s; 1s to 5m.
	RevocationCheckInterval time.Duration

	// AllowedOrigins are the browser origins allowed to call the MCP
	// endpoint (DNS-rebinding defence: another Origin gets 403). Default:
	// BaseURL's origin. "*" allows any.
	AllowedOrigins []string
	// RateLimits bound requests per client IP. Zero fields take defaults.
	RateLimits RateLimits
	// ClientIP returns the address rate limits count by. Default: the host
	// of r.RemoteAddr. Behind reverse proxies, ForwardedClientIP reads the
	// address they report.
	ClientIP func(r *http.Request) string

	// HTTPClient talks to Cognito. Default: a client with a 10 s timeout.
	// Client metadata documents are fetched with a client of the proxy's
	// own, which takes only this one's root CAs: it pins each resolved
	// address against private networks, so no proxy or transport of yours
	// is used for them.
	HTTPClient *http.Client
	// Logger receives the proxy's logs; never a token or secret. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// LogValue makes a ProxyConfig safe to log with log/slog (slog.Any("cfg",
// cfg)): ClientSecret shows as "REDACTED" when set, Keys as
// KeyConfig.LogValue shows them (key IDs and counts, never a byte of a
// key), the URLs without userinfo, Store by its type, and HTTPClient,
// ClientIP, Logger and Now by whether they are set. Every other field is
// logged as it is.
func (c ProxyConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("UserPoolID", c.UserPoolID),
		slog.String("Region", c.Region),
		slog.String("IssuerURL", redactURL(c.IssuerURL)),
		slog.String("DomainURL", redactURL(c.DomainURL)),
		slog.String("ClientID", c.ClientID),
		slog.String("ClientSecret", redactedIfSet(c.ClientSecret != "")),
		slog.String("ClientAuthMethod", c.ClientAuthMethod),
		slog.Any("Scopes", c.Scopes),
		slog.Any("RequiredScopes", c.RequiredScopes),
		slog.Bool("ForwardResource", c.ForwardResource),
		slog.String("BaseURL", redactURL(c.BaseURL)),
		slog.String("MCPPath", c.MCPPath),
		slog.String("CallbackPath", c.CallbackPath),
		slog.String("ServiceName", c.ServiceName),
		slog.Any("AllowedRedirectURIs", c.AllowedRedirectURIs),
		slog.Any("UpstreamClientRedirectURIs", c.UpstreamClientRedirectURIs),
		slog.Bool("DisableClientIDMetadataDocuments", c.DisableClientIDMetadataDocuments),
		slog.Bool("InsecureAllowLoopbackMetadataDocuments", c.InsecureAllowLoopbackMetadataDocuments),
		slog.Int("Consent", int(c.Consent)),
		slog.Attr{Key: "Keys", Value: c.Keys.LogValue()},
		slog.String("Store", fmt.Sprintf("%T", c.Store)),
		slog.Bool("InsecureAllowNonAtomicStore", c.InsecureAllowNonAtomicStore),
		slog.Duration("AccessTokenTTL", c.AccessTokenTTL),
		slog.Duration("RefreshTokenTTL", c.RefreshTokenTTL),
		slog.Duration("RefreshGracePeriod", c.RefreshGracePeriod),
		slog.Duration("ClientTTL", c.ClientTTL),
		slog.Duration("RevocationCheckInterval", c.RevocationCheckInterval),
		slog.Any("AllowedOrigins", c.AllowedOrigins),
		slog.Any("RateLimits", c.RateLimits),
		slog.Bool("ClientIP", c.ClientIP != nil),
		slog.Bool("HTTPClient", c.HTTPClient != nil),
		slog.Bool("Logger", c.Logger != nil),
		slog.Bool("Now", c.Now != nil),
	)
}

// RateLimits are per-client-IP limits, in requests per minute; a client may
// burst up to the per-minute number at once. Zero takes the default; a
// negative number disables that limit. IPv6 clients count per /64.
type RateLimits struct {
	Register  int // default 10 per minute
	Authorize int // default 60 per minute, consent-page renderings included
	Token     int // default 120 per minute
	// MaxTrackedIPs bounds the limiter's memory. Default 100,000.
	MaxTrackedIPs int
}

// Proxy is an OAuth 2.1 authorization server for MCP clients in front of a
// Cognito user pool. It is an http.Handler for all its routes; see Handler
// for the protected MCP endpoint as well.
type Proxy struct {
	issuer       string // BaseURL, no trailing slash
	basePath     string // BaseURL's path, no trailing slash
	resource     string // BaseURL+MCPPath
	mcpPath      string // path of the MCP endpoint as requests see it
	prmURL       string
	callbackURL  string
	scopes       []string // the scopes clients may obtain
	required     []string // those every sign-in asks for: RequiredScopes
	consent      ConsentMode
	serviceName  string
	secureCookie bool // BaseURL is https: __Host- cookies with Secure

	upstream         oauth2.Config
	upstreamRevoke   string
	upstreamIssuer   string
	forwardResource  bool
	verifier         *Verifier // Cognito access tokens
	idVerifier       *Verifier // Cognito ID tokens
	upstreamClientID string
	upstreamSecret   string
	upstreamPost     bool
	upstreamRedirect []string

	keys       *keyRing
	store      Store
	localLocks [64]chan struct{} // one-slot semaphores: withLock without a Locker

	accessTTL, refreshTTL, grace, clientTTL, revocationCheck time.Duration
	origins                                                  originGuard
	redirectPatterns                                         []redirectPattern
	cimd                                                     *cimdFetcher
	limits                                                   limiters
	clientIP                                                 func(*http.Request) string

	tokens      *tokenCache   // verified proxy access tokens
	revokedHere revokedGrants // grants this replica revoked lately
	rotations   rotations     // Cognito refresh tokens this replica could not store
	limitedLog  thinnedLog    // the log lines of rate-limited requests

	revokedTokensHere revokedGrants // access tokens (by jti) this replica revoked, until they expire
	mw                *middleware

	routes     map[string]http.Handler
	httpClient *http.Client
	logger     *slog.Logger
	now        func() time.Time
}

// NewProxy validates cfg, discovers the pool's endpoints and keys, and
// returns a ready Proxy. Every error names the field at fault.
func NewProxy(ctx context.Context, cfg ProxyConfig) (*Proxy, error) {
	p := &Proxy{logger: cfg.Logger, now: cfg.Now, httpClient: cfg.HTTPClient, consent: cfg.Consent}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	for i := range p.localLocks {
		p.localLocks[i] = make(chan struct{}, 1)
	}
	steps := []func(context.Context, *ProxyConfig) error{
		p.configureURLs, p.configureLifetimes, p.configureStore, p.configureKeys,
		p.configureUpstream, p.configureClients,
	}
	for _, step := range steps {
		if err := step(ctx, &cfg); err != nil {
			return nil, err
		}
	}
	p.tokens = newTokenCache(10_000)
	p.mw = &middleware{verifier: proxyTokens{p}, metadataURL: p.prmURL,
		scopeParam: strings.Join(p.required, " "), errorHandler: DefaultErrorHandler, logger: cfg.Logger, grantable: p.scopes}
	routes, err := p.buildRoutes()
	if err != nil {
		return nil, err
	}
	p.routes = routes
	// What the operator must register at Cognito, and where state lives.
	p.logger.Info("cognitomcp: proxy ready", "issuer", p.issuer, "mcp_resource", p.resource,
		"cognito_callback_url", p.callbackURL, "store", fmt.Sprintf("%T", p.store))
	if _, inMemory := p.store.(*MemoryStore); inMemory {
		p.logger.Info("cognitomcp: the store is in memory: for one replica only (use NewRedisStore for several)")
	}
	return p, nil
}

func (p *Proxy) configureURLs(_ context.Context, cfg *ProxyConfig) error {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Host == "" || base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return fmt.Errorf("cognitomcp: ProxyConfig.BaseURL: %q is not an absolute URL without userinfo, query or fragment", redactURL(cfg.BaseURL))
	}
	switch {
	case base.Scheme == "https":
		p.secureCookie = true
	case base.Scheme == "http" && isLoopbackHost(base.Hostname()):
	default:
		return fmt.Errorf("cognitomcp: ProxyConfig.BaseURL: %q must be https (http only on loopback)", redactURL(cfg.BaseURL))
	}
	// The canonical form: clients send resource=new URL(prm.resource).href,
	// which lowercases the host and drops a default port.
	host := canonicalHost(base.Scheme, base.Host)
	p.basePath = strings.TrimSuffix(base.EscapedPath(), "/")
	p.issuer = base.Scheme + "://" + host + p.basePath
	mcpPath := orDefault(cfg.MCPPath, "/mcp")
	callback := orDefault(cfg.CallbackPath, "/auth/callback")
	for field, v := range map[string]string{"MCPPath": mcpPath, "CallbackPath": callback} {
		// "//host/…" would be read as a URL of another host (the 308 of
		// the MCP endpoint with a trailing slash would lead there).
		if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.ContainsAny(v, "?#\\") || strings.Contains(v, "..") {
			return fmt.Errorf("cognitomcp: ProxyConfig.%s: %q must be an absolute path without query, fragment, backslash or dot segments, not starting with //", field, v)
		}
	}
	p.resource = p.issuer + mcpPath
	p.mcpPath = p.basePath + mcpPath
	p.prmURL = base.Scheme + "://" + host + "/.well-known/oauth-protected-resource" + p.mcpPath
	p.callbackURL = p.issuer + callback
	p.serviceName = orDefault(cfg.ServiceName, host)
	p.scopes = cfg.Scopes
	if len(p.scopes) == 0 {
		p.scopes = []string{"openid", "email", "profile"}
	}
	for _, s := range p.scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return fmt.Errorf("cognitomcp: ProxyConfig.Scopes: %q is not a valid scope", s)
		}
	}
	p.required = slices.Clone(p.scopes)
	if len(cfg.RequiredScopes) > 0 {
		if p.required = distinctScopes(cfg.RequiredScopes); len(p.required) == 0 {
			return errors.New("cognitomcp: ProxyConfig.RequiredScopes names no scope but offline_access, which the proxy drops")
		}
	}
	for _, s := range p.required {
		if !slices.Contains(p.scopes, s) {
			return fmt.Errorf("cognitomcp: ProxyConfig.RequiredScopes: %q is not one of Scopes", s)
		}
	}
	origins := cfg.AllowedOrigins
	if len(origins) == 0 {
		origins = []string{base.Scheme + "://" + host}
	}
	for _, o := range origins {
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || strings.Trim(u.Path, "/") != "") {
			return fmt.Errorf("cognitomcp: ProxyConfig.AllowedOrigins: %q is not an origin (scheme://host[:port]) nor \"*\"", o)
		}
	}
	p.origins = originGuard{origins: canonicalOrigins(origins), logger: p.logger}
	if cfg.Consent < ConsentAlways || cfg.Consent > ConsentOff {
		return fmt.Errorf("cognitomcp: ProxyConfig.Consent: unknown mode %d", cfg.Consent)
	}
	return nil
}

// canonicalHost is host (with its port) in lower case, without the port
// that is scheme's default.
func canonicalHost(scheme, host string) string {
	host = strings.ToLower(host)
	return strings.TrimSuffix(host, map[string]string{"https": ":443", "http": ":80"}[scheme])
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (p *Proxy) configureLifetimes(_ context.Context, cfg *ProxyConfig) error {
	set := func(dst *time.Duration, v, def, lo, hi time.Duration, field string) error {
		if v == 0 {
			v = def
		}
		if v < lo || v > hi {
			return fmt.Errorf("cognitomcp: ProxyConfig.%s: %v is outside [%v, %v]", field, v, lo, hi)
		}
		*dst = v
		return nil
	}
	return errors.Join(
		set(&p.accessTTL, cfg.AccessTokenTTL, time.Hour, time.Minute, 24*time.Hour, "AccessTokenTTL"),
		set(&p.refreshTTL, cfg.RefreshTokenTTL, 30*24*time.Hour, time.Hour, 10*365*24*time.Hour, "RefreshTokenTTL"),
		set(&p.grace, cfg.RefreshGracePeriod, 30*time.Second, time.Second, time.Minute, "RefreshGracePeriod"),
		set(&p.clientTTL, cfg.ClientTTL, 90*24*time.Hour, time.Hour, 10*365*24*time.Hour, "ClientTTL"),
		set(&p.revocationCheck, cfg.RevocationCheckInterval, 10*time.Second, time.Second, 5*time.Minute, "RevocationCheckInterval"),
	)
}

func (p *Proxy) configureStore(_ context.Context, cfg *ProxyConfig) error {
	p.store = cfg.Store
	if p.store == nil {
		p.store = NewMemoryStore()
	}
	at, ok := p.store.(AtomicTaker)
	switch {
	case !ok:
		// A wrapper (for metrics, tracing) that embeds Store hides
		// AtomicTake: refusing it would refuse a user's own atomic store.
		p.logger.Warn("cognitomcp: ProxyConfig.Store is not an AtomicTaker, so the proxy cannot tell whether its Take is atomic; if it is not, codes, CSRF tokens and refresh tokens could be redeemed twice; a store whose Take is atomic should say so with AtomicTake, and a wrapper around a store must pass AtomicTake through")
	case !at.AtomicTake() && !cfg.InsecureAllowNonAtomicStore:
		return errors.New("cognitomcp: ProxyConfig.Store: its Take is not atomic, so codes and refresh tokens could be redeemed twice across replicas; use NewRedisStore or NewMemoryStore, or set InsecureAllowNonAtomicStore")
	}
	if _, ok := p.store.(Locker); !ok {
		// A wrapper (for metrics, tracing) that embeds Store hides Lock.
		p.logger.Warn("cognitomcp: ProxyConfig.Store is not a Locker: a sign-in's refreshes and revocations are serialised within this process only, so with several replicas a refresh can store again a sign-in another replica revoked (with one replica, ignore this); a wrapper around a store must pass Lock through")
	}
	return nil
}

func (p *Proxy) configureKeys(_ context.Context, cfg *ProxyConfig) error {
	ring, err := newKeyRing(cfg.Keys)
	if err != nil {
		return fmt.Errorf("cognitomcp: ProxyConfig.Keys: %w", err)
	}
	p.keys = ring
	return nil
}

// configureUpstream discovers the pool and sets up the Cognito app client.
func (p *Proxy) configureUpstream(ctx context.Context, cfg *ProxyConfig) error {
	if cfg.ClientID == "" {
		return errors.New("cognitomcp: ProxyConfig.ClientID: the Cognito app client id is required")
	}
	// A value pasted with a newline or a space would be refused by
	// Cognito only in a user's browser, or at the code exchange.
	for field, v := range map[string]string{"ClientID": cfg.ClientID, "ClientSecret": cfg.ClientSecret} {
		if strings.TrimSpace(v) != v || strings.ContainsAny(v, " \t\r\n") {
			return fmt.Errorf("cognitomcp: ProxyConfig.%s: it holds white space (pasted with a newline?)", field)
		}
	}
	switch cfg.ClientAuthMethod {
	case "", "client_secret_basic":
	case "client_secret_post":
		p.upstreamPost = true
	default:
		return fmt.Errorf("cognitomcp: ProxyConfig.ClientAuthMethod: %q is neither client_secret_basic nor client_secret_post", cfg.ClientAuthMethod)
	}
	// A public client has no Basic credentials to send: Cognito's token and
	// revocation endpoints take its client_id in the body (a Basic header
	// with an empty secret is reported refused with invalid_client).
	p.upstreamPost = p.upstreamPost || cfg.ClientSecret == ""
	v, doc, err := newVerifierWithDiscovery(ctx, VerifierConfig{
		UserPoolID: cfg.UserPoolID, Region: cfg.Region, IssuerURL: cfg.IssuerURL,
		ClientIDs: []string{cfg.ClientID}, HTTPClient: p.httpClient, Now: p.now, ClockSkew: 30 * time.Second,
		CacheSize: -1, // each Cognito token is verified once, at the callback or a refresh
	})
	if err != nil {
		return err
	}
	p.verifier, p.idVerifier = v, v.withTokenUse(IDToken, -1)
	p.upstreamIssuer = doc.Issuer
	endpoints := oauth2.Endpoint{AuthURL: doc.AuthorizationEndpoint, TokenURL: doc.TokenEndpoint}
	p.upstreamRevoke = doc.RevocationEndpoint
	if cfg.DomainURL != "" {
		if err := checkIssuerURL(cfg.DomainURL, false); err != nil {
			return fmt.Errorf("cognitomcp: ProxyConfig.DomainURL: %w", err)
		}
		if u, _ := url.Parse(cfg.DomainURL); strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("cognitomcp: ProxyConfig.DomainURL: %q must be the domain alone, e.g. https://myapp.auth.eu-west-1.amazoncognito.com", redactURL(cfg.DomainURL))
		}
		d := strings.TrimSuffix(cfg.DomainURL, "/")
		endpoints = oauth2.Endpoint{AuthURL: d + "/oauth2/authorize", TokenURL: d + "/oauth2/token"}
		p.upstreamRevoke = d + "/oauth2/revoke"
	}
	if endpoints.AuthURL == "" || endpoints.TokenURL == "" {
		return errors.New("cognitomcp: ProxyConfig.DomainURL: the pool's discovery names no authorization or token endpoint; set DomainURL")
	}
	endpoints.AuthStyle = oauth2.AuthStyleInHeader
	if p.upstreamPost {
		endpoints.AuthStyle = oauth2.AuthStyleInParams
	}
	upstreamScopes := slices.Clone(p.scopes)
	if !slices.Contains(upstreamScopes, "openid") {
		upstreamScopes = append([]string{"openid"}, upstreamScopes...)
	}
	p.upstream = oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: endpoints,
		RedirectURL: p.callbackURL, Scopes: upstreamScopes}
	p.upstreamClientID, p.upstreamSecret = cfg.ClientID, cfg.ClientSecret
	p.forwardResource = cfg.ForwardResource
	return nil
}

// configureClients sets up registration: redirect patterns, CIMD, rate limits.
func (p *Proxy) configureClients(_ context.Context, cfg *ProxyConfig) error {
	patterns, err := compileRedirectPatterns(cfg.AllowedRedirectURIs)
	if err != nil {
		return fmt.Errorf("cognitomcp: ProxyConfig.AllowedRedirectURIs: %w", err)
	}
	p.redirectPatterns = patterns
	for _, u := range cfg.UpstreamClientRedirectURIs {
		if err := validateRedirectURI(u, patterns); err != nil {
			return fmt.Errorf("cognitomcp: ProxyConfig.UpstreamClientRedirectURIs: %w", err)
		}
	}
	p.upstreamRedirect = cfg.UpstreamClientRedirectURIs
	if !cfg.DisableClientIDMetadataDocuments {
		p.cimd = newCIMDFetcher(p.httpClient, cfg.InsecureAllowLoopbackMetadataDocuments, p.now)
		p.cimd.logger = p.logger
	}
	p.limits = newLimiters(cfg.RateLimits, p.now)
	p.clientIP = cfg.ClientIP
	if p.clientIP == nil {
		p.clientIP = remoteHost
	}
	return nil
}

// Issuer returns the proxy's issuer identifier: BaseURL in its canonical
// form (lower-case scheme and host, no default port, no trailing slash).
func (p *Proxy) Issuer() string { return p.issuer }

// Resource returns the protected resource: Issuer()+MCPPath.
func (p *Proxy) Resource() string { return p.resource }

// ResourceMetadataURL returns the URL of the protected resource metadata.
func (p *Proxy) ResourceMetadataURL() string { return p.prmURL }

// buildRoutes maps every path the proxy answers to its handler.
func (p *Proxy) buildRoutes() (map[string]http.Handler, error) {
	prm, err := ResourceMetadataHandler(ResourceMetadata{
		Resource: p.resource, AuthorizationServers: []string{p.issuer}, Scopes: p.required, ResourceName: p.serviceName,
	})
	if err != nil {
		return nil, err
	}
	asm := p.corsGET(http.HandlerFunc(p.handleAuthServerMetadata))
	routes := map[string]http.Handler{
		"/.well-known/oauth-protected-resource" + p.mcpPath:    prm,
		"/.well-known/oauth-authorization-server" + p.basePath: asm,
		"/.well-known/openid-configuration" + p.basePath:       asm,
		p.basePath + "/.well-known/openid-configuration":       asm,
		p.basePath + "/.well-known/oauth-authorization-server": asm,
		p.basePath + "/jwks":      p.corsGET(http.HandlerFunc(p.handleJWKS)),
		p.basePath + "/register":  p.corsPOST(http.HandlerFunc(p.handleRegister)),
		p.basePath + "/authorize": http.HandlerFunc(p.handleAuthorize),
		p.basePath + "/consent":   http.HandlerFunc(p.handleConsent),
		p.basePath + "/token":     p.corsPOST(http.HandlerFunc(p.handleToken)),
		p.basePath + "/revoke":    p.corsPOST(http.HandlerFunc(p.handleRevoke)),
	}
	// The callback and the MCP endpoint must be paths of their own: one
	// that is another route's would never be reached.
	callback := strings.TrimPrefix(p.callbackURL, originOf(p.callbackURL))
	for field, path := range map[string]string{"CallbackPath": callback, "MCPPath": p.mcpPath} {
		if _, taken := routes[path]; taken {
			return nil, fmt.Errorf("cognitomcp: ProxyConfig.%s: %q is a path the proxy serves itself", field, path)
		}
	}
	if callback == p.mcpPath {
		return nil, errors.New("cognitomcp: ProxyConfig.CallbackPath: it equals MCPPath")
	}
	routes[callback] = http.HandlerFunc(p.handleCallback)
	// One MCP endpoint per host: the root PRM describes it too (MCP
	// 2025-11-25), and with BaseURL's path the root metadata documents
	// describe this authorization server (some clients ask the root
	// whatever the issuer's path).
	for path, h := range map[string]http.Handler{
		"/.well-known/oauth-protected-resource":   prm,
		"/.well-known/oauth-authorization-server": asm,
		"/.well-known/openid-configuration":       asm,
	} {
		if _, taken := routes[path]; !taken {
			routes[path] = h
		}
	}
	return routes, nil
}

// wellKnownNotFound answers a metadata document the proxy does not have:
// 404 in JSON, with CORS (a preflight is answered), so a browser-based
// client's discovery reads it and falls through to the next URL.
var wellKnownNotFound = cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	writeOAuthError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such metadata document"})
}), http.MethodGet, "MCP-Protocol-Version")

func originOf(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return parsed.Scheme + "://" + parsed.Host
}

// ServeHTTP serves the proxy's routes: the metadata documents, /register,
// /authorize, /consent, the Cognito callback, /token, /revoke and /jwks,
// under BaseURL's path, and the well-known documents at the host root.
// Other paths get 404 (JSON under /.well-known/, never a 5xx, so MCP
// clients' discovery falls through).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if headersTooLarge(w, r) {
		return
	}
	if h, ok := p.routes[r.URL.Path]; ok {
		h.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/.well-known/") {
		wellKnownNotFound.ServeHTTP(w, r)
		return
	}
	http.NotFound(w, r)
}

// Handler returns a handler serving the proxy's routes and, at MCPPath, mcp
// protected by RequireToken: Origin checked first (403 for a foreign one),
// then the token. MCPPath with a trailing slash is redirected to MCPPath
// (308). Mount it at the root of the host.
func (p *Proxy) Handler(mcp http.Handler) http.Handler {
	return &mounted{p: p, guard: &guarded{m: p.mw, next: mcp}}
}

// mounted is Proxy.Handler: the MCP endpoint's checks in one method and
// RequireToken's, rather than a chain of closures, so that a request in
// progress holds two frames of the proxy's on its goroutine's stack, not
// six (every GC cycle scans the stacks of the requests in progress).
type mounted struct {
	p     *Proxy
	guard *guarded
}

func (h *mounted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.p.mcpPath {
		if r.URL.Path == h.p.mcpPath+"/" && h.p.mcpPath != "/" {
			// The endpoint typed with a trailing slash: 308 keeps the
			// method and body, where a 404 would tell the client nothing.
			target := h.p.mcpPath
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusPermanentRedirect)
			return
		}
		h.p.ServeHTTP(w, r)
		return
	}
	if headersTooLarge(w, r) || !h.p.origins.allow(w, r) {
		return
	}
	h.guard.ServeHTTP(w, r)
}

// maxHeaderBytes bounds the request URI and headers of every request the
// proxy serves, the MCP endpoint's included: its tokens, cookies and the MCP
// headers take a few KiB, while net/http lets 1 MiB through by default.
const maxHeaderBytes = 32 << 10

// headersTooLarge answers 431 and reports true when r's URI and headers
// hold more than maxHeaderBytes.
func headersTooLarge(w http.ResponseWriter, r *http.Request) bool {
	n := len(r.URL.Path) + len(r.URL.RawQuery)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF
		}
	}
	if n <= maxHeaderBytes {
		return false
	}
	writeOAuthError(w, &Error{Status: http.StatusRequestHeaderFieldsTooLarge, Code: CodeInvalidRequest, Description: "the request headers are too large"})
	return true
}

// RequireToken returns middleware that admits requests bearing a valid
// access token of this proxy for this resource, and puts the Claims (the
// Cognito user and the MCP client) in the context. It refuses as the
// package-level RequireToken does, with this server's resource_metadata.
func (p *Proxy) RequireToken() func(http.Handler) http.Handler {
	return p.mw.wrap
}

// CheckOrigin returns middleware that answers 403 to a request whose Origin
// header is present and not allowed (MCP transports: DNS-rebinding defence),
// before authentication, and adds the CORS headers browser-based MCP clients
// need to allowed origins (ProxyConfig.AllowedOrigins). Put it outside
// RequireToken, as Handler does: r.Use(p.CheckOrigin(), p.RequireToken()).
func (p *Proxy) CheckOrigin() func(http.Handler) http.Handler {
	return p.origins.wrap
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// corsGET allows cross-origin GETs of public documents from any origin (MCP
// clients in browsers send MCP-Protocol-Version), and refuses other methods.
func (p *Proxy) corsGET(next http.Handler) http.Handler {
	return cors(next, http.MethodGet, "MCP-Protocol-Version")
}

// corsPOST is corsGET for the JSON and form endpoints.
func (p *Proxy) corsPOST(next http.Handler) http.Handler {
	return cors(next, http.MethodPost, "Authorization, Content-Type, MCP-Protocol-Version")
}

func cors(next http.Handler, method, headers string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", method+", OPTIONS")
			h.Set("Access-Control-Allow-Headers", headers)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			h.Set("Allow", method+", OPTIONS")
			writeOAuthError(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeInvalidRequest, Description: "method not allowed"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleAuthServerMetadata serves RFC 8414 metadata (also as the OpenID
// configuration alias MCP 2025-11-25 clients probe).
func (p *Proxy) handleAuthServerMetadata(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{
		"issuer":                                         p.issuer,
		"authorization_endpoint":                         p.issuer + "/authorize",
		"token_endpoint":                                 p.issuer + "/token",
		"registration_endpoint":                          p.issuer + "/register",
		"revocation_endpoint":                            p.issuer + "/revoke",
		"jwks_uri":                                       p.issuer + "/jwks",
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"revocation_endpoint_auth_methods_supported":     []string{"none"},
		"scopes_supported":                               p.scopes,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          p.cimd != nil,
	}
	writeJSON(w, http.StatusOK, doc)
}

// handleJWKS publishes the public keys of ES256 signing keys (empty for HS256).
func (p *Proxy) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(p.keys.signer.PublicJWKS())
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeOAuthError writes an RFC 6749 §5.2 error body. Only the fixed
// description reaches the client; the cause stays in logs.
func writeOAuthError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Cache-Control", "no-store")
	if (e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5")
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	writeJSON(w, e.Status, body)
}

// oauthError builds an *Error for an OAuth endpoint.
func oauthError(status int, code, description string, cause error) *Error {
	return &Error{Status: status, Code: code, Description: description, Err: cause}
}

// logRefusal logs why an OAuth endpoint refused a request: the code, the
// description and the cause, which never hold a token.
func (p *Proxy) logRefusal(r *http.Request, e *Error, attrs ...any) {
	level := slog.LevelInfo
	switch {
	case e.Status >= 500 && errors.Is(e.Err, errInvalidClientMetadata):
		level = slog.LevelWarn // a client's document host down: anyone can name one
	case e.Status >= 500:
		level = slog.LevelError
	}
	args := append([]any{"endpoint", r.URL.Path, "status", e.Status, "error", e.Code}, attrs...)
	if e.Err != nil {
		args = append(args, "reason", e.Err.Error())
	}
	if e.Status == http.StatusTooManyRequests {
		// A flood is refused by the thousand: one line a minute says so.
		n, ok := p.limitedLog.take(p.now())
		if !ok {
			return
		}
		args = append(args, "rate_limited_since_last_line", n)
	}
	p.logger.Log(r.Context(), level, "cognitomcp: request refused", args...)
}

// thinnedLog lets one log line through a minute, and counts the ones it
// held back.
type thinnedLog struct {
	mu   sync.Mutex
	next time.Time
	held int64
}

// take reports whether a line may be logged now and, if so, how many were
// held back before it (this one included).
func (l *thinnedLog) take(now time.Time) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held++
	if now.Before(l.next) {
		return 0, false
	}
	n := l.held
	l.held, l.next = 0, now.Add(time.Minute)
	return n, true
}

// maxFormBytes bounds request bodies of the form and JSON endpoints.
const maxFormBytes = 64 << 10

// bodyReadTimeout bounds how long the body of a request to the proxy's
// endpoints may take to arrive: a client that sends the headers and then
// trickles (or holds) the body would otherwise keep its connection and
// goroutine for as long as it likes, whatever http.Server's
// ReadHeaderTimeout says. A variable for tests.
var bodyReadTimeout = 10 * time.Second

// readBody reads r's body, at most maxFormBytes, within bodyReadTimeout.
// The deadline is for the body only: it is lifted once the whole body is
// in. When the body failed to arrive it stays, so that the server gives the
// connection up after the answer instead of waiting for the rest (with the
// deadline lifted, net/http would wait forever to discard it).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(bodyReadTimeout)) == nil // not on every ResponseWriter
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err == nil && deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// parseForm reads an application/x-www-form-urlencoded POST body (never the
// query) with a size limit, and refuses repeated parameters (RFC 6749 §3.1).
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, *Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return nil, oauthError(http.StatusMethodNotAllowed, CodeInvalidRequest, "method not allowed", nil)
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "the body must be application/x-www-form-urlencoded", nil)
	}
	body, err := readBody(w, r)
	if err != nil {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "malformed or oversized form body", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "malformed or oversized form body", err)
	}
	if err := singleValued(form); err != nil {
		return nil, err
	}
	return form, nil
}

// singleValued refuses a parameter sent more than once.
func singleValued(v url.Values) *Error {
	for k, vs := range v {
		if len(vs) > 1 {
			// The name goes to the log only: a page of the proxy's shows no
			// text a link's author chose.
			return oauthError(http.StatusBadRequest, CodeInvalidRequest, "a parameter is repeated", fmt.Errorf("parameter %.40q repeated", k))
		}
	}
	return nil
}

// ForwardedClientIP returns a ProxyConfig.ClientIP for a server behind
// hops trusted reverse proxies, each of which appends the address it
// received the request from to header (X-Forwarded-For; hops is 1 behind an
// AWS ALB alone, 2 behind an ALB and then an ingress controller): the
// client's address is the hops-th from the end of the header's values
// (several header lines are read as one list). Earlier entries are the
// client's to invent and are never read: taking the first would let anyone
// choose the address rate limits count by. A request whose header holds
// fewer entries, or not an address there, counts by r.RemoteAddr's host
// (the default ClientIP). It panics on an empty header name or hops < 1.
func ForwardedClientIP(header string, hops int) func(r *http.Request) string {
	if header == "" || hops < 1 {
		panic("cognitomcp: ForwardedClientIP: a header name and hops >= 1 are required")
	}
	header = http.CanonicalHeaderKey(header)
	return func(r *http.Request) string {
		vs, n := r.Header[header], hops
		for i := len(vs) - 1; i >= 0; i-- { // from the end: the last line holds the nearest hops
			entries := strings.Split(vs[i], ",")
			if n <= len(entries) {
				if a, ok := parseForwardedAddr(entries[len(entries)-n]); ok {
					return a
				}
				return remoteHost(r)
			}
			n -= len(entries)
		}
		return remoteHost(r)
	}
}

// parseForwardedAddr reads one X-Forwarded-For entry: an IP address, or an
// address and port as some proxies write it.
func parseForwardedAddr(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), true
	}
	return "", false
}

// remoteHost is the default ClientIP: the host of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
