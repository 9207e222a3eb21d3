package cognitomcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Lifetimes of the short-lived state of a sign-in.
const (
	// transactionTTL is how long a transaction waits for the consent page's
	// answer; signInTTL, how long it waits for the user at Cognito once on
	// the way there: as long as Cognito's managed-login session, which a
	// sign-up with email verification or an MFA enrolment may take.
	transactionTTL = 15 * time.Minute
	signInTTL      = time.Hour
	codeTTL        = 5 * time.Minute
	// unredeemedGrantTTL is how long a grant is stored before its code is
	// redeemed: the code's life, and a margin for the clocks of replicas.
	unredeemedGrantTTL = codeTTL + time.Minute
)

// maxStateLen bounds the client's state, the one value of an authorization
// request stored as sent.
const maxStateLen = 2048

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1 with
// OAuth 2.1 PKCE and RFC 8707 resource). Until the client and its redirect
// URI are known good, errors show a page and never redirect (OAuth 2.1
// §7.12.2); after, they go back to the client with error, state and iss,
// when the redirect URI is trusted (trustedRedirect), and show a page
// otherwise.
func (p *Proxy) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !p.limits.authorize.allow(p.clientIP(r)) {
		p.errorPage(w, r, oauthError(http.StatusTooManyRequests, CodeTemporarilyUnavailable, "Too many sign-in attempts from this address. Try again in a minute.", nil))
		return
	}
	q, e := authorizeParams(w, r)
	if e == nil && len(q.Get("state")) > maxStateLen {
		// It would be stored with the transaction and echoed in redirects.
		e = oauthError(http.StatusBadRequest, CodeInvalidRequest, "The state parameter is too long.", nil)
	}
	if e != nil {
		p.errorPage(w, r, e)
		return
	}
	client, redirect, e := p.authorizeClient(r.Context(), q)
	if e != nil {
		p.errorPage(w, r, e)
		return
	}
	txn, e := p.newTransaction(q, client, redirect)
	if e == nil {
		txnID, consent := randomToken(32), p.consentNeeded(r, txn)
		ttl := signInTTL
		if consent {
			ttl = transactionTTL
		}
		if err := p.put(r.Context(), storeKey(kindTxn, txnID), txn, ttl); err != nil {
			e = asError(err)
		} else {
			p.clientPresented(r.Context(), client)
			p.startTransaction(w, r, txnID, txn, consent)
			return
		}
	}
	// The client and its redirect URI are known good: the error goes back
	// to the client, if the URI is one to send a browser to unasked (one
	// of UpstreamClientRedirectURIs, which the operator chose, is).
	operators := client.ID == p.upstreamClientID && slices.Contains(p.upstreamRedirect, redirect)
	if !operators && !trustedRedirect(redirect, p.redirectPatterns) {
		p.errorPage(w, r, e)
		return
	}
	p.redirectError(w, r, redirect, q.Get("state"), e)
}

// startTransaction sends the browser on with a stored transaction: to the
// consent page, or straight to Cognito.
func (p *Proxy) startTransaction(w http.ResponseWriter, r *http.Request, txnID string, txn *transaction, consent bool) {
	p.logger.Info("cognitomcp: authorization started", "mcp_client", truncate(txn.ClientID, 200), "redirect_host", hostOf(txn.RedirectURI))
	if consent {
		http.Redirect(w, r, p.issuer+"/consent?txn="+url.QueryEscape(txnID), http.StatusFound)
		return
	}
	p.redirectUpstream(w, r, txnID, txn)
}

// authorizeParams reads the request parameters: the query of a GET, the form
// of a POST. A repeated parameter is refused (RFC 6749 §3.1).
func authorizeParams(w http.ResponseWriter, r *http.Request) (url.Values, *Error) {
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		return q, singleValued(q)
	case http.MethodPost:
		return parseForm(w, r)
	}
	w.Header().Set("Allow", "GET, POST")
	return nil, oauthError(http.StatusMethodNotAllowed, CodeInvalidRequest, "method not allowed", nil)
}

// authorizeClient finds the client and resolves the redirect URI: the one
// given, matched against the registered ones, or the only one registered.
func (p *Proxy) authorizeClient(ctx context.Context, q url.Values) (*clientRecord, string, *Error) {
	id := q.Get("client_id")
	if id == "" {
		return nil, "", oauthError(http.StatusBadRequest, CodeInvalidRequest, "The request names no client.", nil)
	}
	client, err := p.lookupClient(ctx, id)
	switch {
	case errors.Is(err, ErrUnavailable):
		return nil, "", asError(err)
	case errors.Is(err, errInvalidClientMetadata):
		return nil, "", oauthError(http.StatusBadRequest, CodeInvalidClient, "This application's published description could not be used. Its developer must fix it.", fmt.Errorf("client %.200q: %w", id, err))
	case err != nil:
		return nil, "", oauthError(http.StatusBadRequest, CodeInvalidClient, "This application is not registered with this server, or its registration expired. Remove this server from the application (or clear its saved sign-in for it) and add it again.", fmt.Errorf("client %.200q: %w", id, err))
	}
	redirect := q.Get("redirect_uri")
	switch {
	case redirect != "":
		matched, ok := matchRedirectURI(client.RedirectURIs, redirect)
		if !ok {
			return nil, "", oauthError(http.StatusBadRequest, CodeInvalidRequest, "The redirect URI is not one this application registered.", nil)
		}
		redirect = matched
	case len(client.RedirectURIs) == 1:
		redirect = client.RedirectURIs[0]
	default:
		return nil, "", oauthError(http.StatusBadRequest, CodeInvalidRequest, "The request names no redirect URI.", nil)
	}
	if err := validateRedirectURI(redirect, p.redirectPatterns); err != nil {
		return nil, "", oauthError(http.StatusBadRequest, CodeInvalidRequest, "The redirect URI is not allowed.", err)
	}
	return client, redirect, nil
}

// newTransaction checks the rest of the request and builds the transaction.
func (p *Proxy) newTransaction(q url.Values, client *clientRecord, redirect string) (*transaction, *Error) {
	switch q.Get("response_type") {
	case "code":
	case "": // a required parameter missing (RFC 6749 §4.1.2.1), not an unsupported value
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "response_type is required", nil)
	default:
		return nil, oauthError(http.StatusBadRequest, CodeUnsupportedResponseType, "response_type must be code", nil)
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code_challenge is required (PKCE)", nil)
	case method != "S256":
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code_challenge_method must be S256", nil)
	case !isS256Challenge(challenge):
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code_challenge is not a base64url SHA-256", nil)
	}
	scopes := p.grantableScopes(q.Get("scope"), client)
	resource, e := p.checkResource(q.Get("resource"), "")
	if e != nil {
		return nil, e
	}
	return &transaction{
		ClientID: client.ID, ClientName: client.Name,
		RedirectURI: redirect, RedirectURIGiven: q.Get("redirect_uri") != "",
		State: q.Get("state"), CodeChallenge: challenge, Scopes: scopes, Resource: resource,
		UpstreamVerifier: oauth2.GenerateVerifier(), UpstreamNonce: randomToken(16),
		CreatedAt: p.now(), PromptConsentSeen: q.Get("prompt") == "consent",
	}, nil
}

// grantableScopes parses a requested scope: the scopes asked for that the
// proxy offers (as they are now; RFC 6749 §3.3 lets a server grant less
// than asked, and a client may send a stale or hard-coded list, MCP
// checklist H5); none asked, or none of them offered, means the client's
// registered scopes that the proxy still offers, or all it offers.
// offline_access is dropped: the proxy always issues refresh tokens.
//
// The scopes a client registered are not a limit: anyone may register a
// client with every scope, so the limit would protect nothing, and it would
// strand the clients registered before a scope was added to ProxyConfig
// (they never register again) or asked for in a step-up challenge
// (RequireScopes).
func (p *Proxy) grantableScopes(requested string, client *clientRecord) []string {
	if scopes := scopesIn(requestedScopes(requested), p.scopes); len(scopes) > 0 {
		return scopes
	}
	if scopes := scopesIn(client.Scopes, p.scopes); len(scopes) > 0 {
		return scopes
	}
	return slices.Clone(p.required)
}

// checkResource validates an RFC 8707 resource parameter: absent means this
// server's MCP resource; present, it must name that resource, or, when
// bound is set, the one the grant was bound to, in any of the forms
// sameResource accepts. The grant, and the audience of its tokens, is the
// canonical form either way.
func (p *Proxy) checkResource(resource, bound string) (string, *Error) {
	want := p.resource
	if bound != "" {
		want = bound
	}
	if resource == "" || resource == want || sameResource(resource, want) {
		return want, nil
	}
	return "", oauthError(http.StatusBadRequest, CodeInvalidTarget, "the resource is not served by this authorization server", nil)
}

// sameResource reports whether the resource a client sent names want, the
// canonical resource (an absolute URI with no query): the same URI up to
// RFC 3986 §6.2.2–6.2.3 normalisation (scheme and host in any case, the
// default port written or not) and one trailing slash, and whatever query
// or fragment the client appended to it ignored, as FastMCP does (ChatGPT
// sends the server URL with ?kb_name=...). The path is compared as it is.
func sameResource(given, want string) bool {
	if len(given) > maxRedirectURILen {
		return false
	}
	g, err1 := url.Parse(given)
	w, err2 := url.Parse(want)
	if err1 != nil || err2 != nil || g.Opaque != "" || g.User != nil || w.RawQuery != "" || !g.IsAbs() {
		return false
	}
	return strings.EqualFold(g.Scheme, w.Scheme) && strings.EqualFold(g.Hostname(), w.Hostname()) &&
		portOf(g) == portOf(w) &&
		strings.TrimSuffix(g.EscapedPath(), "/") == strings.TrimSuffix(w.EscapedPath(), "/")
}

// portOf is u's port, or its scheme's default one.
func portOf(u *url.URL) string {
	if port := u.Port(); port != "" {
		return port
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// isS256Challenge reports whether s is 43 base64url characters, the
// encoding of a SHA-256.
func isS256Challenge(s string) bool {
	return len(s) == 43 && isUnreserved(s, false)
}

// isUnreserved reports whether s holds only base64url characters or, with
// pkce, the unreserved characters RFC 7636 §4.1 allows in a verifier.
func isUnreserved(s string, pkce bool) bool {
	for i := range len(s) {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' ||
			pkce && (c == '.' || c == '~')
		if !ok {
			return false
		}
	}
	return true
}

// redirectUpstream binds the transaction to this browser and sends it to
// Cognito's authorization endpoint with the proxy's own PKCE and nonce.
func (p *Proxy) redirectUpstream(w http.ResponseWriter, r *http.Request, txnID string, txn *transaction) {
	name := p.bindingCookie(txnID)
	p.setCookie(w, name, p.keys.cookies.Sign(name, hashKey("bind", txnID), p.now().Add(signInTTL)), signInTTL)
	cfg := p.upstream
	cfg.Scopes = upstreamScopes(txn.Scopes)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(txn.UpstreamVerifier), oauth2.SetAuthURLParam("nonce", txn.UpstreamNonce)}
	if p.forwardResource {
		opts = append(opts, oauth2.SetAuthURLParam("resource", txn.Resource))
	}
	http.Redirect(w, r, cfg.AuthCodeURL(txnID, opts...), http.StatusFound)
}

// upstreamScopes are the scopes asked of Cognito: the granted ones, with
// openid first so an ID token comes back.
func upstreamScopes(granted []string) []string {
	if slices.Contains(granted, "openid") {
		return granted
	}
	return append([]string{"openid"}, granted...)
}

// redirectError sends an authorization error back to the client (RFC 6749
// §4.1.2.1, RFC 9207): error, a fixed description, state if the client sent
// one, and iss. The redirect URI is re-checked first.
func (p *Proxy) redirectError(w http.ResponseWriter, r *http.Request, redirect, state string, e *Error) {
	p.logRefusal(r, e)
	q := url.Values{"error": {e.Code}, "iss": {p.issuer}}
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	if state != "" {
		q.Set("state", state)
	}
	p.redirectToClient(w, r, redirect, q)
}

// redirectToClient redirects the browser to the client's redirect URI with
// q added after its query, after checking the URI once more.
func (p *Proxy) redirectToClient(w http.ResponseWriter, r *http.Request, redirect string, q url.Values) {
	if err := validateRedirectURI(redirect, p.redirectPatterns); err != nil {
		p.errorPage(w, r, oauthError(http.StatusBadRequest, CodeInvalidRequest, "The redirect URI is not allowed.", err))
		return
	}
	u, _ := url.Parse(redirect) // validated above
	// The registered query stays as written (RFC 6749 §3.1.2), with any
	// pair url.ParseQuery would drop (one holding ';'); q follows it.
	if u.RawQuery != "" {
		u.RawQuery += "&" + q.Encode()
	} else {
		u.RawQuery = q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// hostOf is where a redirect URI sends the browser, for people and logs:
// the host of an http(s) URI; for a custom scheme, which the operating
// system dispatches by scheme to an application, the scheme and host
// ("claude://callback"), or the scheme alone ("com.example.app:").
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return ""
	case u.Scheme == "http" || u.Scheme == "https":
		return u.Host
	case u.Host == "":
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}
