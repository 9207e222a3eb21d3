package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
)

// TestTypeScriptSDKClient signs alice and bob in to the example server with
// the official TypeScript SDK (client.mjs): 401, discovery, registration,
// consent, the Cognito form, PKCE, token, tools/list, tools/call, a refresh
// forced by a broken access token, and admin_report refused to bob.
func TestTypeScriptSDKClient(t *testing.T) {
	modules := nodeModules(t)
	srv := startExampleServer(t)

	started := time.Now()
	res := runClient(t, modules, srv)
	t.Logf("client.mjs ran in %v", time.Since(started).Round(time.Millisecond))
	require.Len(t, res.Runs, 2)
	alice, bob := res.Runs[0], res.Runs[1]

	for _, run := range res.Runs {
		t.Run(run.User+"/authorization", func(t *testing.T) {
			checkAuthorization(t, srv, run)
		})
	}

	t.Run("alice/tools", func(t *testing.T) {
		assert.Subset(t, alice.Tools, []string{"whoami", "admin_report"})
		id := alice.Whoami.identity(t)
		assert.Equal(t, "alice", id.Username)
		assert.NotEmpty(t, id.Sub)
		assert.Equal(t, []string{"admin"}, id.Groups)
		assert.Equal(t, alice.ClientID, id.MCPClient.ID, "whoami names the MCP client that registered")
		assert.Equal(t, "cognitomcp e2e (TypeScript SDK)", id.MCPClient.Name)
		assert.False(t, alice.AdminReport.IsError, "alice is in admin: %s", alice.AdminReport.Text)
	})

	t.Run("alice/refresh", func(t *testing.T) {
		reqs := alice.RefreshRequests
		require.NotEmpty(t, reqs)
		first, last := reqs[0], reqs[len(reqs)-1]
		assert.Equal(t, [3]any{"POST", srv.mcpURL, 401}, [3]any{first.Method, first.URL, first.Status}, "the broken access token is refused")
		var refreshes int
		for _, r := range reqs {
			assert.NotEqual(t, "authorization_code", r.GrantType, "a refresh, not a new sign-in")
			assert.NotEqual(t, "/register", r.Path, "a refresh, not a new registration")
			if r.Path == "/token" && r.GrantType == "refresh_token" {
				refreshes++
				assert.Equal(t, 200, r.Status)
			}
		}
		assert.Equal(t, 1, refreshes, "one refresh_token grant: %+v", reqs)
		assert.Equal(t, [4]any{"POST", srv.mcpURL, true, 200}, [4]any{last.Method, last.URL, last.Auth, last.Status}, "the call is retried with the new token")
		assert.True(t, alice.AccessTokenRenewed, "the provider holds a new access token")
		assert.Empty(t, alice.Invalidated, "no credentials dropped")
		require.False(t, alice.WhoamiAfterRefresh.IsError, alice.WhoamiAfterRefresh.Text)
		before, after := alice.Whoami.identity(t), alice.WhoamiAfterRefresh.identity(t)
		assert.Equal(t, before.Sub, after.Sub)
		assert.Equal(t, []string{"admin"}, after.Groups)
		assert.Equal(t, alice.ClientID, after.MCPClient.ID)
	})

	t.Run("bob/tools", func(t *testing.T) {
		id := bob.Whoami.identity(t)
		assert.Equal(t, "bob", id.Username)
		assert.Empty(t, id.Groups)
		assert.NotEqual(t, alice.Whoami.identity(t).Sub, id.Sub)
		assert.Equal(t, bob.ClientID, id.MCPClient.ID)
		assert.NotEqual(t, alice.ClientID, bob.ClientID, "each SDK client registers")
		assert.True(t, bob.AdminReport.IsError, "admin_report must refuse bob: %s", bob.AdminReport.Text)
		assert.Contains(t, bob.AdminReport.Text, `group "admin"`, "the error says which group is missing")
	})
}

// checkAuthorization asserts what the SDK and the browser did to sign in.
func checkAuthorization(t *testing.T, srv *exampleServer, run clientRun) {
	// The SDK: 401 → PRM → AS metadata → /register → (browser) → /token → MCP with a token.
	reqs := run.Requests
	require.NotEmpty(t, reqs)
	assert.Equal(t, [4]any{"POST", "initialize", false, 401}, [4]any{reqs[0].Method, reqs[0].RPC, reqs[0].Auth, reqs[0].Status},
		"the first request is an initialize without a token, refused")
	order := []struct {
		name  string
		match func(clientRequest) bool
	}{
		{"GET protected resource metadata", func(r clientRequest) bool {
			return r.Method == "GET" && r.Path == "/.well-known/oauth-protected-resource/mcp" && r.Status == 200
		}},
		{"GET authorization server metadata", func(r clientRequest) bool {
			return r.Method == "GET" && r.Path == "/.well-known/oauth-authorization-server" && r.Status == 200
		}},
		{"POST /register", func(r clientRequest) bool { return r.Method == "POST" && r.Path == "/register" && r.Status == 201 }},
		{"POST /token (authorization_code)", func(r clientRequest) bool {
			return r.Path == "/token" && r.GrantType == "authorization_code" && r.Status == 200
		}},
		{"initialize with a token", func(r clientRequest) bool {
			return r.URL == srv.mcpURL && r.RPC == "initialize" && r.Auth && r.Status == 200
		}},
		{"tools/list", func(r clientRequest) bool { return r.RPC == "tools/list" && r.Status == 200 }},
		{"tools/call", func(r clientRequest) bool { return r.RPC == "tools/call" && r.Status == 200 }},
	}
	at := 1
	for _, step := range order {
		i := slices.IndexFunc(reqs[at:], step.match)
		if !assert.GreaterOrEqual(t, i, 0, "%s missing or out of order in %+v", step.name, reqs) {
			return
		}
		at += i + 1
	}
	registrations := 0
	for _, r := range reqs {
		if r.Path == "/register" {
			registrations++
		}
		assert.Truef(t, strings.HasPrefix(r.URL, srv.baseURL+"/"), "the SDK only talks to the proxy: %s", r.URL)
	}
	assert.Equal(t, 1, registrations)

	au, err := url.Parse(run.AuthorizationURL)
	require.NoError(t, err)
	q := au.Query()
	assert.Equal(t, srv.baseURL+"/authorize", au.Scheme+"://"+au.Host+au.Path)
	assert.Equal(t, "S256", q.Get("code_challenge_method"))
	assert.Equal(t, srv.mcpURL, q.Get("resource"))
	assert.Equal(t, run.ClientID, q.Get("client_id"))

	// The browser: consent → Cognito's form → callback → the redirect URI.
	want := []string{
		"GET proxy /authorize 302", "GET proxy /consent 200", "POST proxy /consent 302",
		"GET cognito /oauth2/authorize 302", "GET cognito /login 200", "POST cognito /login 302",
		"GET proxy /auth/callback 302",
	}
	var got []string
	for _, h := range run.Hops {
		host := "cognito"
		if strings.HasPrefix(h.URL, srv.baseURL+"/") {
			host = "proxy"
		}
		got = append(got, h.Method+" "+host+" "+h.Path+" "+strconv.Itoa(h.Status))
	}
	assert.Equal(t, want, got)
	if n := len(run.Hops); n > 0 {
		assert.True(t, strings.HasPrefix(run.Hops[n-1].Location, "http://127.0.0.1:9/callback?"), run.Hops[n-1].Location)
	}
	assert.True(t, run.Consent.Seen)
	assert.Equal(t, "cognitomcp e2e (TypeScript SDK)", run.Consent.ClientName)
	assert.Equal(t, []string{"openid", "email", "profile"}, run.Consent.Scopes)
	assert.NotEmpty(t, run.Callback["code"])
	assert.NotEmpty(t, run.Callback["state"], "client.mjs checked it is the state it sent")
	assert.Equal(t, srv.baseURL, run.Callback["iss"], "RFC 9207 iss")
	assert.Equal(t, "bearer", strings.ToLower(run.TokenType))
	assert.True(t, run.HasRefreshToken)
}

// clientRun is what client.mjs reports for one user.
type clientRun struct {
	User             string            `json:"user"`
	ClientID         string            `json:"client_id"`
	AuthorizationURL string            `json:"authorization_url"`
	Callback         map[string]string `json:"callback"`
	Consent          struct {
		Seen       bool     `json:"seen"`
		ClientName string   `json:"client_name"`
		Scopes     []string `json:"scopes"`
	} `json:"consent"`
	Hops []struct {
		Method, URL, Path, Location string
		Status                      int
	} `json:"hops"`
	Requests           []clientRequest `json:"requests"`
	TokenType          string          `json:"token_type"`
	HasRefreshToken    bool            `json:"has_refresh_token"`
	Tools              []string        `json:"tools"`
	Whoami             toolOutcome     `json:"whoami"`
	AdminReport        toolOutcome     `json:"admin_report"`
	WhoamiAfterRefresh toolOutcome     `json:"whoami_after_refresh"`
	RefreshRequests    []clientRequest `json:"refresh_requests"`
	AccessTokenRenewed bool            `json:"access_token_renewed"`
	Invalidated        []string        `json:"invalidated"`
}

// clientRequest is one HTTP request the SDK made.
type clientRequest struct {
	Method    string `json:"method"`
	URL       string `json:"url"`
	Path      string `json:"path"`
	Auth      bool   `json:"auth"` // an Authorization header was sent
	RPC       string `json:"rpc"`  // the JSON-RPC method of an MCP POST
	GrantType string `json:"grant_type"`
	Status    int    `json:"status"`
}

// toolOutcome is a tools/call result.
type toolOutcome struct {
	IsError bool            `json:"isError"`
	Text    string          `json:"text"`
	Data    json.RawMessage `json:"data"`
}

// whoamiIdentity is what the example's whoami tool answers.
type whoamiIdentity struct {
	Sub       string   `json:"sub"`
	Username  string   `json:"username"`
	Groups    []string `json:"groups"`
	Scopes    []string `json:"scopes"`
	MCPClient struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"mcp_client"`
}

func (o toolOutcome) identity(t *testing.T) whoamiIdentity {
	t.Helper()
	require.False(t, o.IsError, "whoami failed: %s", o.Text)
	var id whoamiIdentity
	require.NoError(t, json.Unmarshal(o.Data, &id), "whoami answered %s", o.Text)
	return id
}

// runClient runs client.mjs against srv with the demo users and decodes
// its report.
func runClient(t *testing.T, modules string, srv *exampleServer) clientReport {
	t.Helper()
	// ESM ignores NODE_PATH: the script runs from a directory whose
	// node_modules is a link to the installed SDK.
	dir := t.TempDir()
	script, err := os.ReadFile("client.mjs")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.mjs"), script, 0o644))
	require.NoError(t, os.Symlink(modules, filepath.Join(dir, "node_modules")))

	users, err := json.Marshal([]map[string]string{
		{"username": "alice", "password": srv.passwords["alice"]},
		{"username": "bob", "password": srv.passwords["bob"]},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs", srv.mcpURL)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2E_USERS="+string(users), "E2E_STEP_TIMEOUT_MS=20000")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("client.mjs stderr:\n%s", stderr.String())
	require.NoError(t, err, "node client.mjs failed (stdout: %s)", stdout.String())
	var res clientReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "client.mjs printed: %s", stdout.String())
	return res
}

type clientReport struct {
	Runs []clientRun `json:"runs"`
}

// sdkPackage is the npm package the test runs; its version is the one
// package.json pins.
const sdkPackage = "@modelcontextprotocol/sdk"

// nodeModules returns a node_modules directory holding the pinned SDK:
// COGNITOMCP_NODE_MODULES (set by scripts/test.sh), else one this test
// installs with npm into COGNITOMCP_NODE_DIR (default .cache/node at the
// module root, the folder scripts/test.sh uses).
func nodeModules(t *testing.T) string {
	t.Helper()
	var manifest struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	pkg, err := os.ReadFile("package.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(pkg, &manifest))
	want := manifest.Dependencies[sdkPackage]
	require.NotEmpty(t, want, "package.json must pin %s", sdkPackage)

	checkNode(t)
	if dir := os.Getenv("COGNITOMCP_NODE_MODULES"); dir != "" {
		got := installedVersion(dir)
		require.Equal(t, want, got, "COGNITOMCP_NODE_MODULES=%s must hold %s@%s (re-run scripts/test.sh)", dir, sdkPackage, want)
		return dir
	}

	dir := os.Getenv("COGNITOMCP_NODE_DIR")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), ".cache", "node")
	}
	modules := filepath.Join(dir, "node_modules")
	if old, _ := os.ReadFile(filepath.Join(dir, "package.json")); bytes.Equal(old, pkg) && installedVersion(modules) == want {
		return modules
	}
	if _, err := exec.LookPath("npm"); err != nil {
		unavailable(t, "npm not found: install Node.js 20+ with npm (apt-get install nodejs npm) to run the TypeScript SDK client")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "package.json"), pkg, 0o644))
	if lock, err := os.ReadFile("package-lock.json"); err == nil {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "package-lock.json"), lock, 0o644))
	}
	t.Logf("npm install into %s", dir)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		unavailable(t, "npm install %s@%s in %s failed (%v): %s", sdkPackage, want, dir, err, out)
	}
	require.Equal(t, want, installedVersion(modules), "npm installed another version of %s", sdkPackage)
	return modules
}

// checkNode skips (or fails) unless node 20 or later is on PATH.
func checkNode(t *testing.T) {
	t.Helper()
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		unavailable(t, "node not found: install Node.js 20+ with npm (apt-get install nodejs npm) to run the TypeScript SDK client")
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0]); major < 20 {
		unavailable(t, "node %s is too old: the TypeScript SDK client needs Node.js 20+", v)
	}
}

// installedVersion is the version of the SDK in a node_modules directory,
// or "" if it is not there.
func installedVersion(modules string) string {
	b, err := os.ReadFile(filepath.Join(modules, sdkPackage, "package.json"))
	if err != nil {
		return ""
	}
	var p struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(b, &p)
	return p.Version
}

// exampleServer is examples/server running in fake-Cognito mode.
type exampleServer struct {
	baseURL, mcpURL string
	passwords       map[string]string // demo user → password
	stderr          *syncBuffer
}

var (
	demoUserLine = regexp.MustCompile(`^\s*user (\w+) .*password (\S+)$`)
	listeningOn  = regexp.MustCompile(`^listening on (\S+)$`)
	mcpEndpoint  = regexp.MustCompile(`^MCP endpoint: (\S+)$`)
)

// startExampleServer builds examples/server (with -race when this test
// has it), runs it on a free loopback port with no Cognito configured, and
// waits for "listening on". The server gets SIGINT at cleanup and must
// exit cleanly.
func startExampleServer(t *testing.T) *exampleServer {
	t.Helper()
	started := time.Now()
	bin := filepath.Join(t.TempDir(), "server")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append(args, "./examples/server")...)
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/server: %v\n%s", err, out)
	}

	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(), "ADDR=127.0.0.1:0", "LOG_LEVEL=debug")
	srv := &exampleServer{passwords: map[string]string{}, stderr: &syncBuffer{}}
	cmd.Stderr = srv.stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := demoUserLine.FindStringSubmatch(line); m != nil {
				srv.passwords[m[1]] = m[2]
			} else if m := mcpEndpoint.FindStringSubmatch(line); m != nil {
				srv.mcpURL = m[1]
			} else if m := listeningOn.FindStringSubmatch(line); m != nil {
				srv.baseURL = m[1]
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stopping := time.Now()
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			assert.NoError(t, err, "examples/server must exit cleanly on SIGINT")
			t.Logf("examples/server stopped in %v", time.Since(stopping).Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("examples/server did not exit within 15s of SIGINT")
		}
		log := srv.stderr.String()
		assert.NotContains(t, log, "DATA RACE")
		if t.Failed() {
			t.Logf("examples/server log:\n%s", log)
		}
	})

	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("examples/server exited before listening (%v):\n%s", err, srv.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("examples/server printed no \"listening on\" line within 30s:\n%s", srv.stderr.String())
	}
	require.NotEmpty(t, srv.passwords["alice"], "examples/server printed no password for alice")
	require.NotEmpty(t, srv.passwords["bob"], "examples/server printed no password for bob")
	require.Equal(t, srv.baseURL+"/mcp", srv.mcpURL, "MCP endpoint line")
	t.Logf("examples/server built and listening on %s in %v", srv.baseURL, time.Since(started).Round(time.Millisecond))
	return srv
}

// cleanEnv is this process's environment without what would take the
// example server out of its fake-Cognito mode or off a free port.
func cleanEnv() []string {
	drop := []string{"BASE_URL=", "ADDR=", "REDIS_URL=", "DEMO_AUTO_LOGIN=", "ALLOWED_REDIRECT_URIS=", "ALLOWED_ORIGINS=",
		"JWT_SIGNING_KEY=", "STORAGE_ENCRYPTION_KEY=", "COGNITOMCP_MASTER_SECRET=", "LOG_LEVEL=", "COGNITO_"}
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(kv, p) })
	})
}

// TestTypeScriptSDKRateLimitedRefresh: when the proxy's /token is over its
// rate limit, the official TypeScript SDK reports the error to its caller
// (who retries later) instead of reading it as the server's and sending the
// user back to sign in, which it did on the slow_down the proxy answered
// before.
func TestTypeScriptSDKRateLimitedRefresh(t *testing.T) {
	modules := nodeModules(t)
	f := newBrowserFixtureWith(t, func(cfg *cognitomcp.ProxyConfig) { cfg.RateLimits.Token = 1 })
	c := f.register(t, "Rate-Limited Client")
	// The one request a minute this address may make at /token.
	resp, err := httpClient.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {c.id}})
	require.NoError(t, err)
	resp.Body.Close()
	require.NotEqual(t, http.StatusTooManyRequests, resp.StatusCode)

	dir := t.TempDir()
	script, err := os.ReadFile("ratelimited.mjs")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ratelimited.mjs"), script, 0o644))
	require.NoError(t, os.Symlink(modules, filepath.Join(dir, "node_modules")))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "ratelimited.mjs", f.proxy.Resource(), c.id)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var got struct {
		Result, Error, ErrorName string
		Redirected               bool
	}
	require.NoError(t, json.Unmarshal(stdout, &got), string(stdout))
	assert.False(t, got.Redirected, "the SDK sent the user back to sign in: %+v", got)
	assert.Equal(t, "TemporarilyUnavailableError", got.ErrorName, "%+v", got)
	assert.Contains(t, f.logs.String(), "status=429")
}
