package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// artifacts is where the browser test leaves its screenshots (git-ignored).
const artifacts = "testdata/artifacts"

// TestConsentPageInBrowser drives the consent page and the fake Cognito's
// sign-in form in headless Chromium: what the page shows, Allow, Deny,
// the whole flow with JavaScript disabled, and Allow with a Cognito session
// to a redirect URI that redirects on.
func TestConsentPageInBrowser(t *testing.T) {
	browser := startChromium(t)
	f := newBrowserFixture(t)

	t.Run("approve", func(t *testing.T) {
		tab := newTab(t, browser, false)
		c := f.register(t, "Acme Notes Assistant")
		flow := f.authorize(t, c)

		navigate(t, tab, flow.url)
		checkConsentPage(t, tab, f, c)
		screenshot(t, tab, "consent.png", pageView{})
		screenshot(t, tab, "consent-dark.png", pageView{dark: true})
		screenshot(t, tab, "consent-phone.png", pageView{width: 390, height: 844})

		approveAndSignIn(t, tab, f)
		got := c.callback.wait(t)
		assert.Equal(t, flow.state, got.Get("state"))
		assert.Equal(t, f.proxy.Issuer(), got.Get("iss"))
		require.NotEmpty(t, got.Get("code"), got)
		assert.Equal(t, "script ran", title(t, tab), "JavaScript runs on the client's page: the control for the no-JavaScript run")

		claims := f.redeem(t, c, flow, got.Get("code"))
		assert.Equal(t, "alice", claims["username"])
		assert.Equal(t, c.id, claims["mcp_client"])
	})

	t.Run("deny", func(t *testing.T) {
		tab := newTab(t, browser, false)
		// A name with markup: the page must show it as text.
		name := `<img src=x onerror="alert(1)">Evil Client`
		c := f.register(t, name)
		flow := f.authorize(t, c)

		navigate(t, tab, flow.url)
		assert.Equal(t, name, text(t, tab, "#client-name"), "client_name is shown as text")
		assert.Equal(t, 0, evaluate[int](t, tab, `document.images.length`), "client_name markup became an element")
		run(t, tab, chromedp.Click(chromedp.ID("deny")))

		got := c.callback.wait(t)
		assert.Equal(t, "access_denied", got.Get("error"))
		assert.Equal(t, flow.state, got.Get("state"))
		assert.Empty(t, got.Get("code"))
	})

	t.Run("approve without JavaScript", func(t *testing.T) {
		tab := newTab(t, browser, true)
		c := f.register(t, "No-Script Client")
		flow := f.authorize(t, c)

		navigate(t, tab, flow.url)
		checkConsentPage(t, tab, f, c)
		approveAndSignIn(t, tab, f)
		got := c.callback.wait(t)
		assert.Equal(t, flow.state, got.Get("state"))
		require.NotEmpty(t, got.Get("code"), got)
		assert.Equal(t, "client callback", title(t, tab), "JavaScript was disabled all along")

		claims := f.redeem(t, c, flow, got.Get("code"))
		assert.Equal(t, "alice", claims["username"])
	})

	// A double click on Allow, on a network where the first answer takes a
	// while to come back: the second click must not submit the form again
	// (the browser would drop the first answer, which sent it to Cognito,
	// for the second, the 403 of a form already used).
	t.Run("double click on Allow", func(t *testing.T) {
		hold := make(chan struct{})
		f.consentHold.Store(&hold)
		t.Cleanup(func() { f.consentHold.Store(nil) })
		tab := newTab(t, browser, false)
		c := f.register(t, "Double-Click Client")
		flow := f.authorize(t, c)

		// The page reports its clicks and form submissions through a
		// binding: an evaluation would wait for the navigation the first
		// submission started.
		events := make(chan string, 8)
		do(t, tab, chromedp.ExposeFunc("reportEvent", func(_ context.Context, e string) (bool, error) {
			events <- e
			return true, nil
		}))
		navigate(t, tab, flow.url)
		posts := f.consentPosts.Load()
		// The clicks, 100 ms apart, as the page's own (a click of the
		// driver's waits for the page, which the first has sent on).
		evaluate[int](t, tab, `(() => {
			const b = document.getElementById("approve");
			b.addEventListener("click", () => reportEvent("click"), true);
			document.querySelector("form").addEventListener("submit", () => reportEvent("submit"), true);
			b.click(); setTimeout(() => b.click(), 100); return 1 })()`)
		// The first answer is held until the page has seen both clicks and
		// both submissions.
		for range 4 {
			select {
			case <-events:
			case <-time.After(stepTimeout):
				t.Fatal("the second click did not happen on the page")
			}
		}
		close(hold)
		require.Eventually(t, func() bool {
			return strings.HasPrefix(location(t, tab), f.pool.DomainURL+"/login?")
		}, stepTimeout, 50*time.Millisecond, "on Cognito's sign-in page, not the page of a used form")
		assert.Equal(t, posts+1, f.consentPosts.Load(), "one POST /consent reached the server")
		assert.Equal(t, 1, strings.Count(f.logs.String(), `consent given" mcp_client=`+c.id), "the form went once")
		assert.NotContains(t, f.logs.String(), "csrf token already used")
		do(t, tab,
			chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), alicePassword),
		)
		run(t, tab, chromedp.Click(chromedp.ID("signin")))
		got := c.callback.wait(t)
		require.NotEmpty(t, got.Get("code"), got)
	})

	// With a Cognito session, Allow sets off a chain of redirects that ends
	// wherever the client's redirect URI sends the browser next (claude.ai's
	// callback sends it on to claude://). Chromium checks a form's CSP
	// form-action against every hop of that chain, so a consent page that
	// lists only the places it knows of strands the user at the last hop.
	t.Run("approve with a Cognito session, to a redirect URI that redirects on", func(t *testing.T) {
		f.pool.SetAutoLogin("alice")
		t.Cleanup(func() { f.pool.SetAutoLogin("") })
		onward := newCallbackServer(t)
		onward.url = strings.Replace(onward.url, "127.0.0.1", "localhost", 1) // another origin than every other hop
		hop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, onward.url+"?"+r.URL.RawQuery, http.StatusFound)
		}))
		t.Cleanup(hop.Close)
		c := f.registerRedirect(t, "Hosted Client", hop.URL+"/callback", onward)
		flow := f.authorize(t, c)

		tab := newTab(t, browser, false)
		navigate(t, tab, flow.url)
		run(t, tab, chromedp.Click(chromedp.ID("approve")))
		got := c.callback.wait(t)
		assert.Equal(t, flow.state, got.Get("state"))
		require.NotEmpty(t, got.Get("code"), got)
		claims := f.redeem(t, c, flow, got.Get("code"))
		assert.Equal(t, "alice", claims["username"])
	})
}

// checkConsentPage asserts what the consent page tells the user about c.
func checkConsentPage(t *testing.T, tab context.Context, f *browserFixture, c *browserClient) {
	t.Helper()
	loc := location(t, tab)
	assert.True(t, strings.HasPrefix(loc, f.srv.URL+"/consent?"), "on the consent page: %s", loc)
	server := strings.TrimPrefix(f.srv.URL, "http://")
	assert.Contains(t, title(t, tab), server)
	assert.Equal(t, server, text(t, tab, "#server-name"))
	assert.Equal(t, c.name, text(t, tab, "#client-name"))
	assert.Equal(t, c.id, textContent(t, tab, "#client-id"), "in the collapsed technical details")
	assert.Equal(t, c.callback.host, text(t, tab, "#redirect-host"))
	assert.Equal(t, []string{"openid", "email", "profile"}, strings.Fields(textContent(t, tab, "#scopes code")))
	assert.Contains(t, text(t, tab, "#scopes"), "See your email address", "scopes are explained in words")
	assert.NotEmpty(t, text(t, tab, "#loopback-note"), "a loopback redirect URI gets the warning")
	assert.Equal(t, "Allow", text(t, tab, "#approve"))
	assert.Equal(t, "Deny", text(t, tab, "#deny"))
}

// approveAndSignIn clicks Allow, then fills and submits Cognito's form.
func approveAndSignIn(t *testing.T, tab context.Context, f *browserFixture) {
	t.Helper()
	run(t, tab, chromedp.Click(chromedp.ID("approve")))
	loc := location(t, tab)
	require.True(t, strings.HasPrefix(loc, f.pool.DomainURL+"/login?"), "on Cognito's sign-in page: %s", loc)
	do(t, tab,
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), alicePassword),
	)
	run(t, tab, chromedp.Click(chromedp.ID("signin")))
}

const alicePassword = "Correct-Horse-7"

// httpClient is what the test itself calls the proxy with.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// browserFixture is a fake Cognito pool and a proxy in front of an MCP
// stand-in that answers the claims, served on loopback.
type browserFixture struct {
	pool  *cognitotest.UserPool
	proxy *cognitomcp.Proxy
	srv   *httptest.Server
	logs  *syncBuffer
	// consentHold, when set, holds back the answers to the consent form
	// until it is closed, as a slow network between the browser and the
	// server would; consentPosts counts the forms that reached the server.
	consentHold  atomic.Pointer[chan struct{}]
	consentPosts atomic.Int32
}

func newBrowserFixture(t *testing.T) *browserFixture {
	t.Helper()
	return newBrowserFixtureWith(t, nil)
}

// newBrowserFixtureWith is newBrowserFixture with the proxy's
// configuration edited by mod.
func newBrowserFixtureWith(t *testing.T, mod func(*cognitomcp.ProxyConfig)) *browserFixture {
	t.Helper()
	f := &browserFixture{logs: &syncBuffer{}}
	var handler http.Handler = http.NotFoundHandler()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/consent" {
			f.consentPosts.Add(1)
		}
		handler.ServeHTTP(w, r)
		if hold := f.consentHold.Load(); hold != nil && r.Method == http.MethodPost && r.URL.Path == "/consent" {
			select { // the answer, written, is on its way back
			case <-*hold:
			case <-time.After(time.Minute):
			}
		}
	}))
	t.Cleanup(f.srv.Close)
	f.pool = cognitotest.NewUserPool(cognitotest.Options{})
	t.Cleanup(f.pool.Close)
	f.pool.AddUser(cognitotest.User{Username: "alice", Password: alicePassword, Email: "alice@example.com", Groups: []string{"admin"}})
	app := f.pool.AddClient(cognitotest.Client{Secret: "upstream-secret", CallbackURLs: []string{f.srv.URL + "/auth/callback"}})
	cfg := cognitomcp.ProxyConfig{
		IssuerURL: f.pool.Issuer, ClientID: app.ID, ClientSecret: "upstream-secret",
		BaseURL: f.srv.URL, Keys: cognitomcp.KeyConfig{MasterSecret: bytes.Repeat([]byte("k"), 32)},
		HTTPClient: f.pool.HTTPClient(),
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := cognitomcp.NewProxy(t.Context(), cfg)
	require.NoError(t, err)
	f.proxy = p
	handler = p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := cognitomcp.ClaimsFromContext(r.Context())
		mcpClient := ""
		if c.MCPClient != nil {
			mcpClient = c.MCPClient.ID
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"username": c.Username, "groups": c.Groups, "mcp_client": mcpClient})
	}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", f.logs.String())
		}
	})
	return f
}

// browserClient is an MCP client registered with the proxy whose redirect
// URI is a loopback server of the test (callback, or one that redirects
// there).
type browserClient struct {
	name, id, redirect string
	callback           *callbackServer
}

// register registers a client named name with a fresh callback server.
func (f *browserFixture) register(t *testing.T, name string) *browserClient {
	t.Helper()
	cb := newCallbackServer(t)
	return f.registerRedirect(t, name, cb.url, cb)
}

// registerRedirect registers a client named name whose redirect URI is
// redirect, which leads to cb.
func (f *browserFixture) registerRedirect(t *testing.T, name, redirect string, cb *callbackServer) *browserClient {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_name": name, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
	})
	resp, err := httpClient.Post(f.srv.URL+"/register", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var reg struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&reg))
	return &browserClient{name: name, id: reg.ClientID, redirect: redirect, callback: cb}
}

// authFlow is one authorization request with its PKCE verifier and state.
type authFlow struct {
	url, verifier, state string
}

// authorize returns a new authorization request of c, as an MCP client
// builds it.
func (f *browserFixture) authorize(t *testing.T, c *browserClient) *authFlow {
	t.Helper()
	fl := &authFlow{verifier: rand.Text() + rand.Text(), state: rand.Text()}
	sum := sha256.Sum256([]byte(fl.verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {fl.state}, "scope": {"openid email profile"}, "resource": {f.proxy.Resource()}}
	fl.url = f.srv.URL + "/authorize?" + q.Encode()
	return fl
}

// redeem exchanges the code the browser brought back and calls the MCP
// stand-in with the token; it returns the claims the stand-in saw.
func (f *browserFixture) redeem(t *testing.T, c *browserClient, fl *authFlow, code string) map[string]any {
	t.Helper()
	resp, err := httpClient.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {fl.verifier}, "redirect_uri": {c.redirect}, "client_id": {c.id}, "resource": {f.proxy.Resource()}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))

	req, _ := http.NewRequest(http.MethodPost, f.proxy.Resource(), strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	mresp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer mresp.Body.Close()
	require.Equal(t, http.StatusOK, mresp.StatusCode)
	var claims map[string]any
	require.NoError(t, json.NewDecoder(mresp.Body).Decode(&claims))
	return claims
}

// callbackServer is the client's redirect URI: it records the query it
// receives and answers a page whose script, if it runs, renames the page.
type callbackServer struct {
	url, host string
	got       chan url.Values
}

func newCallbackServer(t *testing.T) *callbackServer {
	t.Helper()
	cb := &callbackServer{got: make(chan url.Values, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case cb.got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>client callback</title><script>document.title = 'script ran'</script><p>You can close this tab.</p>`)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	cb.url, cb.host = srv.URL+"/callback", u.Host
	return cb
}

// wait returns the query the redirect URI received.
func (cb *callbackServer) wait(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-cb.got:
		return q
	case <-time.After(20 * time.Second):
		t.Fatal("the client's redirect URI received nothing within 20s")
		return nil
	}
}

// startChromium starts one headless Chromium for the test, with a fresh
// profile; each subtest opens a tab in its own browser context.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		unavailable(t, "chromium not found: install it (apt-get install chromium) to run the browser tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first call starts the browser, which lives as long as its
	// context: bound it with a timer, not a context deadline.
	timer := time.AfterFunc(60*time.Second, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		t.Fatalf("chromium (%s) did not start within 60s: %v", path, err)
	}
	require.NoError(t, err, "start chromium (%s)", path)
	return ctx
}

func chromiumPath() string {
	if p := os.Getenv("COGNITOMCP_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newTab opens a tab in a fresh browser context (no cookies from other
// subtests), with JavaScript disabled if noJS.
func newTab(t *testing.T, browser context.Context, noJS bool) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(tab))
	if noJS {
		ctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		require.NoError(t, err)
	}
	return tab
}

// stepTimeout bounds each browser step.
const stepTimeout = 20 * time.Second

// do runs actions on the tab, bounded by stepTimeout.
func do(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, actions...))
}

// run runs an action that may navigate (a click on a submit button) and
// waits for the page it leads to, after any redirects, to load.
func run(t *testing.T, tab context.Context, action chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, action)
	require.NoError(t, err)
	require.Equal(t, int64(http.StatusOK), resp.Status, "%s answered %d", resp.URL, resp.Status)
}

func navigate(t *testing.T, tab context.Context, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	require.NoError(t, err)
	require.Equal(t, int64(http.StatusOK), resp.Status, "%s answered %d", resp.URL, resp.Status)
}

func get[T any](t *testing.T, tab context.Context, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	require.NoError(t, err)
	return v
}

func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(get(t, tab, chromedp.Text(chromedp.CSS(sel))))
}

// textContent is the text of every element sel matches, shown or not.
func textContent(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(evaluate[string](t, tab, `Array.from(document.querySelectorAll(`+strconv.Quote(sel)+`)).map(e => e.textContent).join(" ")`))
}

func title(t *testing.T, tab context.Context) string {
	t.Helper()
	return get(t, tab, chromedp.Title())
}

func location(t *testing.T, tab context.Context) string {
	t.Helper()
	return get(t, tab, chromedp.Location())
}

func evaluate[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	return get(t, tab, chromedp.Evaluate[T](expr))
}

// pageView is how a screenshot sees the page: the colour scheme, and a
// phone-sized viewport if width is set.
type pageView struct {
	dark          bool
	width, height int64
}

// screenshot saves the whole page as a PNG in testdata/artifacts, seen as
// v says, then restores the default view.
func screenshot(t *testing.T, tab context.Context, name string, v pageView) {
	t.Helper()
	scheme := "light"
	if v.dark {
		scheme = "dark"
	}
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	media := func(scheme string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		})
	}
	setup := []chromedp.Action[chromedp.Void]{media(scheme)}
	if v.width > 0 {
		setup = append(setup, chromedp.EmulateViewport(v.width, v.height, chromedp.EmulateMobile))
	}
	require.NoError(t, chromedp.Do(ctx, setup...))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, media(""), chromedp.ResetViewport()))

	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	path := filepath.Join(artifacts, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: e2e/%s", path)
}
