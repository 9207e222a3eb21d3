// Package demotest starts an example server binary (the test binary itself,
// re-executed) and signs in to it as an MCP client would, for the examples'
// end-to-end tests.
package demotest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// RunMainEnv is set in the environment of a re-executed test binary, whose
// TestMain then runs main instead of the tests.
const RunMainEnv = "COGNITOMCP_EXAMPLE_RUN_MAIN"

// Timeout bounds every wait: start, each request, shutdown.
const Timeout = 30 * time.Second

// Server is a running example server.
type Server struct {
	URL    string // the base URL from its "listening on" line
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // its exit error, once exited is closed
}

// configVars are cleared from the inherited environment, so the server runs
// against the fake Cognito whatever the developer's shell holds.
var configVars = []string{"COGNITO_", "BASE_URL=", "ADDR=", "REDIS_URL=", "JWT_SIGNING_KEY=",
	"STORAGE_ENCRYPTION_KEY=", "COGNITOMCP_MASTER_SECRET=", "DEMO_AUTO_LOGIN=", "ALLOWED_", "LOG_LEVEL=",
	"LOG_FORMAT=", "CLIENT_IP_HEADER=", "CLIENT_IP_HOPS=", "SHUTDOWN_"}

// Start runs the test binary as the example server, with env added to a
// clean environment and ADDR=127.0.0.1:0, and waits for "listening on".
func Start(t *testing.T, env ...string) *Server {
	t.Helper()
	s := &Server{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(os.Args[0])
	s.cmd.Env = append(append(cleanEnv(), "ADDR=127.0.0.1:0", "LOG_LEVEL=debug"), env...)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())

	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			s.stdout.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "listening on "); ok {
				listening <- u
			}
		}
		s.err = s.cmd.Wait() // after stdout is drained, as Wait closes the pipe
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server stdout:\n%s\nserver stderr:\n%s", s.stdout, s.stderr)
		}
	})
	select {
	case s.URL = <-listening:
	case <-s.exited:
		t.Fatalf("server exited before listening: %v\nstderr:\n%s", s.err, s.stderr)
	case <-time.After(Timeout):
		t.Fatalf("server did not print \"listening on\" within %v\nstdout:\n%s\nstderr:\n%s", Timeout, s.stdout, s.stderr)
	}
	return s
}

// Stdout returns what the server printed so far.
func (s *Server) Stdout() string { return s.stdout.String() }

// Stderr returns the server's logs so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// Stop sends SIGTERM and requires a clean exit (status 0) within Timeout.
func (s *Server) Stop(t *testing.T) {
	t.Helper()
	s.Signal(t)
	s.Wait(t)
}

// Signal sends SIGTERM and returns at once.
func (s *Server) Signal(t *testing.T) {
	t.Helper()
	// The test's clients share http.DefaultTransport, which may hold a
	// connection it dialed and never used (it lost the race to an idle one).
	// The server sees it in StateNew, and net/http's Shutdown waits up to
	// ~5 s for such a connection to send its request (golang/go#22682): a
	// client-side artefact, closed here so that Stop measures the server.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
}

// Wait requires the server to exit cleanly (status 0) within Timeout.
func (s *Server) Wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		require.NoError(t, s.err, "exit after SIGTERM; stderr:\n%s", s.stderr)
	case <-time.After(Timeout):
		t.Fatalf("server still running %v after SIGTERM", Timeout)
	}
}

// Login registers an MCP client and runs the authorization code flow with
// PKCE through the consent page and the fake Cognito (started with
// DEMO_AUTO_LOGIN, so no password is typed), and returns the access token.
func (s *Server) Login(t *testing.T, clientName string) string {
	t.Helper()
	return login(t, s.URL, clientName, nil)
}

// LoginAs is Login on a server started without DEMO_AUTO_LOGIN: it types
// username and the password the server printed for it into Cognito's
// sign-in form.
func (s *Server) LoginAs(t *testing.T, clientName, username string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)user ` + regexp.QuoteMeta(username) + ` .*password (\S+)$`).FindStringSubmatch(s.Stdout())
	require.NotNil(t, m, "no password printed for %s", username)
	return login(t, s.URL, clientName, url.Values{"username": {username}, "password": {m[1]}})
}

// login is Server.Login against the server, or the load balancer in front
// of servers, at base. With credentials it signs in through Cognito's form;
// without, Cognito must sign in a DEMO_AUTO_LOGIN user at once.
func login(t *testing.T, base, clientName string, credentials url.Values) string {
	t.Helper()
	const redirect = "http://127.0.0.1:9/callback" // never followed
	clientID := register(t, base, clientName, redirect)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {"st"}, "scope": {"openid email profile"}, "resource": {base + "/mcp"}}

	next := redirectOf(t, browser, http.MethodGet, base+"/authorize?"+q.Encode(), nil)
	if strings.HasSuffix(next.Path, "/consent") {
		form := hiddenFields(t, browser, next.String())
		require.NotEmpty(t, form.Get("csrf"), "no CSRF field in the consent page")
		form.Set("action", "approve")
		next = redirectOf(t, browser, http.MethodPost, base+"/consent", form)
	}
	next = redirectOf(t, browser, http.MethodGet, next.String(), nil) // Cognito: its form, or signed in at once
	if credentials != nil {
		form := hiddenFields(t, browser, next.String()) // the authorize request
		for k, v := range credentials {
			form[k] = v
		}
		next = redirectOf(t, browser, http.MethodPost, next.ResolveReference(&url.URL{Path: "/login"}).String(), form)
	}
	next = redirectOf(t, browser, http.MethodGet, next.String(), nil) // our callback: back to the client
	require.True(t, strings.HasPrefix(next.String(), redirect), next.String())
	code := next.Query().Get("code")
	require.NotEmpty(t, code, next.String())

	resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {clientID}, "code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {base + "/mcp"}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.NotEmpty(t, tok.AccessToken)
	return tok.AccessToken
}

func register(t *testing.T, base, name, redirect string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_name": name, "redirect_uris": []string{redirect},
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"token_endpoint_auth_method": "none"})
	resp, err := http.Post(base+"/register", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var reg struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&reg))
	return reg.ClientID
}

// redirectOf sends a request and returns the redirect it answers.
func redirectOf(t *testing.T, c *http.Client, method, u string, form url.Values) *url.URL {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Contains(t, []int{http.StatusFound, http.StatusSeeOther}, resp.StatusCode, "%s %s: %s", method, u, body)
	loc, err := resp.Location()
	require.NoError(t, err)
	return loc
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)

// hiddenFields fetches a page with a form (the consent page, Cognito's
// sign-in page) and returns its hidden fields.
func hiddenFields(t *testing.T, c *http.Client, u string) url.Values {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form
}

// CallTool connects to the MCP endpoint with token as an MCP client (the
// official Go SDK), calls the tool name and returns its result.
func (s *Server) CallTool(t *testing.T, token, name string) *mcp.CallToolResult {
	t.Helper()
	return callTool(t, s.URL+"/mcp", token, name)
}

// CallInProcess serves mcp on loopback as if the proxy had admitted every
// request with claims, and calls the tool name through it.
func CallInProcess(t *testing.T, mcpHandler http.Handler, claims *cognitomcp.Claims, name string) *mcp.CallToolResult {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mcpHandler.ServeHTTP(w, r.WithContext(cognitomcp.NewContext(r.Context(), claims)))
	}))
	defer srv.Close()
	return callTool(t, srv.URL, "any-token", name)
}

func callTool(t *testing.T, endpoint, token, name string) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "demotest", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: bearer(token)}, DisableStandaloneSSE: true}, nil)
	require.NoError(t, err)
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name})
	require.NoError(t, err)
	return res
}

// OpenSession connects an MCP client with its standalone event stream (a
// long-lived GET) and leaves it open until the test ends.
func (s *Server) OpenSession(t *testing.T, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "demotest", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearer(token)}, MaxRetries: -1}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = session.Close() })
	_, err = session.ListTools(ctx, nil) // the GET stream is open once a request has gone through
	require.NoError(t, err)
}

// Run runs the example server with env, expecting it to exit by itself (bad
// configuration), and returns its stderr and exit code.
func Run(t *testing.T, env ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(cleanEnv(), env...)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run: %v", err)
	}
	return errBuf.String(), cmd.ProcessState.ExitCode()
}

// cleanEnv is the environment without the examples' variables, plus the
// switch that makes the test binary run main.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, configVars) {
			env = append(env, kv)
		}
	}
	return append(env, RunMainEnv+"=1")
}

// Text returns the text of a tool result's first content.
func Text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	require.NotEmpty(t, res.Content)
	tc, ok := res.Content[0].(*mcp.TextContent)
	require.True(t, ok, "content is %T", res.Content[0])
	return tc.Text
}

// bearer is a RoundTripper that adds a bearer token.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// syncBuffer is a log or output buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer
