package cognitomcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
)

// ErrorHandler writes the response for a refused request. err is an *Error
// (errors.As) that wraps one of the package's sentinels, except a 500
// server_error, whose cause is the verifier's own error. When it runs, the
// WWW-Authenticate header (RFC 6750 §3) is already set; it writes the status
// and the body.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// MiddlewareConfig configures RequireToken.
type MiddlewareConfig struct {
	// Verifier checks the bearer token. Required: a *Verifier for Cognito
	// tokens, or any TokenVerifier (for the proxy's tokens, use
	// Proxy.RequireToken).
	Verifier TokenVerifier

	// ResourceMetadataURL is the absolute URL of this resource's protected
	// resource metadata (RFC 9728), sent as resource_metadata in every
	// challenge so MCP clients find the authorization server. Optional but
	// needed by MCP clients.
	ResourceMetadataURL string

	// Scopes are required of every token (403 insufficient_scope otherwise)
	// and advertised in challenges as scope="…". Optional: nil requires
	// nothing. RequireToken panics on a blank entry, or one holding white
	// space, as RequireScopes does.
	Scopes []string

	// ErrorHandler writes refusals. Default: DefaultErrorHandler.
	ErrorHandler ErrorHandler

	// Logger receives one line per decision: refusals at Info (at Error
	// when the server is at fault: a 5xx), admissions at Debug, never a
	// token. Default slog.Default().
	Logger *slog.Logger
}

// middleware is a RequireToken instance: the config with its challenge
// header parameters rendered once.
type middleware struct {
	verifier     TokenVerifier
	scopes       []string
	metadataURL  string
	scopeParam   string // space-separated Scopes
	errorHandler ErrorHandler
	logger       *slog.Logger

	// grantable are the scopes a client can obtain (the proxy's, behind a
	// Proxy; nil, unknown, otherwise), and unobtainable whether a refusal
	// named another yet, which is logged once.
	grantable    []string
	unobtainable atomic.Bool
}

// RequireToken returns middleware that authenticates every request with its
// Authorization: Bearer token (RFC 6750 §2.1; the scheme is matched without
// regard to case, and tokens in the query or the body are never read) and
// puts the verified Claims in the request context. A CORS preflight
// carries no token, so it is refused like any request without one and never
// reaches next: put CORS middleware (CheckOrigin(origins...), Proxy.CheckOrigin(), rs/cors) outside
// RequireToken, where it answers preflights itself.
//
// Refusals: no token, 401 with a challenge carrying resource_metadata and
// scope but no error (RFC 6750 §3.1); a malformed Authorization header, 400
// invalid_request; a bad token, 401 invalid_token; a missing scope, 403
// insufficient_scope naming the scopes to ask for (as RequireScopes does);
// a verifier error of no known kind, 500 server_error; signing keys or the
// store unreachable, 503 with Retry-After. Bodies are
// {"error","error_description"} with fixed text.
//
// It panics if cfg.Verifier is nil, as http.Handle panics on a nil handler,
// and if an entry of cfg.Scopes is blank or holds white space (what
// splitting an empty setting gives), as RequireScopes does: such a scope
// would refuse every request.
func RequireToken(cfg MiddlewareConfig) func(http.Handler) http.Handler {
	if cfg.Verifier == nil {
		panic("cognitomcp: RequireToken: MiddlewareConfig.Verifier is nil")
	}
	if s, bad := badName(cfg.Scopes); bad {
		panic(fmt.Sprintf("cognitomcp: RequireToken: MiddlewareConfig.Scopes: %q is not a name", s))
	}
	m := &middleware{
		verifier:     cfg.Verifier,
		scopes:       slices.Clone(cfg.Scopes),
		metadataURL:  cfg.ResourceMetadataURL,
		scopeParam:   strings.Join(cfg.Scopes, " "),
		errorHandler: cfg.ErrorHandler,
		logger:       cfg.Logger,
	}
	if m.errorHandler == nil {
		m.errorHandler = DefaultErrorHandler
	}
	return m.wrap
}

func (m *middleware) wrap(next http.Handler) http.Handler {
	return &guarded{m: m, next: next}
}

// guarded is RequireToken's handler: a type of its own with the checks in
// its method, rather than a closure in an http.HandlerFunc, so that a
// request in progress holds one frame of it on its goroutine's stack, not
// two (every GC cycle scans the stacks of the requests in progress).
type guarded struct {
	m    *middleware
	next http.Handler
}

func (g *guarded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := g.m
	claims, err := m.authenticate(r)
	if err != nil {
		m.refuse(w, r, claims, err)
		return
	}
	if l := m.log(); l.Enabled(r.Context(), slog.LevelDebug) {
		l.LogAttrs(r.Context(), slog.LevelDebug, "cognitomcp: request admitted", decisionAttrs(claims, nil)...)
	}
	g.next.ServeHTTP(w, r.WithContext(&authCtx{Context: r.Context(), claims: claims, mw: m}))
}

// tokenLookup is implemented by the package's own verifiers: cached returns
// the claims of a token verified before from a cache that holds only
// b64tokens, so that on a hit (the common case in an MCP session) the
// header's syntax needs no check of its own.
type tokenLookup interface {
	cached(raw string) (*Claims, bool)
}

func (m *middleware) authenticate(r *http.Request) (*Claims, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	var claims *Claims
	if l, ok := m.verifier.(tokenLookup); ok {
		claims, _ = l.cached(raw)
	}
	if claims == nil {
		if !isB64Token(raw) {
			return nil, invalidRequest("malformed bearer token")
		}
		if claims, err = m.verifier.Verify(r.Context(), raw); err != nil {
			return nil, err
		}
		if claims == nil { // a TokenVerifier of one's own that broke its contract: 500
			return nil, fmt.Errorf("cognitomcp: %T returned neither claims nor an error", m.verifier)
		}
	}
	if err := checkScopes(claims.Scopes, m.scopes); err != nil {
		return claims, err
	}
	return claims, nil
}

// refuse sets the challenge, logs the decision and calls the error handler.
func (m *middleware) refuse(w http.ResponseWriter, r *http.Request, claims *Claims, err error) {
	e := asError(err)
	level := slog.LevelInfo // a client's or a user's doing
	switch {
	case e.Status >= 500:
		level = slog.LevelError // signing keys or the store unreachable, a verifier's failure
	case errors.Is(e.Err, ErrNoToken):
		level = slog.LevelDebug // every MCP client's first request: how it learns where to sign in
	}
	m.log().LogAttrs(r.Context(), level, "cognitomcp: request refused", append(decisionAttrs(claims, e), slog.String("path", truncate(r.URL.Path, 256)))...)
	var need *scopeNeed
	if m.grantable != nil && errors.As(e.Err, &need) {
		if never := missingScopes(m.grantable, need.missing); len(never) > 0 && !m.unobtainable.Swap(true) {
			m.log().Warn("cognitomcp: a scope required of requests is not in ProxyConfig.Scopes, so no client can obtain it: add it there (and to the Cognito app client)",
				"scopes", strings.Join(never, " "))
		}
	}
	if h := m.challenge(e); h != "" {
		w.Header().Set("WWW-Authenticate", h)
	}
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	m.errorHandler(w, r, e)
}

// challenge renders the WWW-Authenticate value for e, or "" for none.
func (m *middleware) challenge(e *Error) string {
	var code, scope string
	switch {
	case e.Status == http.StatusForbidden && e.Code == CodeInsufficientScope:
		code, scope = e.Code, m.scopeFor(e)
	case e.Status == http.StatusUnauthorized && errors.Is(e.Err, ErrNoToken):
		scope = m.scopeParam
	case e.Status == http.StatusUnauthorized, e.Status == http.StatusBadRequest:
		code, scope = e.Code, m.scopeParam
	default:
		return "" // 403 for groups: re-authorizing cannot help, so no challenge
	}
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	param := func(name, value string) {
		if value == "" {
			return
		}
		b.WriteString(sep + name + `="` + quoteEscape(value) + `"`)
		sep = ", "
	}
	param("error", code)
	if code != "" {
		param("error_description", e.Description)
	}
	param("resource_metadata", m.metadataURL)
	param("scope", scope)
	return b.String()
}

// scopeFor is the scope a client needs for step-up: the configured scopes
// plus those the error names (MCP 2025-11-25 "recommended approach"), each
// once. A client asks for exactly the scope a challenge names, so leaving
// out the configured ones would send it back and forth between two
// refusals.
func (m *middleware) scopeFor(e *Error) string {
	var se *scopeNeed
	if !errors.As(e.Err, &se) {
		return m.scopeParam
	}
	return strings.Join(union(strings.Fields(m.scopeParam), strings.Fields(se.scope)), " ")
}

// union is a then the elements of b not in a, each once, in order.
func union(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkScopes returns nil when have holds every one of want, and otherwise a
// 403 insufficient_scope whose challenge names the scopes to ask for: have
// and want together (a client asks for exactly the scopes a challenge
// names, so one left out would be lost at the next sign-in). RequireToken's
// Scopes, VerifierConfig.RequiredScopes and RequireScopes all answer so.
func checkScopes(have, want []string) error {
	missing := missingScopes(have, want)
	if len(missing) == 0 {
		return nil
	}
	return &Error{Status: http.StatusForbidden, Code: CodeInsufficientScope,
		Description: "the token lacks a required scope",
		Err: fmt.Errorf("%w: missing %s: %w", ErrInsufficientScope, strings.Join(missing, " "),
			&scopeNeed{scope: strings.Join(union(have, want), " "), missing: missing})}
}

// scopeNeed carries, inside an insufficient_scope error, the full scope a
// client should ask for.
type scopeNeed struct {
	scope   string
	missing []string // of the scopes required, those the token lacks
}

func (s *scopeNeed) Error() string { return "cognitomcp: needs scope " + s.scope }

func quoteEscape(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// decisionAttrs are the log attributes of a decision: who, which clients,
// and why (the cause, which never contains a token).
func decisionAttrs(c *Claims, e *Error) []slog.Attr {
	attrs := make([]slog.Attr, 0, 6)
	if c != nil {
		attrs = append(attrs, slog.String("sub", c.Subject), slog.String("username", c.Username),
			slog.String("app_client", c.ClientID))
		if c.MCPClient != nil {
			attrs = append(attrs, slog.String("mcp_client", c.MCPClient.ID))
		}
	}
	if e != nil {
		attrs = append(attrs, slog.Int("status", e.Status), slog.String("error", e.Code),
			slog.String("reason", e.Error()))
	}
	return attrs
}

// DefaultErrorHandler writes err's status and a JSON body
// {"error": code, "error_description": description}. The description is the
// fixed text of the *Error, never its cause.
func DefaultErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	e := asError(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// bearerToken returns the token of the request's one Authorization header
// (RFC 6750 §2.1): no header, or another scheme, is ErrNoToken; two headers
// are ErrInvalidRequest. The caller checks that the token is a b64token
// (authenticate does, unless the verifier's cache, which holds only
// b64tokens, has it).
func bearerToken(r *http.Request) (string, error) {
	vals := r.Header["Authorization"]
	switch {
	case len(vals) == 0:
		return "", ErrNoToken
	case len(vals) > 1:
		return "", invalidRequest("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	return strings.TrimLeft(token, " "), nil
}

func invalidRequest(description string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: description, Err: ErrInvalidRequest}
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// It runs on every request over the whole token, so it reads a table eight
// bytes at a time.
func isB64Token(s string) bool {
	n := len(s)
	for n > 0 && s[n-1] == '=' {
		n--
	}
	if n == 0 {
		return false
	}
	i, bad := 0, byte(0)
	for ; i+8 <= n; i += 8 {
		w := s[i : i+8]
		bad |= b64TokenReject[w[0]] | b64TokenReject[w[1]] | b64TokenReject[w[2]] | b64TokenReject[w[3]] |
			b64TokenReject[w[4]] | b64TokenReject[w[5]] | b64TokenReject[w[6]] | b64TokenReject[w[7]]
	}
	for ; i < n; i++ {
		bad |= b64TokenReject[s[i]]
	}
	return bad == 0
}

// b64TokenReject is 1 for the bytes a b64token's body may not hold.
var b64TokenReject = rejectAllBut("-._~+/")

// rejectAllBut returns a byte table that is 0 for ASCII letters, digits and
// the bytes of also, and 1 for every other byte.
func rejectAllBut(also string) (t [256]byte) {
	for c := range t {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(also, byte(c)) >= 0) {
			t[c] = 1
		}
	}
	return t
}

// RequireGroups returns middleware that admits a request only when its
// claims hold at least one of groups (403 access_denied otherwise, with no
// challenge: signing in again cannot help). It must run inside RequireToken
// (or after NewContext); without claims it answers 401, so a forgotten
// RequireToken never opens the door. It panics when given no group, or a
// blank name or one with white space (what splitting an empty setting
// gives): a list that came out empty must not build a middleware that
// admits nobody, or, for RequireAllGroups, everybody.
func RequireGroups(groups ...string) func(http.Handler) http.Handler {
	groups = nonEmpty("RequireGroups", groups)
	return requireClaims(func(c *Claims) error {
		if c.InGroup(groups...) {
			return nil
		}
		return groupError(groups)
	})
}

// RequireAllGroups is RequireGroups requiring every one of groups.
func RequireAllGroups(groups ...string) func(http.Handler) http.Handler {
	groups = nonEmpty("RequireAllGroups", groups)
	return requireClaims(func(c *Claims) error {
		if c.InAllGroups(groups...) {
			return nil
		}
		return groupError(groups)
	})
}

// nonEmpty returns a copy of list (the caller's slice may change later), and
// panics, naming fn, when it is empty or holds a blank name (what
// strings.Split of an empty setting gives).
func nonEmpty(fn string, list []string) []string {
	if len(list) == 0 {
		panic("cognitomcp: " + fn + " with nothing to require")
	}
	if s, bad := badName(list); bad {
		panic(fmt.Sprintf("cognitomcp: %s: %q is not a name", fn, s))
	}
	return slices.Clone(list)
}

// badName returns the first entry of list that is blank or holds white
// space (what strings.Split of an empty setting gives), if there is one.
func badName(list []string) (string, bool) {
	for _, s := range list {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\r\n") {
			return s, true
		}
	}
	return "", false
}

func groupError(groups []string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeAccessDenied,
		Description: "insufficient group membership",
		Err:         fmt.Errorf("%w: needs %s", ErrInsufficientGroups, strings.Join(groups, ", "))}
}

// RequireScopes returns middleware that admits a request only when its
// token carries every one of scopes. Otherwise it answers 403 with
// WWW-Authenticate: Bearer error="insufficient_scope", scope="…" listing the
// scopes the client should request to step up: RequireToken's (or the
// proxy's), those the token holds, and these (a client asks for exactly
// what it is told, so a scope left out would be lost at the next sign-in).
// Without claims it answers 401. It panics when given no scope, or a blank
// one, as RequireGroups does.
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	scopes = nonEmpty("RequireScopes", scopes)
	return requireClaims(func(c *Claims) error {
		return checkScopes(c.Scopes, scopes)
	})
}

// requireClaims builds an authorization middleware from a check of the
// claims that RequireToken left in the context.
func requireClaims(check func(*Claims) error) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := authFromContext(r.Context())
			m := bareMiddleware
			if st != nil && st.mw != nil {
				m = st.mw
			}
			if st == nil || st.claims == nil {
				m.refuse(w, r, nil, ErrNoToken)
				return
			}
			if err := check(st.claims); err != nil {
				m.refuse(w, r, st.claims, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bareMiddleware answers for authorization middleware that runs without
// RequireToken in front of it.
var bareMiddleware = &middleware{errorHandler: DefaultErrorHandler}

// log returns the configured logger, or the default one at the time of use.
func (m *middleware) log() *slog.Logger {
	if m.logger != nil {
		return m.logger
	}
	return slog.Default()
}

var _ context.Context = (*authCtx)(nil)

// CheckOrigin returns middleware that answers 403 access_denied to a
// request whose Origin header is present and not one of origins (the MCP
// transports' defence against DNS rebinding), and gives allowed origins the
// CORS headers browser-based MCP clients need, answering their preflights.
// It is Proxy.CheckOrigin for resource-server mode; put it outside
// RequireToken. An origin is scheme://host[:port], and is compared in the
// form browsers send (lower case, no default port); "*" allows any. It
// panics on an empty list, which would refuse every browser.
func CheckOrigin(origins ...string) func(http.Handler) http.Handler {
	g := originGuard{origins: canonicalOrigins(nonEmpty("CheckOrigin", origins))}
	return g.wrap
}

// originGuard is CheckOrigin's check, shared with the Proxy.
type originGuard struct {
	origins []string     // canonical
	logger  *slog.Logger // nil: the default one at the time of use
}

func (g originGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.allow(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// allow reports whether r goes on, or answers it (403 for a foreign Origin,
// 204 to an allowed CORS preflight). An allowed Origin gets its CORS
// headers.
func (g originGuard) allow(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !slices.Contains(g.origins, "*") && !slices.Contains(g.origins, origin) {
		logger := g.logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Info("cognitomcp: foreign Origin refused", "origin", truncate(origin, 100))
		writeOAuthError(w, &Error{Status: http.StatusForbidden, Code: CodeAccessDenied, Description: "origin not allowed"})
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Mcp-Session-Id")
	if isPreflight(r) {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Mcp-Protocol-Version, Mcp-Session-Id, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// canonicalOrigins puts origins in the form browsers send in Origin: lower
// case, no default port.
func canonicalOrigins(origins []string) []string {
	out := make([]string, len(origins))
	for i, o := range origins {
		if u, err := url.Parse(o); err == nil && u.Scheme != "" && u.Host != "" {
			o = u.Scheme + "://" + canonicalHost(u.Scheme, u.Host)
		}
		out[i] = o
	}
	return out
}

// ResourceMetadata is an MCP endpoint's RFC 9728 protected resource
// metadata, which tells MCP clients where to sign in. A Proxy serves its
// own; in resource-server mode serve it with ResourceMetadataHandler at the
// URL given as MiddlewareConfig.ResourceMetadataURL.
type ResourceMetadata struct {
	// Resource is the MCP endpoint's URL exactly as clients connect to it
	// (some refuse any other). Required.
	Resource string
	// AuthorizationServers are the issuers whose tokens the endpoint takes:
	// the pool's (CognitoIssuers gives both of its forms). Required.
	AuthorizationServers []string
	// Scopes are advertised as scopes_supported. Optional.
	Scopes []string
	// ResourceName is a name clients may show. Optional.
	ResourceName string
}

// ResourceMetadataHandler returns a handler that serves m as JSON to GET
// and HEAD, with CORS for browser-based clients. Resource and every
// authorization server must be absolute https URLs (http on a loopback
// host) without query or fragment.
func ResourceMetadataHandler(m ResourceMetadata) (http.Handler, error) {
	if err := checkIssuerURL(m.Resource, false); err != nil {
		return nil, fmt.Errorf("cognitomcp: ResourceMetadata.Resource: %w", err)
	}
	if len(m.AuthorizationServers) == 0 {
		return nil, errors.New("cognitomcp: ResourceMetadata.AuthorizationServers is empty")
	}
	for _, as := range m.AuthorizationServers {
		if err := checkIssuerURL(as, false); err != nil {
			return nil, fmt.Errorf("cognitomcp: ResourceMetadata.AuthorizationServers: %w", err)
		}
	}
	doc := struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		Scopes               []string `json:"scopes_supported,omitempty"`
		BearerMethods        []string `json:"bearer_methods_supported"`
		ResourceName         string   `json:"resource_name,omitempty"`
	}{m.Resource, slices.Clone(m.AuthorizationServers), slices.Clone(m.Scopes), []string{"header"}, m.ResourceName}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}), http.MethodGet, "MCP-Protocol-Version"), nil
}
