// Command loadserver serves one MCP endpoint twice on loopback, with and
// without cognitomcp in front, for load tests (scripts/bench.sh runs wrk
// against both):
//
//	auth  http://127.0.0.1:PORT/mcp  proxy.Handler(mcp), as examples/server
//	                                 mounts it, a fake Cognito in-process
//	open  http://127.0.0.1:PORT/mcp  the same mcp handler, no auth
//
// The MCP handler is go-sdk's streamable HTTP handler (stateless, JSON
// responses) with one tool, "echo", behind the claims bridge of
// examples/server; with -handler=session it is configured as
// examples/server configures it (stateful, answers as server-sent events),
// and loadserver opens -sessions sessions through each listener for wrk to
// spread its requests over, as that many MCP clients would; with
// -handler=json it is a fixed JSON-RPC answer instead, which makes the
// middleware's share of each request as large as it gets.
//
// -front is for control experiments (BENCHMARKS.md, "The gap of earlier
// runs"): it chooses what serves the auth listener's MCP endpoint, the
// proxy's routes still answering the sign-in: proxy (the default),
// cognitomcp (the proxy without examples/server's bridge to go-sdk),
// cognitomcp+gosdk (the proxy, then go-sdk's RequireBearerToken with a
// verifier that accepts any token instead of the bridge), cognitomcp+copy
// (the proxy, then one more request copy), none
// (the bare handler: an A/A run), gosdk (go-sdk's own RequireBearerToken
// with a verifier that accepts any bearer token: a context-carrying
// middleware without cognitomcp), copy (only r.WithContext, the request
// copy every such middleware makes), copy+alloc (the same, then one
// 16-byte allocation after the handler) or frames (the bare handler under
// -frames more stack frames, nothing else: what the frames of a request in
// progress cost a GC cycle that scans them).
// scripts/bench.sh's deep step runs one loadserver with -front=none beside
// the one it measures, as the A/A control of the same rounds, or (with
// DEEP_CONTROL=swap) a second one of the same -front with -swap, which
// reverses the order in which the two listeners are created, served and
// given sessions.
// -ballast holds that many MiB of pointer-free live heap, so that the GC
// paces itself as in a server with that much live data rather than this
// one's ~1 MiB (scripts/bench.sh runs each handler with 0 and 64).
//
// The open listener also answers GET /debug/runtime with the process's
// cumulative runtime counters (runtime.go): scripts/bench.sh's deep step
// reads it around every wrk run, for what a run cost the runtime per
// request.
//
// Once both listen, loadserver signs in through the proxy (register,
// authorize, consent, the fake Cognito, callback, token) and prints one JSON
// line to stdout: {"auth": URL, "open": URL, "token": access token}, with
// -handler=session also "auth_session" and "open_session" (the
// Mcp-Session-Ids of each listener's sessions, comma-separated). It serves
// until SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// revocationCheck is the proxy's RevocationCheckInterval (0: the library's
// default): how often a token's cache entry expires and the token is
// verified again.
var revocationCheck = flag.Duration("revocation-check", 0, "the proxy's RevocationCheckInterval (0: its default)")

// traceFile is where to write a runtime/trace of the serving (after the
// sign-in); go tool trace -pprof=sched or -pprof=sync reads it.
var traceFile = flag.String("trace", "", "write a runtime/trace of the serving (after sign-in) to this file")

// frames is how many stack frames -front=frames puts under the handler.
var frames = flag.Int("frames", 16, "with -front=frames: how many stack frames to put under the handler")

// sessions is how many sessions -handler=session opens through each
// listener.
var sessions = flag.Int("sessions", 32, "with -handler=session: how many sessions to open through each listener")

// swap reverses the order in which loadserver does everything it does to
// both listeners (creates them, starts serving them, opens sessions through
// them): scripts/bench.sh's deep step with DEEP_CONTROL=swap runs one
// loadserver with it beside one without, so that whatever the order gives
// one listener over the other falls on the auth side in one and on the
// open side in the other, and cancels in their mean.
var swap = flag.Bool("swap", false, "reverse the order in which the two listeners are created, served and given sessions")

func main() {
	handler := flag.String("handler", "gosdk", `the MCP handler: "gosdk" (go-sdk streamable HTTP, stateless), "session" (go-sdk, stateful, as examples/server) or "json" (a fixed answer)`)
	front := flag.String("front", "proxy", `what serves the auth listener's MCP endpoint: "proxy" (cognitomcp and, for go-sdk, the claims bridge), "cognitomcp" (without the bridge), "cognitomcp+gosdk", "cognitomcp+copy", "none" (the bare handler), "gosdk" (go-sdk's RequireBearerToken, any token), "copy" (r.WithContext only), "copy+alloc" or "frames" (-frames more stack frames, nothing else)`)
	ballastMiB := flag.Int("ballast", 0, "MiB of pointer-free live heap to hold while serving")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the serving (after sign-in) to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *ballastMiB < 0 {
		fmt.Fprintln(os.Stderr, "loadserver: -ballast: negative")
		os.Exit(2)
	}
	if *sessions < 1 {
		fmt.Fprintln(os.Stderr, "loadserver: -sessions: fewer than 1")
		os.Exit(2)
	}
	ballast := make([]byte, *ballastMiB<<20)
	err := run(ctx, *handler, *front, *cpuprofile, os.Stdout)
	runtime.KeepAlive(ballast) // live, in the GC's eyes, while serving
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, handler, front, cpuprofile string, stdout io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := newStack(ctx, handler, front, logger)
	if err != nil {
		return err
	}
	defer st.close()
	errc := make(chan error, 2)
	var servers []*http.Server
	for _, sd := range st.sides() {
		s := &http.Server{Handler: sd.h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go func() { errc <- s.Serve(sd.ln) }()
	}

	token, err := signIn(ctx, st.base, st.pool.Transport())
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	fields := map[string]string{"auth": st.resource, "open": st.openURL(), "token": token}
	if handler == "session" {
		for _, side := range st.sides() {
			ids := make([]string, *sessions)
			for i := range ids {
				if ids[i], err = openSession(side.h, side.url, token); err != nil {
					return fmt.Errorf("session through the %s listener: %w", side.name, err)
				}
			}
			fields[side.name+"_session"] = strings.Join(ids, ",")
		}
	}
	for _, rec := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{cpuprofile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceFile, trace.Start, trace.Stop}} {
		if rec.path == "" {
			continue
		}
		f, err := os.Create(rec.path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := rec.start(f); err != nil {
			return err
		}
		defer rec.stop()
	}
	line, _ := json.Marshal(fields)
	fmt.Fprintln(stdout, string(line))

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	return nil
}

// stack is what loadserver serves: one MCP handler behind the proxy (auth)
// and bare (open), each with its listener, and the fake Cognito behind the
// proxy.
type stack struct {
	auth, open     http.Handler
	authLn, openLn net.Listener
	swapped        bool   // -swap: the open listener first
	base           string // the proxy's base URL, on authLn
	resource       string // the MCP endpoint behind the proxy
	pool           *cognitotest.UserPool
}

// newStack builds the stack for handler ("gosdk", "session" or "json"):
// with front "proxy", the proxy's handler as examples/server mounts it; the
// bare one on a ServeMux. The other fronts are the control experiments of the package
// documentation.
func newStack(ctx context.Context, handler, front string, logger *slog.Logger) (*stack, error) {
	var mcpHandler http.Handler
	switch handler {
	case "gosdk", "session":
		mcpHandler = newMCPHandler(logger, handler == "session")
	case "json":
		mcpHandler = http.HandlerFunc(fixedAnswer)
	default:
		return nil, fmt.Errorf("-handler: %q is none of gosdk, session, json", handler)
	}
	// behind is what serves the auth listener's MCP endpoint: behind the
	// proxy (with go-sdk's handler, through the claims bridge), or a control.
	var behind http.Handler
	switch front {
	case "proxy":
		behind = mcpHandler
		if handler != "json" {
			behind = auth.RequireBearerToken(claimsBridge, nil)(mcpHandler)
		}
	case "cognitomcp":
		behind = mcpHandler
	case "cognitomcp+gosdk":
		behind = auth.RequireBearerToken(anyBearer, nil)(mcpHandler)
	case "cognitomcp+copy":
		behind = copyRequest(mcpHandler, false)
	case "none":
		behind = mcpHandler
	case "gosdk":
		behind = auth.RequireBearerToken(anyBearer, nil)(mcpHandler)
	case "copy", "copy+alloc":
		behind = copyRequest(mcpHandler, front == "copy+alloc")
	case "frames":
		behind = deepStack(mcpHandler, *frames)
	default:
		return nil, fmt.Errorf("-front: %q is none of proxy, cognitomcp, cognitomcp+gosdk, cognitomcp+copy, none, gosdk, copy, copy+alloc, frames", front)
	}
	st := &stack{swapped: *swap}
	lns := []*net.Listener{&st.authLn, &st.openLn}
	if st.swapped {
		slices.Reverse(lns)
	}
	for _, ln := range lns {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, ln := range lns {
				if *ln != nil {
					(*ln).Close()
				}
			}
			return nil, err
		}
		*ln = l
	}
	st.base = "http://" + st.authLn.Addr().String()

	st.pool = cognitotest.NewUserPool(cognitotest.Options{})
	st.pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com", Groups: []string{"admin"}})
	app := st.pool.AddClient(cognitotest.Client{Secret: "upstream-secret", CallbackURLs: []string{st.base + "/auth/callback"}})
	st.pool.SetAutoLogin("alice")
	proxy, err := cognitomcp.NewProxy(ctx, cognitomcp.ProxyConfig{
		IssuerURL: st.pool.Issuer, ClientID: app.ID, ClientSecret: "upstream-secret", BaseURL: st.base,
		Keys:       cognitomcp.KeyConfig{MasterSecret: []byte("loadserver-master-secret-32bytes")},
		HTTPClient: st.pool.HTTPClient(), Logger: logger, RevocationCheckInterval: *revocationCheck,
	})
	if err != nil {
		st.close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpHandler)
	mux.HandleFunc("GET /debug/runtime", runtimeMetrics)
	st.open, st.resource = mux, proxy.Resource()
	if front == "proxy" || strings.HasPrefix(front, "cognitomcp") {
		st.auth = proxy.Handler(behind)
		return st, nil
	}
	resource, err := url.Parse(st.resource)
	if err != nil {
		st.close()
		return nil, err
	}
	st.auth = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == resource.Path {
			behind.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	return st, nil
}

// copyRequest is -front=copy: what every middleware that hands a value down
// the context does to the request, and nothing else (r.WithContext, a
// shallow copy). With alloc (-front=copy+alloc), one more 16-byte heap
// allocation follows the handler.
func copyRequest(h http.Handler, alloc bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(r.Context()))
		if alloc {
			sink.Store(&struct{ io.Reader }{r.Body})
		}
	})
}

// deepStack is -front=frames: the handler called from under n more stack
// frames (a recursion the compiler does not inline), and nothing else: the
// frames every request in progress holds on its goroutine's stack, which
// each GC cycle scans.
func deepStack(h http.Handler, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { descend(h, w, r, n) })
}

//go:noinline
func descend(h http.Handler, w http.ResponseWriter, r *http.Request, n int) {
	if n == 0 {
		h.ServeHTTP(w, r)
		return
	}
	descend(h, w, r, n-1)
}

// sink keeps copyRequest's allocation on the heap.
var sink atomic.Value

// anyBearer is -front=gosdk's verifier: every bearer token passes, as the
// same user.
func anyBearer(context.Context, string, *http.Request) (*auth.TokenInfo, error) {
	return &auth.TokenInfo{UserID: "control", Expiration: time.Now().Add(time.Hour)}, nil
}

// close closes the listeners (if no server took them) and the fake Cognito.
func (st *stack) close() {
	st.authLn.Close()
	st.openLn.Close()
	st.pool.Close()
}

// newMCPHandler is go-sdk's streamable HTTP handler: stateless with JSON
// answers, so that every request stands alone, or, when stateful, with
// examples/server's options (sessions, answers as server-sent events).
func newMCPHandler(logger *slog.Logger, stateful bool) http.Handler {
	server := mcp.NewServer(&mcp.Implementation{Name: "loadserver", Version: "1.0.0"}, &mcp.ServerOptions{Logger: logger})
	type echoArgs struct {
		Text string `json:"text"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "Returns its text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, echoArgs, error) {
			return nil, in, nil
		})
	opts := &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true, Logger: logger}
	if stateful {
		opts = &mcp.StreamableHTTPOptions{Logger: logger}
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts)
}

// openURL is the open listener's MCP endpoint.
func (st *stack) openURL() string { return "http://" + st.openLn.Addr().String() + "/mcp" }

// side is one of a stack's two listeners, as wrk loads it: its handler,
// listener and MCP endpoint.
type side struct {
	name string
	h    http.Handler
	ln   net.Listener
	url  string
}

// sides are the stack's two listeners, auth first (open first with -swap).
func (st *stack) sides() []side {
	s := []side{{"auth", st.auth, st.authLn, st.resource}, {"open", st.open, st.openLn, st.openURL()}}
	if st.swapped {
		slices.Reverse(s)
	}
	return s
}

// openSession opens an MCP session through h at url, as a client does
// (initialize, then notifications/initialized), with the bearer token, and
// returns its Mcp-Session-Id.
func openSession(h http.Handler, url, token string) (string, error) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, mcpPost(url, token, "",
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wrk","version":"1.0.0"}}}`))
	id := w.Header().Get("Mcp-Session-Id")
	if w.Code != http.StatusOK || id == "" || !strings.Contains(w.Body.String(), `"protocolVersion"`) {
		return "", fmt.Errorf("initialize: status %d, session %q: %.200s", w.Code, id, w.Body.String())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, mcpPost(url, token, id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if w.Code != http.StatusAccepted {
		return "", fmt.Errorf("notifications/initialized: status %d: %.200s", w.Code, w.Body.String())
	}
	return id, nil
}

// mcpPost is an MCP POST of body to url as mcp.lua sends it, with the
// bearer token and the session when not empty.
func mcpPost(url, token, session, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	return req
}

// claimsBridge is examples/server's: go-sdk's TokenInfo from the claims the
// proxy verified.
func claimsBridge(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
	c, ok := cognitomcp.ClaimsFromContext(r.Context())
	if !ok {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{UserID: c.Subject, Scopes: c.Scopes, Expiration: c.Expiry,
		Extra: map[string]any{"claims": c}}, nil
}

var answer = []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}` + "\n")

// fixedAnswer reads the request and answers a fixed JSON-RPC result.
func fixedAnswer(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(answer)
}

const redirectURI = "http://127.0.0.1:8976/callback"

var consentField = regexp.MustCompile(`name="(txn|csrf)" value="([^"]*)"`)

// signIn runs the authorization code flow against the proxy at base, as an
// MCP client and its user's browser would, and returns the access token.
func signIn(ctx context.Context, base string, transport http.RoundTripper) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: transport, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	body := `{"client_name":"loadserver","redirect_uris":["` + redirectURI + `"],"token_endpoint_auth_method":"none"}`
	if err := call(ctx, c, http.MethodPost, base+"/register", "application/json", body, http.StatusCreated, &reg); err != nil {
		return "", err
	}
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {redirectURI},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {"s"}, "scope": {"openid email"}, "resource": {base + "/mcp"}}
	next, err := redirect(ctx, c, http.MethodGet, base+"/authorize?"+q.Encode(), "", "")
	if err != nil {
		return "", err
	}
	var page string
	if err := call(ctx, c, http.MethodGet, next, "", "", http.StatusOK, &page); err != nil {
		return "", err
	}
	form := url.Values{"action": {"approve"}}
	for _, m := range consentField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	if next, err = redirect(ctx, c, http.MethodPost, base+"/consent", "application/x-www-form-urlencoded", form.Encode()); err != nil {
		return "", err
	}
	for range 2 { // Cognito (auto-login), then the proxy's callback
		if next, err = redirect(ctx, c, http.MethodGet, next, "", ""); err != nil {
			return "", err
		}
	}
	back, err := url.Parse(next)
	if err != nil {
		return "", err
	}
	tok := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "client_id": {reg.ClientID},
		"code_verifier": {verifier}, "redirect_uri": {redirectURI}, "resource": {base + "/mcp"}}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := call(ctx, c, http.MethodPost, base+"/token", "application/x-www-form-urlencoded", tok.Encode(), http.StatusOK, &out); err != nil {
		return "", err
	}
	if out.AccessToken == "" {
		return "", errors.New("no access_token")
	}
	return out.AccessToken, nil
}

// call sends a request and decodes a want answer into out (a *string takes
// the body as is).
func call(ctx context.Context, c *http.Client, method, u, contentType, body string, want int, out any) error {
	resp, err := send(ctx, c, method, u, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %.200s", method, resp.Request.URL.Path, resp.StatusCode, b)
	}
	if s, ok := out.(*string); ok {
		*s = string(b)
		return nil
	}
	return json.Unmarshal(b, out)
}

// redirect sends a request that must answer a redirect, and returns where to.
func redirect(ctx context.Context, c *http.Client, method, u, contentType, body string) (string, error) {
	resp, err := send(ctx, c, method, u, contentType, body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("%s %s: status %d, want a redirect", method, resp.Request.URL.Path, resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", err
	}
	return loc.String(), nil
}

func send(ctx context.Context, c *http.Client, method, u, contentType, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return c.Do(req)
}
