package cognitomcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds of client metadata, for registration and metadata documents alike.
const (
	maxRedirectURIs   = 20
	maxClientNameLen  = 200 // characters
	maxScopeLen       = 1024
	maxClientIDLen    = 2048
	clientTouchPeriod = 24 * time.Hour // how stale Touched may get before a lookup refreshes the TTL
	// unusedClientTTL is how long a registration lives until a sign-in
	// through it completes (then ClientTTL): registering is open to anyone,
	// and what is never used should not fill the store for months.
	unusedClientTTL = 24 * time.Hour
	// presentedClientTTL is how long a registration lives once a valid
	// authorization request has named it, until a sign-in through it
	// completes: a first sign-in that failed (a Cognito app client still
	// being set up, a closed tab, Deny) can be tried again for a week with
	// the client id the client saved. Clients register again only when
	// /token refuses their id, which a sign-in that cannot start never
	// reaches.
	presentedClientTTL = 7 * 24 * time.Hour
	// maxRedirectURIBytes bounds a registration's redirect URIs together:
	// real clients register one to a few short ones.
	maxRedirectURIBytes = 8 << 10
)

// offlineAccess is dropped from requested scopes: mcp-remote and the
// Inspector ask for it, and the proxy always issues refresh tokens.
const offlineAccess = "offline_access"

// requestedScopes are the scopes of a scope parameter, each once, in order,
// without offline_access: as /register, /authorize and a refresh read it.
func requestedScopes(scope string) []string { return distinctScopes(strings.Fields(scope)) }

// distinctScopes are scopes each once, in order, without offline_access.
// A long list (a scope parameter of /authorize or /token is bounded only by
// the request's size: 64 KiB, some 16,000 scopes) is checked against a set,
// not searched once per scope.
func distinctScopes(scopes []string) []string {
	var out []string
	var seen map[string]bool
	if len(scopes) > 16 {
		seen = make(map[string]bool, len(scopes))
	}
	for _, s := range scopes {
		switch {
		case s == offlineAccess:
		case seen != nil:
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		case !slices.Contains(out, s):
			out = append(out, s)
		}
	}
	return out
}

// handleRegister is RFC 7591 dynamic client registration, in its steps: rate
// limit per client IP; a JSON object of at most 64 KiB; metadata checked
// (unknown fields ignored, known ones bounded, a grant or response type the
// proxy does not serve refused); the redirect URIs by validateRedirectURI,
// those of a scheme or host it does not allow dropped if others remain;
// the client stored for a day (for ClientTTL once a sign-in through it
// completes, see clientUsed); 201 with the metadata echoed. Every
// client is public: the proxy never issues client secrets, so
// token_endpoint_auth_method is always "none".
func (p *Proxy) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !p.limits.register.allow(p.clientIP(r)) {
		p.logRefusal(r, rateLimited(), "client_ip", p.clientIP(r))
		writeRateLimited(w, p.limits.register)
		return
	}
	rec, e := p.readRegistration(w, r)
	if e != nil {
		p.logRefusal(r, e)
		writeOAuthError(w, e)
		return
	}
	if err := p.put(r.Context(), storeKey(kindClient, rec.ID), rec, min(unusedClientTTL, p.clientTTL)); err != nil {
		e := oauthError(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "registration is temporarily unavailable; retry later", err)
		p.logRefusal(r, e)
		writeOAuthError(w, e)
		return
	}
	p.logger.Info("cognitomcp: client registered", "client_id", rec.ID, "client_name", truncate(rec.Name, 100),
		"redirect_hosts", redirectHosts(rec.RedirectURIs), "client_ip", p.clientIP(r))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusCreated, registrationResponse{
		ClientID:                rec.ID,
		ClientIDIssuedAt:        rec.IssuedAt.Unix(),
		RedirectURIs:            rec.RedirectURIs,
		TokenEndpointAuthMethod: rec.TokenEndpointAuthMethod,
		GrantTypes:              rec.GrantTypes,
		ResponseTypes:           rec.ResponseTypes,
		Scope:                   strings.Join(rec.Scopes, " "),
		ClientName:              rec.Name,
		ClientURI:               rec.ClientURI,
		LogoURI:                 rec.LogoURI,
		SoftwareID:              rec.SoftwareID,
		SoftwareVersion:         rec.SoftwareVersion,
		ApplicationType:         rec.ApplicationType,
	})
}

// registrationResponse is the RFC 7591 §3.2.1 answer; no client_secret ever.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// readRegistration reads and checks the registration request.
func (p *Proxy) readRegistration(w http.ResponseWriter, r *http.Request) (*clientRecord, *Error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidClientMetadata, "the body must be application/json", err)
	}
	body, err := readBody(w, r)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, oauthError(http.StatusRequestEntityTooLarge, CodeInvalidClientMetadata, "the body is larger than 64 KiB", err)
		}
		return nil, oauthError(http.StatusBadRequest, CodeInvalidClientMetadata, "the body could not be read", err)
	}
	md, err := decodeClientMetadata(body)
	if err != nil {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidClientMetadata, err.Error(), err) // err for the log too
	}
	return p.newRegistration(md)
}

// newRegistration checks md against the proxy's policy and builds the client.
func (p *Proxy) newRegistration(md *clientMetadata) (*clientRecord, *Error) {
	bad := func(err error) *Error {
		code := CodeInvalidClientMetadata
		if errors.Is(err, errRedirectURI) {
			code = CodeInvalidRedirectURI
		}
		return oauthError(http.StatusBadRequest, code, err.Error(), err) // err for the log too
	}
	// A grant or response type the proxy does not serve is refused, not
	// dropped as from a metadata document (RFC 7591 §3.2.1 would allow
	// replacing it): a registration is written for this server, after its
	// grant_types_supported (VS Code asks only for what that lists), so such
	// a value is a real mismatch, better named now by invalid_client_metadata
	// than found at /token by a client that does not read the echo. A
	// document is written once for many servers, and gets no echo.
	if err := md.checkCommon(refuseUnsupported); err != nil {
		return nil, bad(err)
	}
	// Every client gets a refresh token with its access token (MCP clients
	// expect one, and some register authorization_code alone): the answer
	// says so (RFC 7591 §3.2.1: the server may replace what was asked),
	// rather than echo a registration the token endpoint does not keep to.
	md.GrantTypes = slices.Clone(supportedGrantTypes)
	kept, err := p.allowedRedirectURIs(md.RedirectURIs)
	if err != nil {
		return nil, bad(err)
	}
	if len(kept) < len(md.RedirectURIs) {
		p.logger.Info("cognitomcp: registration keeps only the redirect URIs allowed", "kept", len(kept), "dropped", len(md.RedirectURIs)-len(kept))
	}
	md.RedirectURIs = kept
	switch {
	case md.canBePublic(), md.AuthMethod == "client_secret_post", md.AuthMethod == "client_secret_basic":
		// Registered as a public client whatever was asked: the answer says "none".
	default:
		return nil, bad(fmt.Errorf("token_endpoint_auth_method %q is not supported; use none", truncate(md.AuthMethod, 40)))
	}
	if err := checkHTTPSURL(md.ClientURI); err != nil {
		return nil, bad(fmt.Errorf("client_uri %w", err))
	}
	if err := checkHTTPSURL(md.LogoURI); err != nil {
		return nil, bad(fmt.Errorf("logo_uri %w", err))
	}
	if err := checkText(md.SoftwareID, 200); err != nil {
		return nil, bad(fmt.Errorf("software_id %w", err))
	}
	if err := checkText(md.SoftwareVersion, 200); err != nil {
		return nil, bad(fmt.Errorf("software_version %w", err))
	}
	rec := md.record(randomToken(16), p.now())
	rec.Scopes = p.clientScopes(strings.Fields(md.Scope))
	return rec, nil
}

// allowedRedirectURIs keeps the redirect URIs of a registration or a
// metadata document that the policy allows, and drops the well-formed ones
// it does not (a custom scheme no pattern allows): Cursor registers
// http://localhost:8787/callback and cursor://anysphere.cursor-mcp/oauth/
// callback together and signs in with the first, and RFC 7591 §3.2.1 lets
// the server register less than was asked, the answer echoing what it
// kept. A malformed or dangerous URI (javascript:, userinfo, dot
// segments…) is an error, and so is a list with nothing left.
func (p *Proxy) allowedRedirectURIs(uris []string) ([]string, error) {
	kept := make([]string, 0, len(uris))
	var refused error
	for i, u := range uris {
		err := validateRedirectURI(u, p.redirectPatterns)
		switch {
		case err == nil:
			kept = append(kept, u)
		case !errors.Is(err, errRedirectNotAllowed):
			return nil, fmt.Errorf("redirect_uris[%d]: %w", i, err)
		case refused == nil:
			refused = fmt.Errorf("redirect_uris[%d]: %w", i, err)
		}
	}
	if len(kept) == 0 {
		return nil, refused
	}
	return kept, nil
}

// clientScopes are the scopes a client registers, or its metadata document
// names: those it asked for that the proxy offers, each once
// (offline_access and any other dropped; a registration's answer echoes
// what was kept); none means the proxy's RequiredScopes.
func (p *Proxy) clientScopes(asked []string) []string {
	out := scopesIn(distinctScopes(asked), p.scopes)
	if len(out) == 0 {
		return slices.Clone(p.required)
	}
	return out
}

// scopesIn are the scopes of scopes that set holds, in scopes' order: of
// those a client asks for, the ones this server offers (a client may send a
// stale or hard-coded list, MCP checklist H5); of those the proxy grants,
// the ones Cognito's access token holds (a scope Cognito withheld is not
// the proxy's to give).
func scopesIn(scopes, set []string) []string {
	return slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return !slices.Contains(set, s) })
}

// redirectHosts are the distinct hosts (or schemes, for host-less custom
// schemes) of uris, for logs.
func redirectHosts(uris []string) []string {
	var hosts []string
	for _, raw := range uris {
		u, err := parseStrictURI(raw, false)
		if err != nil {
			continue
		}
		h := u.hostRaw
		if h == "" {
			h = u.scheme + ":"
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// clientMetadata is RFC 7591 client metadata as sent: by a registration
// request or in a client ID metadata document.
type clientMetadata struct {
	ClientID        string
	RedirectURIs    []string
	AuthMethod      string
	GrantTypes      []string
	ResponseTypes   []string
	Scope           string
	ClientName      string
	ClientURI       string
	LogoURI         string
	SoftwareID      string
	SoftwareVersion string
	ApplicationType string

	// AuthMethodsSupported is token_endpoint_auth_methods_supported, not an
	// RFC 7591 member: ChatGPT's document lists there the methods it can
	// use, naming private_key_jwt as its method yet authenticating with
	// none at a server that offers only none.
	AuthMethodsSupported []string
}

// decodeClientMetadata decodes a JSON object, matching member names exactly
// (encoding/json alone would match them case-insensitively). Unknown members
// are ignored; a known member of the wrong type is an error; null is absent.
func decodeClientMetadata(body []byte) (*clientMetadata, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, errors.New("the body is not a JSON object")
	}
	md := &clientMetadata{}
	strs := map[string]*string{
		"client_id": &md.ClientID, "token_endpoint_auth_method": &md.AuthMethod, "scope": &md.Scope,
		"client_name": &md.ClientName, "client_uri": &md.ClientURI, "logo_uri": &md.LogoURI,
		"software_id": &md.SoftwareID, "software_version": &md.SoftwareVersion, "application_type": &md.ApplicationType,
	}
	for name, dst := range strs {
		if v, ok := m[name]; ok && string(v) != "null" {
			if json.Unmarshal(v, dst) != nil {
				return nil, fmt.Errorf("%s must be a string", name)
			}
		}
	}
	lists := map[string]*[]string{
		"redirect_uris": &md.RedirectURIs, "grant_types": &md.GrantTypes, "response_types": &md.ResponseTypes,
	}
	for name, dst := range lists {
		if v, ok := m[name]; ok && string(v) != "null" {
			if json.Unmarshal(v, dst) != nil {
				return nil, fmt.Errorf("%s must be an array of strings", name)
			}
		}
	}
	// Not a member of RFC 7591: ignored, as before it was read, when malformed.
	var methods []string
	if json.Unmarshal(m["token_endpoint_auth_methods_supported"], &methods) == nil {
		md.AuthMethodsSupported = methods
	}
	return md, nil
}

// canBePublic reports whether the client can authenticate at /token as a
// public client: its token_endpoint_auth_method is "none" or absent, or its
// token_endpoint_auth_methods_supported lists "none".
func (md *clientMetadata) canBePublic() bool {
	return md.AuthMethod == "" || md.AuthMethod == "none" || slices.Contains(md.AuthMethodsSupported, "none")
}

// unsupportedValues says what checkCommon does with a grant or response
// type the proxy does not serve.
type unsupportedValues int

const (
	// refuseUnsupported fails the metadata: for registration.
	refuseUnsupported unsupportedValues = iota
	// dropUnsupported keeps only the supported values: for metadata
	// documents, written once for many servers.
	dropUnsupported
)

// The grant and response types /token and /authorize serve.
var (
	supportedGrantTypes    = []string{"authorization_code", "refresh_token"}
	supportedResponseTypes = []string{"code"}
)

// checkCommon applies the rules registration and metadata documents share,
// and fills in defaults: grant_types authorization_code and refresh_token,
// response_types code, application_type native. Grant and response types
// the proxy does not serve are refused or dropped, as unsupported says;
// either way authorization_code and code must be there.
func (md *clientMetadata) checkCommon(unsupported unsupportedValues) error {
	switch n := len(md.RedirectURIs); {
	case n == 0:
		return errors.New("redirect_uris is required")
	case n > maxRedirectURIs:
		return fmt.Errorf("redirect_uris has %d entries; at most %d are allowed", n, maxRedirectURIs)
	}
	total := 0
	for i, u := range md.RedirectURIs {
		if len(u) > maxRedirectURILen {
			return fmt.Errorf("%w: redirect_uris[%d] is longer than %d bytes", errRedirectURI, i, maxRedirectURILen)
		}
		total += len(u)
	}
	if total > maxRedirectURIBytes {
		return fmt.Errorf("%w: redirect_uris hold more than %d bytes together", errRedirectURI, maxRedirectURIBytes)
	}
	var err error
	if md.GrantTypes, err = checkSet("grant_types", md.GrantTypes, supportedGrantTypes, "authorization_code", unsupported); err != nil {
		return err
	}
	if md.ResponseTypes, err = checkSet("response_types", md.ResponseTypes, supportedResponseTypes, "code", unsupported); err != nil {
		return err
	}
	if err := checkText(md.ClientName, maxClientNameLen); err != nil {
		return fmt.Errorf("client_name %w", err)
	}
	if len(md.Scope) > maxScopeLen {
		return fmt.Errorf("scope is longer than %d bytes", maxScopeLen)
	}
	switch md.ApplicationType {
	case "":
		md.ApplicationType = "native"
	case "native", "web":
	default:
		return fmt.Errorf("application_type %q is neither native nor web", truncate(md.ApplicationType, 40))
	}
	return nil
}

// checkSet returns the values of allowed among values, in their order,
// each once, and checks that they hold required; absent means all of
// allowed. A value outside allowed is an error, or with dropUnsupported
// left out.
func checkSet(field string, values, allowed []string, required string, unsupported unsupportedValues) ([]string, error) {
	if values == nil {
		return slices.Clone(allowed), nil
	}
	var out []string
	for _, v := range values {
		switch {
		case slices.Contains(allowed, v):
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		case unsupported == refuseUnsupported:
			return nil, fmt.Errorf("%s: %q is not supported; supported: %s", field, truncate(v, 40), strings.Join(allowed, " "))
		}
	}
	if !slices.Contains(out, required) {
		return nil, fmt.Errorf("%s must include %s", field, required)
	}
	return out, nil
}

// record builds the stored client from checked metadata.
func (md *clientMetadata) record(id string, now time.Time) *clientRecord {
	return &clientRecord{
		ID:                      id,
		Name:                    md.ClientName,
		RedirectURIs:            md.RedirectURIs,
		Scopes:                  strings.Fields(md.Scope),
		GrantTypes:              md.GrantTypes,
		ResponseTypes:           md.ResponseTypes,
		TokenEndpointAuthMethod: "none",
		ApplicationType:         md.ApplicationType,
		ClientURI:               md.ClientURI,
		LogoURI:                 md.LogoURI,
		SoftwareID:              md.SoftwareID,
		SoftwareVersion:         md.SoftwareVersion,
		IssuedAt:                now.UTC().Truncate(time.Second),
	}
}

// checkHTTPSURL accepts "" or a strict https URL (client_uri, logo_uri).
func checkHTTPSURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := parseStrictURI(raw, false)
	if err != nil {
		return err
	}
	if u.scheme != "https" {
		return errors.New("must be an https URL")
	}
	return nil
}

// checkText accepts at most maxRunes characters and no control, line
// separator or bidirectional-override character (which could disguise a name
// on the consent page).
func checkText(s string, maxRunes int) error {
	if utf8.RuneCountInString(s) > maxRunes {
		return fmt.Errorf("is longer than %d characters", maxRunes)
	}
	for _, c := range s {
		if unicode.IsControl(c) || unicode.In(c, unicode.Zl, unicode.Zp) || isBidiControl(c) {
			return errors.New("has a control or bidirectional-formatting character")
		}
	}
	return nil
}

func isBidiControl(c rune) bool {
	return c == 0x061c || c == 0x200e || c == 0x200f || 0x202a <= c && c <= 0x202e || 0x2066 <= c && c <= 0x2069
}

// lookupClient returns the MCP client called clientID, for /authorize,
// /consent, /token and /revoke:
//
//  1. an https client_id, with CIMD on: the fetched metadata document, its
//     redirect URIs filtered by the proxy's redirect policy and its scopes by
//     the proxy's (error wrapping errInvalidClientMetadata);
//  2. Cognito's own app client id, when UpstreamClientRedirectURIs is set: a
//     synthesised client limited to those redirect URIs;
//  3. a registered client from the store, whose TTL slides (re-stored for
//     ClientTTL at most once a day).
//
// Unknown → ErrNotFound; store failure → an error wrapping ErrUnavailable.
func (p *Proxy) lookupClient(ctx context.Context, clientID string) (*clientRecord, error) {
	if clientID == "" || len(clientID) > maxClientIDLen {
		return nil, ErrNotFound
	}
	if p.cimd != nil && (strings.HasPrefix(clientID, "https://") ||
		p.cimd.allowLoopback && strings.HasPrefix(clientID, "http://")) {
		return p.metadataClient(ctx, clientID)
	}
	if clientID == p.upstreamClientID {
		if len(p.upstreamRedirect) == 0 {
			return nil, ErrNotFound
		}
		return &clientRecord{ID: clientID, Name: "Cognito app client", RedirectURIs: slices.Clone(p.upstreamRedirect),
			Scopes: slices.Clone(p.scopes), GrantTypes: []string{"authorization_code", "refresh_token"},
			ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none"}, nil
	}
	key := storeKey(kindClient, clientID)
	var rec clientRecord
	if err := p.get(ctx, key, &rec); err != nil {
		return nil, err
	}
	if rec.ID != clientID {
		return nil, ErrNotFound
	}
	rec.registered = true
	now := p.now()
	touched := rec.Touched
	if touched.IsZero() {
		touched = rec.IssuedAt
	}
	if rec.used() && now.Sub(touched) > min(clientTouchPeriod, p.clientTTL/2) {
		rec.Touched = now.UTC()
		p.storeClient(ctx, &rec, p.clientTTL)
	}
	return &rec, nil
}

// clientUsed marks a registration through which a sign-in just completed,
// or a refresh just succeeded, as used, storing it for ClientTTL from now
// on. A failure is logged: the tokens stand, and the next refresh tries
// again.
func (p *Proxy) clientUsed(ctx context.Context, rec *clientRecord) {
	if !rec.registered || rec.used() {
		return
	}
	used := *rec
	used.Used, used.Touched = true, p.now().UTC()
	p.storeClient(ctx, &used, p.clientTTL)
}

// clientPresented extends a registration no sign-in has used yet to
// presentedClientTTL, the first time a valid authorization request names
// it. A failure is logged: the sign-in goes on.
func (p *Proxy) clientPresented(ctx context.Context, rec *clientRecord) {
	if !rec.registered || rec.used() || rec.Presented {
		return
	}
	presented := *rec
	presented.Presented = true
	p.storeClient(ctx, &presented, min(presentedClientTTL, p.clientTTL))
}

// storeClient stores a registration again, for ttl from now: the one
// write of lookupClient, clientUsed and clientPresented. A failure is
// logged, and the request goes on.
func (p *Proxy) storeClient(ctx context.Context, rec *clientRecord, ttl time.Duration) {
	if err := p.put(ctx, storeKey(kindClient, rec.ID), rec, ttl); err != nil {
		p.logger.Warn("cognitomcp: could not extend a client's lifetime", "client_id", rec.ID, "reason", err.Error())
	}
}

// metadataClient is lookupClient for a CIMD client.
func (p *Proxy) metadataClient(ctx context.Context, clientID string) (*clientRecord, error) {
	rec, err := p.cimd.fetch(ctx, clientID)
	if err != nil {
		return nil, err
	}
	// The document's URIs are well formed (parseMetadataDocument), so the
	// only refusal left is that none is allowed here.
	allowed, err := p.allowedRedirectURIs(rec.RedirectURIs)
	if err != nil {
		return nil, fmt.Errorf("%w: none of its redirect_uris is allowed here", errInvalidClientMetadata)
	}
	rec.RedirectURIs = allowed
	rec.Scopes = p.clientScopes(rec.Scopes)
	return rec, nil
}
