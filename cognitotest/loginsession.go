package cognitotest

import (
	"crypto/rand"
	"net/http"
	"strings"
	"time"
)

// loginCookie is the managed-login session cookie on the domain host.
const loginCookie = "cognito"

// loginSession is a browser's sign-in at /login, which later authorization
// requests from that browser reuse until it expires.
type loginSession struct {
	username          string
	authTime, expires time.Time
}

// startLoginSession records a sign-in of username at now and sets the
// session cookie.
func (p *UserPool) startLoginSession(w http.ResponseWriter, username string, now time.Time) {
	id := rand.Text()
	ttl := p.opts.LoginSessionTTL
	p.mu.Lock()
	p.logins[id] = &loginSession{username: username, authTime: now, expires: now.Add(ttl)}
	p.mu.Unlock()
	http.SetCookie(w, p.sessionCookie(id, int(ttl/time.Second)))
}

// loginSessionOf returns the live session the request's cookie names, if
// its user still exists. Sessions of other pools are unknown here.
func (p *UserPool) loginSessionOf(r *http.Request) (loginSession, bool) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return loginSession{}, false
	}
	now := p.now()
	p.mu.Lock()
	ls, ok := p.logins[c.Value]
	if ok && !now.Before(ls.expires) {
		delete(p.logins, c.Value)
		ok = false
	}
	p.mu.Unlock()
	if !ok {
		return loginSession{}, false
	}
	if _, exists := p.user(ls.username); !exists {
		return loginSession{}, false
	}
	return *ls, true
}

// endLoginSession forgets the request's session and clears its cookie.
func (p *UserPool) endLoginSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(loginCookie); err == nil {
		p.mu.Lock()
		delete(p.logins, c.Value)
		p.mu.Unlock()
	}
	http.SetCookie(w, p.sessionCookie("", -1))
}

// sessionCookie is the session cookie with value and maxAge (-1 deletes
// it): host-only, HttpOnly, SameSite=Lax, and Secure on an https domain.
func (p *UserPool) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: loginCookie, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: strings.HasPrefix(p.DomainURL, "https://"), SameSite: http.SameSiteLaxMode,
	}
}
