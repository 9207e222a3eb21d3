package cognitotest

import (
	"crypto/subtle"
	_ "embed"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// codeTTL is the lifetime of an authorization code.
const codeTTL = 5 * time.Minute

// domainHandler routes the user-pool domain's endpoints.
func (p *UserPool) domainHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth2/authorize", p.instrument(EndpointAuthorize, p.handleAuthorize))
	mux.HandleFunc("/login", p.instrument(EndpointLogin, p.handleLogin))
	mux.HandleFunc("/logout", p.instrument(EndpointLogout, p.handleLogout))
	mux.HandleFunc("/oauth2/token", p.instrument(EndpointToken, p.handleToken))
	mux.HandleFunc("/oauth2/revoke", p.instrument(EndpointRevoke, p.handleRevoke))
	mux.HandleFunc("/oauth2/userInfo", p.instrument(EndpointUserInfo, p.handleUserInfo))
	return mux
}

// authorizeParams are the /oauth2/authorize parameters the login form carries.
var authorizeParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state",
	"nonce", "code_challenge", "code_challenge_method", "resource",
}

// authRequest is a validated authorization request.
type authRequest struct {
	client                            Client
	redirectURI                       string
	state, nonce, challenge, resource string
	scopes                            []string
	params                            url.Values
}

// authError is an authorization error: shown on an error page until the
// redirect URI is validated, sent back to it afterwards.
type authError struct {
	redirect    bool
	code, desc  string
	redirectURI string
	state       string
}

// authCode is an issued authorization code.
type authCode struct {
	clientID, redirectURI, username string
	nonce, challenge, resource      string
	scopes                          []string
	authTime, expires               time.Time
}

// parseAuthorize validates an authorization request in Cognito's order:
// client, redirect_uri, then the rest (errors on the redirect).
func (p *UserPool) parseAuthorize(q url.Values) (*authRequest, *authError) {
	c, ok := p.client(q.Get("client_id"))
	if !ok {
		return nil, &authError{code: "invalid_request", desc: "invalid client_id"}
	}
	req := &authRequest{
		client: c, redirectURI: q.Get("redirect_uri"), state: q.Get("state"),
		nonce: q.Get("nonce"), challenge: q.Get("code_challenge"),
		resource: q.Get("resource"), params: url.Values{},
	}
	if !slices.Contains(c.CallbackURLs, req.redirectURI) {
		return nil, &authError{code: "redirect_mismatch", desc: "redirect_uri is not a callback URL of the client"}
	}
	if p.opts.IgnoreResource {
		req.resource = "" // Lite tier, classic hosted UI: no resource binding
	}
	for _, k := range authorizeParams {
		if v := q.Get(k); v != "" && (k != "resource" || req.resource != "") {
			req.params.Set(k, v)
		}
	}
	fail := func(code, desc string) (*authRequest, *authError) {
		return nil, &authError{redirect: true, code: code, desc: desc, redirectURI: req.redirectURI, state: req.state}
	}
	switch q.Get("response_type") {
	case "code":
	case "": // RFC 6749 §4.1.2.1: a missing parameter
		return fail("invalid_request", "response_type is required")
	default:
		return fail("unsupported_response_type", "response_type must be code")
	}
	req.scopes = strings.Fields(q.Get("scope"))
	if len(req.scopes) == 0 {
		req.scopes = slices.Clone(c.AllowedScopes)
	}
	for _, s := range req.scopes {
		if !slices.Contains(c.AllowedScopes, s) {
			return fail("invalid_scope", "scope "+s+" is not allowed for the client")
		}
	}
	// Cognito's authorization-endpoint page: "The phone, email, and profile
	// scopes can only be requested if openid scope is also requested." The
	// error code it answers is not documented: invalid_scope is an
	// assumption.
	if !slices.Contains(req.scopes, "openid") && slices.ContainsFunc(req.scopes, isOIDCAttributeScope) {
		return fail("invalid_scope", "the phone, email, and profile scopes can only be requested with openid")
	}
	if method := q.Get("code_challenge_method"); (req.challenge != "" || method != "") && (method != "S256" || req.challenge == "") {
		return fail("invalid_request", "code_challenge_method must be S256 with a code_challenge")
	}
	if req.resource != "" {
		if u, err := url.Parse(req.resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return fail("invalid_target", "resource must be an absolute URI")
		}
	}
	return req, nil
}

// writeAuthError redirects an error back to the client, or shows the error
// page while the redirect URI is not trusted.
func writeAuthError(w http.ResponseWriter, r *http.Request, e *authError) {
	if !e.redirect {
		errorPage(w, http.StatusBadRequest, e.code)
		return
	}
	q := url.Values{"error": {e.code}, "error_description": {e.desc}}
	if e.state != "" {
		q.Set("state", e.state)
	}
	http.Redirect(w, r, withQuery(e.redirectURI, q), http.StatusFound)
}

// isOIDCAttributeScope reports whether s is one of the standard scopes
// that release user attributes.
func isOIDCAttributeScope(s string) bool {
	return s == "email" || s == "phone" || s == "profile"
}

// handleAuthorize is GET /oauth2/authorize: validate, then sign the
// auto-login user in, or the user of the browser's managed-login session,
// or redirect to the /login form, as Cognito does.
func (p *UserPool) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	req, aerr := p.parseAuthorize(r.URL.Query())
	if aerr != nil {
		writeAuthError(w, r, aerr)
		return
	}
	p.mu.Lock()
	auto := p.autoLogin
	p.mu.Unlock()
	if auto != "" {
		if _, ok := p.user(auto); ok {
			p.redirectWithCode(w, r, req, auto, p.now())
			return
		}
	}
	if ls, ok := p.loginSessionOf(r); ok {
		p.redirectWithCode(w, r, req, ls.username, ls.authTime)
		return
	}
	http.Redirect(w, r, "/login?"+req.params.Encode(), http.StatusFound)
}

// handleLogin is the managed-login page: GET shows the form, POST checks
// the credentials and redirects back with a code, or shows the form again.
func (p *UserPool) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "invalid_request")
		return
	}
	req, aerr := p.parseAuthorize(r.Form)
	if aerr != nil {
		writeAuthError(w, r, aerr)
		return
	}
	if r.Method == http.MethodGet {
		renderLogin(w, req, "")
		return
	}
	u, ok := p.user(r.PostForm.Get("username"))
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.PostForm.Get("password"))) != 1 {
		renderLogin(w, req, "Incorrect username or password.")
		return
	}
	now := p.now()
	p.startLoginSession(w, u.Username, now)
	p.redirectWithCode(w, r, req, u.Username, now)
}

// redirectWithCode issues a code for username, signed in at authTime, and
// sends it to the client.
func (p *UserPool) redirectWithCode(w http.ResponseWriter, r *http.Request, req *authRequest, username string, authTime time.Time) {
	code, now := newUUID(), p.now()
	p.mu.Lock()
	p.codes[code] = &authCode{
		clientID: req.client.ID, redirectURI: req.redirectURI, username: username,
		nonce: req.nonce, challenge: req.challenge, resource: req.resource,
		scopes: req.scopes, authTime: authTime, expires: now.Add(codeTTL),
	}
	p.mu.Unlock()
	q := url.Values{"code": {code}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	http.Redirect(w, r, withQuery(req.redirectURI, q), http.StatusFound)
}

// handleLogout is GET /logout: client_id and an allowed logout_uri end
// the managed-login session and redirect there; redirect_uri (with
// response_type) ends it and signs in again. A refused request leaves the
// session as it was.
func (p *UserPool) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	c, ok := p.client(q.Get("client_id"))
	switch {
	case !ok:
		errorPage(w, http.StatusBadRequest, "invalid_request")
	case q.Get("logout_uri") != "":
		if !slices.Contains(c.LogoutURLs, q.Get("logout_uri")) {
			errorPage(w, http.StatusBadRequest, "redirect_mismatch")
			return
		}
		p.endLoginSession(w, r)
		http.Redirect(w, r, q.Get("logout_uri"), http.StatusFound)
	case q.Get("redirect_uri") != "":
		p.endLoginSession(w, r)
		http.Redirect(w, r, "/oauth2/authorize?"+q.Encode(), http.StatusFound)
	default:
		errorPage(w, http.StatusBadRequest, "invalid_request")
	}
}

// withQuery adds q to the query of rawURL.
func withQuery(rawURL string, q url.Values) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	merged := u.Query()
	for k, v := range q {
		merged[k] = v
	}
	u.RawQuery = merged.Encode()
	return u.String()
}

//go:embed login.html
var loginHTML string

var loginPage = template.Must(template.New("login").Parse(loginHTML))

var errorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Error</title></head>
<body><h1>An error was encountered with the requested page.</h1>
<p id="errorMessage">{{.}}</p></body></html>
`))

type hiddenField struct{ Name, Value string }

// renderLogin shows the sign-in form carrying the authorize parameters.
func renderLogin(w http.ResponseWriter, req *authRequest, errMsg string) {
	var hidden []hiddenField
	for _, k := range authorizeParams {
		if v := req.params.Get(k); v != "" {
			hidden = append(hidden, hiddenField{k, v})
		}
	}
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = loginPage.Execute(w, struct {
		Hidden []hiddenField
		Error  string
	}{hidden, errMsg})
}

// errorPage shows Cognito's generic error page.
func errorPage(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	w.WriteHeader(status)
	_ = errorTmpl.Execute(w, code)
}
