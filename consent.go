package cognitomcp

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// rememberTTL is how long ConsentRemember remembers an approval.
const (
	rememberTTL     = 30 * 24 * time.Hour
	rememberedLimit = 20 // approvals one browser remembers; the oldest drop first
)

// consentPage is what the consent template shows. html/template escapes
// every value, client_name and redirect host included.
type consentPage struct {
	ClientName, ClientID, RedirectHost, RedirectURI, ServerName, Lifetime string
	Scopes                                                                []scopeLine
	Loopback, CustomScheme                                                bool
	Scheme                                                                string // of the redirect URI, shown for a custom scheme
	TxnID, CSRF, Action, Nonce                                            string
}

// scopeLine is a scope as the consent page lists it.
type scopeLine struct{ Name, Text string }

// scopeTexts say in words what the standard Cognito scopes allow.
var scopeTexts = map[string]string{
	"openid":                        "Confirm who you are",
	"email":                         "See your email address",
	"profile":                       "See your name and profile",
	"phone":                         "See your phone number",
	"aws.cognito.signin.user.admin": "Read and change your account",
}

func scopeLines(scopes []string) []scopeLine {
	lines := make([]scopeLine, len(scopes))
	for i, s := range scopes {
		text, ok := scopeTexts[s]
		if !ok {
			text = "Use this server's " + s + " permission"
		}
		lines[i] = scopeLine{Name: s, Text: text}
	}
	return lines
}

// lifetime renders a duration in days or hours for people.
func lifetime(d time.Duration) string {
	switch days := int(d / (24 * time.Hour)); {
	case days > 1:
		return strconv.Itoa(days) + " days"
	case days == 1:
		return "1 day"
	}
	hours := max(int(d/time.Hour), 1)
	if hours == 1 {
		return "1 hour"
	}
	return strconv.Itoa(hours) + " hours"
}

// handleConsent shows the consent page (GET) and takes the user's answer
// (POST). The answer must carry the CSRF token of the page, equal to the
// token in this transaction's double-submit cookie and still unused in the
// store (single use, atomic).
func (p *Proxy) handleConsent(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.showConsent(w, r)
	case http.MethodPost:
		p.answerConsent(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		p.errorPage(w, r, oauthError(http.StatusMethodNotAllowed, CodeInvalidRequest, "method not allowed", nil))
	}
}

func (p *Proxy) showConsent(w http.ResponseWriter, r *http.Request) {
	// Each rendering stores a CSRF token: the page counts against the
	// authorization rate limit, so reloads cannot fill the store.
	if !p.limits.authorize.allow(p.clientIP(r)) {
		p.errorPage(w, r, oauthError(http.StatusTooManyRequests, CodeTemporarilyUnavailable, "Too many sign-in attempts from this address. Try again in a minute.", nil))
		return
	}
	txnID := r.URL.Query().Get("txn")
	var txn transaction
	if err := p.loadTransaction(r, txnID, &txn); err != nil {
		p.errorPage(w, r, err)
		return
	}
	csrf := randomToken(32)
	if err := p.put(r.Context(), storeKey(kindCSRF, csrf), txnID, transactionTTL); err != nil {
		p.errorPage(w, r, asError(err))
		return
	}
	p.setCookie(w, p.csrfCookie(txnID), csrf, transactionTTL)
	u, _ := url.Parse(txn.RedirectURI)
	page := consentPage{
		ClientName: orDefault(txn.ClientName, "An unnamed application"), ClientID: txn.ClientID,
		RedirectHost: hostOf(txn.RedirectURI), RedirectURI: txn.RedirectURI, ServerName: p.serviceName,
		Scopes: scopeLines(txn.Scopes), Lifetime: lifetime(p.refreshTTL),
		Loopback: u != nil && isLoopbackHost(u.Hostname()), CustomScheme: u != nil && u.Scheme != "http" && u.Scheme != "https",
		Scheme: schemeOf(u),
		TxnID:  txnID, CSRF: csrf, Action: p.basePath + "/consent",
	}
	p.render(w, http.StatusOK, "consent.html", &page)
}

func schemeOf(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme
}

// loadTransaction reads a pending transaction, or returns the page error.
func (p *Proxy) loadTransaction(r *http.Request, txnID string, txn *transaction) *Error {
	if txnID == "" || len(txnID) > 64 {
		return oauthError(http.StatusBadRequest, CodeInvalidRequest, "This sign-in link is incomplete. Start again from your application.", nil)
	}
	err := p.get(r.Context(), storeKey(kindTxn, txnID), txn)
	switch {
	case errors.Is(err, ErrNotFound):
		return oauthError(http.StatusBadRequest, CodeInvalidRequest, "This sign-in expired or was already used. Start again from your application.", err)
	case err != nil:
		return asError(err)
	}
	return nil
}

func (p *Proxy) answerConsent(w http.ResponseWriter, r *http.Request) {
	form, e := parseForm(w, r)
	if e != nil {
		p.errorPage(w, r, e)
		return
	}
	txnID, csrf := form.Get("txn"), form.Get("csrf")
	answered, e := p.checkCSRF(r, txnID, csrf)
	if e != nil {
		p.errorPage(w, r, e)
		return
	}
	var txn transaction
	if e := p.loadTransaction(r, txnID, &txn); e != nil {
		p.errorPage(w, r, e)
		return
	}
	approve := form.Get("action") == "approve"
	if answered {
		// This form was posted before. From the browser that the approval
		// sent to Cognito (its binding cookie proves it: Back and Allow
		// again, or a second click after the first answer came back),
		// Allow again gets the same redirect. Anything else, and any other
		// browser, is refused. (A quick double click, whose second request
		// leaves before that cookie arrives, the page's script stops.)
		if !txn.Approved || !approve || p.checkBinding(r, txnID) != nil {
			p.errorPage(w, r, csrfRefused(errors.New("csrf token already used")))
			return
		}
		p.redirectUpstream(w, r, txnID, &txn)
		return
	}
	if !approve {
		p.clearCookie(w, p.csrfCookie(txnID))
		_ = p.del(r.Context(), storeKey(kindTxn, txnID))
		p.logger.Info("cognitomcp: consent denied", "mcp_client", truncate(txn.ClientID, 200))
		p.redirectError(w, r, txn.RedirectURI, txn.State, oauthError(http.StatusForbidden, CodeAccessDenied, "the user denied access", nil))
		return
	}
	p.logger.Info("cognitomcp: consent given", "mcp_client", truncate(txn.ClientID, 200), "redirect_host", hostOf(txn.RedirectURI))
	// Now it waits for the user at Cognito. The CSRF cookie stays until
	// the callback clears it: with the binding cookie, it is what tells a
	// second Allow of this browser's form from a forged one.
	txn.Approved = true
	if err := p.put(r.Context(), storeKey(kindTxn, txnID), &txn, signInTTL); err != nil {
		p.errorPage(w, r, asError(err))
		return
	}
	if p.consent == ConsentRemember {
		p.remember(w, r, rememberKey(&txn))
	}
	p.redirectUpstream(w, r, txnID, &txn)
}

// checkCSRF checks the double-submit cookie, then takes the token from the
// store so it works once, and checks it belongs to this transaction.
// answered reports a token already taken, with its cookie in this browser:
// this browser's form answered before.
func (p *Proxy) checkCSRF(r *http.Request, txnID, csrf string) (answered bool, e *Error) {
	if txnID == "" || csrf == "" || len(csrf) > 64 || len(txnID) > 64 {
		return false, csrfRefused(nil)
	}
	c, err := r.Cookie(p.csrfCookie(txnID))
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(csrf)) != 1 {
		return false, csrfRefused(errors.New("csrf cookie missing or different"))
	}
	var bound string
	err = p.take(r.Context(), storeKey(kindCSRF, csrf), &bound)
	switch {
	case errors.Is(err, ErrNotFound):
		return true, nil
	case err != nil:
		return false, asError(err)
	case bound != txnID:
		return false, csrfRefused(errors.New("csrf token of another transaction"))
	}
	return false, nil
}

// csrfRefused is the 403 of a consent form that is forged or out of date.
func csrfRefused(err error) *Error {
	return oauthError(http.StatusForbidden, CodeAccessDenied, "This form is out of date or was not sent by this page. Start again from your application.", err)
}

// consentNeeded says whether to show the consent page for txn (whose
// PromptConsentSeen says whether the authorization request, in its query or
// its POST body, said prompt=consent).
func (p *Proxy) consentNeeded(r *http.Request, txn *transaction) bool {
	switch p.consent {
	case ConsentOff:
		return false
	case ConsentRemember:
		// Only a navigation the user started (typed, or from this site) may
		// skip the page: never one a cross-site page pushed.
		site := r.Header.Get("Sec-Fetch-Site")
		if site != "none" && site != "same-origin" {
			return true
		}
		return txn.PromptConsentSeen || !slices.Contains(p.remembered(r), rememberKey(txn))
	}
	return true
}

// rememberKey names an approval of a client for a redirect URI and a set of
// scopes: a client approved for some scopes that asks for others is shown
// the page again.
func rememberKey(txn *transaction) string {
	scopes := slices.Clone(txn.Scopes)
	slices.Sort(scopes)
	return hashKey("consent", txn.ClientID, txn.RedirectURI, strings.Join(slices.Compact(scopes), " "))[:16]
}

// remembered returns the approvals in this browser's signed consent cookie.
func (p *Proxy) remembered(r *http.Request) []string {
	c, err := r.Cookie(p.cookieName("consent"))
	if err != nil {
		return nil
	}
	v, err := p.keys.cookies.Verify(p.cookieName("consent"), c.Value, p.now())
	if err != nil || v == "" {
		return nil
	}
	return strings.Split(v, ".")
}

func (p *Proxy) remember(w http.ResponseWriter, r *http.Request, key string) {
	keys := slices.DeleteFunc(p.remembered(r), func(k string) bool { return k == key })
	keys = append(keys, key)
	if len(keys) > rememberedLimit {
		keys = keys[len(keys)-rememberedLimit:]
	}
	name := p.cookieName("consent")
	p.setCookie(w, name, p.keys.cookies.Sign(name, strings.Join(keys, "."), p.now().Add(rememberTTL)), rememberTTL)
}

// cookieName prefixes a cookie name: __Host- on https (Secure, Path=/, no
// Domain: bound to this exact host), plain on loopback http.
func (p *Proxy) cookieName(base string) string {
	if p.secureCookie {
		return "__Host-cognitomcp_" + base
	}
	return "cognitomcp_" + base
}

// csrfCookie and bindingCookie are per transaction, so two sign-ins in one
// browser do not overwrite each other's cookies.
func (p *Proxy) csrfCookie(txnID string) string {
	return p.cookieName("csrf_" + hashKey("c", txnID)[:12])
}

func (p *Proxy) bindingCookie(txnID string) string {
	return p.cookieName("bind_" + hashKey("b", txnID)[:12])
}

func (p *Proxy) setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: p.secureCookie, SameSite: http.SameSiteLaxMode})
}

func (p *Proxy) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: p.secureCookie, SameSite: http.SameSiteLaxMode})
}

// errorPage shows an error in the browser, for failures that must not
// redirect: an unknown client, a bad redirect URI, an expired transaction.
func (p *Proxy) errorPage(w http.ResponseWriter, r *http.Request, e *Error) {
	p.logRefusal(r, e)
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "5")
	}
	msg := e.Description
	if e.Status >= 500 {
		msg = "The server cannot complete sign-in right now. Try again in a moment."
	}
	p.render(w, e.Status, "error.html", &struct{ Message, Code, Nonce string }{msg, e.Code, ""})
}

// render writes a page with headers that forbid framing, foreign
// resources and every script but the page's own, of fixed text, by its
// nonce (the consent page's, which stops a second submission of its form).
// The CSP has no form-action: Chromium checks it against every redirect
// that follows a form's submission, and the consent form's ends wherever
// the client's redirect URI sends the browser next (claude.ai's callback
// sends it on to claude://), which no list here can know; the form posts to
// this page's own path, and no other script could change that.
func (p *Proxy) render(w http.ResponseWriter, status int, name string, data any) {
	nonce := randomToken(16)
	switch d := data.(type) {
	case *consentPage:
		d.Nonce = nonce
	case *struct{ Message, Code, Nonce string }:
		d.Nonce = nonce
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		p.logger.Error("cognitomcp: render page", "page", name, "reason", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+"'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
