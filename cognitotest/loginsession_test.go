package cognitotest_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// newBrowser is a client of p with a cookie jar that returns redirects
// instead of following them.
func newBrowser(t *testing.T, p *cognitotest.UserPool) *http.Client {
	t.Helper()
	b := noFollow(p)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	b.Jar = jar
	return b
}

// formSignIn signs alice in to c through the /login form in browser and
// returns the reply that carries the code.
func formSignIn(t *testing.T, f *fixture, browser *http.Client, c *cognitotest.Client) reply {
	t.Helper()
	r := do(t, browser, http.MethodGet, authorizeURL(f.pool, c, url.Values{"state": {"s"}}), nil, nil)
	require.Equal(t, http.StatusFound, r.status, r.raw)
	require.True(t, strings.HasPrefix(r.header.Get("Location"), "/login?"), "the form: %s", r.header.Get("Location"))
	page := do(t, browser, http.MethodGet, f.pool.DomainURL+r.header.Get("Location"), nil, nil)
	require.Equal(t, http.StatusOK, page.status)
	form, _ := parseLoginForm(page.raw)
	form.Set("username", "alice")
	form.Set("password", "correct horse")
	good := do(t, browser, http.MethodPost, f.pool.DomainURL+"/login", strings.NewReader(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	require.NotEmpty(t, redirectQuery(t, good).Get("code"))
	return good
}

// authorizeOutcome runs /oauth2/authorize for c in browser: "form" when it
// sends the browser to /login, "code" when it redirects back with a code.
func authorizeOutcome(t *testing.T, f *fixture, browser *http.Client, c *cognitotest.Client) (outcome, code string) {
	t.Helper()
	r := do(t, browser, http.MethodGet, authorizeURL(f.pool, c, url.Values{"state": {"s2"}}), nil, nil)
	require.Equal(t, http.StatusFound, r.status, r.raw)
	loc := r.header.Get("Location")
	switch {
	case strings.HasPrefix(loc, "/login?"):
		return "form", ""
	case strings.HasPrefix(loc, callback+"?"):
		q := redirectQuery(t, r)
		assert.Equal(t, "s2", q.Get("state"))
		return "code", q.Get("code")
	}
	t.Fatalf("authorize redirected to %s", loc)
	return "", ""
}

// sessionCookie returns the session cookie a reply sets.
func sessionCookie(t *testing.T, r reply) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "cognito" {
			return c
		}
	}
	t.Fatalf("no session cookie in %v", r.header["Set-Cookie"])
	return nil
}

// TestLoginSession: a sign-in at /login starts Cognito's managed-login
// session (1 hour by default), so a later authorize from the same browser
// skips the form, for any client of the pool; /logout ends it.
func TestLoginSession(t *testing.T) {
	t.Run("skips the form for an hour", func(t *testing.T) {
		f := newFixture(t, cognitotest.Options{})
		browser := newBrowser(t, f.pool)
		signedInAt := f.clock.Now()
		cookie := sessionCookie(t, formSignIn(t, f, browser, f.public))
		assert.True(t, cookie.HttpOnly)
		assert.Equal(t, "/", cookie.Path)
		assert.Equal(t, 3600, cookie.MaxAge)
		assert.False(t, cookie.Secure, "plain http on loopback")

		f.clock.Advance(59 * time.Minute)
		outcome, code := authorizeOutcome(t, f, browser, f.private)
		require.Equal(t, "code", outcome, "another client of the pool, same browser")
		tokens := post(t, f.pool, "/oauth2/token", url.Values{"grant_type": {"authorization_code"},
			"code": {code}, "redirect_uri": {callback}}, f.private.ID, f.private.Secret)
		require.Equal(t, http.StatusOK, tokens.status, tokens.raw)
		at := claimsOf(t, str(tokens, "access_token"))
		assert.Equal(t, "alice", at["username"])
		assert.Equal(t, json.Number(itoa(signedInAt.Unix())), at["auth_time"], "auth_time is the sign-in's")

		outcome, _ = authorizeOutcome(t, f, newBrowser(t, f.pool), f.public)
		assert.Equal(t, "form", outcome, "another browser")

		other := newFixture(t, cognitotest.Options{Now: f.clock.Now})
		outcome, _ = authorizeOutcome(t, other, browser, other.public)
		assert.Equal(t, "form", outcome, "another pool (on 127.0.0.1 it gets the cookie too)")

		f.clock.Advance(time.Minute)
		outcome, _ = authorizeOutcome(t, f, browser, f.public)
		assert.Equal(t, "form", outcome, "the session has expired")
	})

	t.Run("LoginSessionTTL", func(t *testing.T) {
		f := newFixture(t, cognitotest.Options{LoginSessionTTL: 10 * time.Minute})
		browser := newBrowser(t, f.pool)
		assert.Equal(t, 600, sessionCookie(t, formSignIn(t, f, browser, f.public)).MaxAge)
		f.clock.Advance(10*time.Minute - time.Second)
		outcome, _ := authorizeOutcome(t, f, browser, f.public)
		assert.Equal(t, "code", outcome)
		f.clock.Advance(time.Second)
		outcome, _ = authorizeOutcome(t, f, browser, f.public)
		assert.Equal(t, "form", outcome)
	})

	t.Run("secure cookie on the AWS host names", func(t *testing.T) {
		f := newFixture(t, cognitotest.Options{AWSHostnames: true})
		browser := newBrowser(t, f.pool)
		assert.True(t, sessionCookie(t, formSignIn(t, f, browser, f.public)).Secure)
		outcome, _ := authorizeOutcome(t, f, browser, f.public)
		assert.Equal(t, "code", outcome)
	})

	t.Run("logout ends it", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			query    url.Values
			location string
			ended    bool
		}{
			{"logout_uri", url.Values{"logout_uri": {"https://app.example.test/bye"}}, "https://app.example.test/bye", true},
			{"sign in again", url.Values{"redirect_uri": {callback}, "response_type": {"code"}}, "/oauth2/authorize?", true},
			{"logout_uri not allowed", url.Values{"logout_uri": {"https://evil.example/"}}, "", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := newFixture(t, cognitotest.Options{})
				browser := newBrowser(t, f.pool)
				cookie := sessionCookie(t, formSignIn(t, f, browser, f.public))

				q := url.Values{"client_id": {f.public.ID}}
				maps.Copy(q, tc.query)
				r := do(t, browser, http.MethodGet, f.pool.DomainURL+"/logout?"+q.Encode(), nil, nil)
				if tc.location == "" {
					assert.Equal(t, http.StatusBadRequest, r.status)
				} else {
					assert.Equal(t, http.StatusFound, r.status)
					assert.True(t, strings.HasPrefix(r.header.Get("Location"), tc.location), r.header.Get("Location"))
					assert.Negative(t, sessionCookie(t, r).MaxAge, "the cookie is cleared")
				}
				want := map[bool]string{true: "form", false: "code"}[tc.ended]
				outcome, _ := authorizeOutcome(t, f, browser, f.public)
				assert.Equal(t, want, outcome)

				// The old cookie, kept by a browser that ignored the clearing.
				stale := noFollow(f.pool)
				r = do(t, stale, http.MethodGet, authorizeURL(f.pool, f.public, nil), nil,
					http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}})
				assert.Equal(t, tc.ended, strings.HasPrefix(r.header.Get("Location"), "/login?"), "the session is over at the pool too")
			})
		}
	})

	t.Run("auto-login starts none", func(t *testing.T) {
		f := newFixture(t, cognitotest.Options{})
		browser := newBrowser(t, f.pool)
		f.pool.SetAutoLogin("alice")
		r := do(t, browser, http.MethodGet, authorizeURL(f.pool, f.public, nil), nil, nil)
		assert.NotEmpty(t, redirectQuery(t, r).Get("code"))
		assert.Empty(t, r.header.Values("Set-Cookie"))
		f.pool.SetAutoLogin("")
		outcome, _ := authorizeOutcome(t, f, browser, f.public)
		assert.Equal(t, "form", outcome)
	})
}
