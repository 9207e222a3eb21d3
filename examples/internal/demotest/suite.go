package demotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
	"github.com/cognitomcp/cognitomcp/examples/internal/demo"
	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

// Suite runs every test here on an example: program is its path
// ("examples/server"), newMCP the constructor of its MCP handler.
func Suite(t *testing.T, program string, newMCP func(demo.MCPConfig) http.Handler) {
	quiet := demo.MCPConfig{Logger: slog.New(slog.DiscardHandler)}
	t.Run("end to end", func(t *testing.T) { TestExample(t, program) })
	t.Run("drains on SIGTERM", TestExampleDrains)
	t.Run("JSON logs", TestExampleJSONLogs)
	t.Run("with Redis", TestExampleWithRedis)
	t.Run("replicas", TestExampleReplicas)
	t.Run("sessions bound to the user", TestExampleSessionsBoundToUser)
	t.Run("tools", func(t *testing.T) { TestTools(t, newMCP(quiet)) })
	// With REDIS_URL (Stateless) no request needs the replica that
	// answered the one before.
	t.Run("tools across replicas", func(t *testing.T) {
		stateless := quiet
		stateless.Stateless = true
		TestToolsAcrossReplicas(t, newMCP(stateless), newMCP(stateless))
	})
}

// TestExample runs an example program (the re-executed test binary, named
// program in its messages) end to end on the fake Cognito: its banner, the
// metadata, the 401 challenge, a sign-in and both tools as alice, a bad
// configuration (exit 2) and SIGTERM (exit 0).
func TestExample(t *testing.T, program string) {
	s := Start(t, "DEMO_AUTO_LOGIN=alice")

	t.Run("prints the users and how to connect", func(t *testing.T) {
		out := s.Stdout()
		assert.Contains(t, out, "fake cognito: http://127.0.0.1:")
		assert.Regexp(t, `(?m)user alice \(groups: admin\), +password \S{16}$`, out)
		assert.Regexp(t, `(?m)user bob +\(groups: none\), +password \S{16}$`, out)
		assert.Contains(t, out, "npx @modelcontextprotocol/inspector")
		assert.Contains(t, out, "URL "+s.URL+"/mcp")
	})

	t.Run("probes answer without a token", func(t *testing.T) {
		assert.Equal(t, http.StatusOK, probe(t, s.URL+"/healthz"))
		assert.Equal(t, http.StatusOK, probe(t, s.URL+"/readyz"))
	})

	t.Run("protected resource metadata", func(t *testing.T) {
		resp, err := http.Get(s.URL + "/.well-known/oauth-protected-resource/mcp")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&prm))
		assert.Equal(t, s.URL+"/mcp", prm.Resource)
		assert.Equal(t, []string{s.URL}, prm.AuthorizationServers)
	})

	t.Run("MCP without a token gets a challenge", func(t *testing.T) {
		resp, err := http.Post(s.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"),
			`Bearer resource_metadata="`+s.URL+`/.well-known/oauth-protected-resource/mcp"`)
	})

	t.Run("alice signs in and calls the tools", func(t *testing.T) {
		token := s.Login(t, "Example Test Client")

		res := s.CallTool(t, token, "whoami")
		require.False(t, res.IsError, Text(t, res))
		var who whoami
		require.NoError(t, json.Unmarshal([]byte(Text(t, res)), &who))
		assert.NotEmpty(t, who.Sub)
		assert.Equal(t, "alice", who.Username)
		assert.Equal(t, []string{"admin"}, who.Groups)
		assert.Equal(t, "alice@example.com", who.Email)
		assert.Subset(t, who.Scopes, []string{"openid", "email", "profile"})
		require.NotNil(t, who.MCPClient)
		assert.NotEmpty(t, who.MCPClient.ID)
		assert.Equal(t, "Example Test Client", who.MCPClient.Name)

		res = s.CallTool(t, token, "admin_report")
		assert.False(t, res.IsError, Text(t, res))
		assert.Contains(t, Text(t, res), `"requested_by":"alice"`)
	})

	t.Run("an MCP body over 4 MiB is refused", func(t *testing.T) {
		token := s.Login(t, "Big Body Client")
		// An initialize, which either SDK would answer 200 if it read it.
		body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},` +
			`"clientInfo":{"name":"big","version":"1"},"pad":"` + strings.Repeat("x", 5<<20) + `"}}`
		req, err := http.NewRequest(http.MethodPost, s.URL+"/mcp", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err == nil { // the server may close the connection before the client has sent it all
			resp.Body.Close()
			assert.True(t, resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusBadRequest, "status %d", resp.StatusCode)
		}
		assert.Equal(t, http.StatusOK, probe(t, s.URL+"/healthz"), "still serving")
		res := s.CallTool(t, token, "whoami")
		assert.False(t, res.IsError, "a request of ordinary size still works: %s", Text(t, res))
	})

	t.Run("SIGTERM shuts down cleanly, open streams included", func(t *testing.T) {
		s.OpenSession(t, s.Login(t, "Streaming Client")) // holds a GET event stream open
		start := time.Now()
		s.Stop(t)
		assert.Less(t, time.Since(start), 5*time.Second, "an idle event stream must not hold up shutdown")
	})

	t.Run("bad configuration exits 2 with one line", func(t *testing.T) {
		stderr, code := Run(t, "COGNITO_USER_POOL_ID=eu-west-1_AbCdEf123")
		assert.Equal(t, 2, code)
		assert.Equal(t, program+": COGNITO_CLIENT_ID is required when COGNITO_USER_POOL_ID is set\n", stderr)
	})

	t.Run("a public BASE_URL without Cognito or keys exits 2 with one line", func(t *testing.T) {
		stderr, code := Run(t, "BASE_URL=https://public.example", "ADDR=127.0.0.1:0")
		assert.Equal(t, 2, code)
		assert.Equal(t, program+`: COGNITO_USER_POOL_ID (or COGNITO_ISSUER_URL) is required when BASE_URL ("https://public.example") is not on loopback: the fake Cognito is for local runs only`+"\n", stderr)

		stderr, code = Run(t, "BASE_URL=https://public.example", "ADDR=127.0.0.1:0", "COGNITO_USER_POOL_ID=eu-west-1_AbCdEf123", "COGNITO_CLIENT_ID=app")
		assert.Equal(t, 2, code)
		assert.True(t, strings.HasPrefix(stderr, program+": COGNITOMCP_MASTER_SECRET, or JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY, are required"), stderr)
		assert.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	})
}

// TestExampleDrains runs an example program with SHUTDOWN_DELAY, as behind
// a load balancer, and sends it SIGTERM: /readyz turns 503 while the server
// goes on serving, /healthz and sign-in routes included, until the delay
// ends; then it exits cleanly.
func TestExampleDrains(t *testing.T) {
	const delay = 4 * time.Second
	s := Start(t, "SHUTDOWN_DELAY="+delay.String())
	require.Equal(t, http.StatusOK, probe(t, s.URL+"/readyz"))

	start := time.Now()
	s.Signal(t)
	// The kubelet polls readiness too; the signal reaches the server when it will.
	require.Eventually(t, func() bool { return probe(t, s.URL+"/readyz") == http.StatusServiceUnavailable },
		delay/2, 10*time.Millisecond, "/readyz still ready after SIGTERM")
	assert.Equal(t, http.StatusOK, probe(t, s.URL+"/healthz"), "alive while draining")
	assert.Equal(t, http.StatusOK, probe(t, s.URL+"/.well-known/oauth-protected-resource/mcp"), "serving while draining")
	assert.Equal(t, http.StatusOK, probe(t, s.URL+"/.well-known/oauth-authorization-server"), "sign-in metadata while draining")
	assert.Equal(t, http.StatusBadRequest, probe(t, s.URL+"/authorize"), "/authorize answers (no client named) while draining")
	s.Wait(t)
	assert.GreaterOrEqual(t, time.Since(start), delay, "exited before SHUTDOWN_DELAY ended")
	assert.Contains(t, s.Stderr(), `msg="shutting down: /readyz answers 503" delay=4s timeout=20s`)
}

// TestExampleJSONLogs runs an example program with LOG_FORMAT=json: every
// line of its log is JSON, through a sign-in and shutdown, and so are
// go-redis's lines and the error it exits with (here, Sentinels that do not
// answer: a REDIS_URL with master_name is dialed as Sentinels).
func TestExampleJSONLogs(t *testing.T) {
	s := Start(t, "LOG_FORMAT=json", "DEMO_AUTO_LOGIN=alice")
	res := s.CallTool(t, s.Login(t, "JSON Client"), "whoami")
	require.False(t, res.IsError, Text(t, res))
	s.Stop(t)
	lines := jsonLines(t, s.Stderr())
	assert.Contains(t, lines, "cognitomcp: user signed in")
	assert.Contains(t, lines, "shutting down: /readyz answers 503")

	stderr, code := Run(t, "LOG_FORMAT=json", "ADDR=127.0.0.1:0", "REDIS_URL=redis://"+freeAddr(t)+"/0?master_name=mymaster&max_retries=-1&dialer_retries=1")
	assert.Equal(t, 1, code, stderr)
	lines = jsonLines(t, stderr)
	assert.True(t, slices.ContainsFunc(lines, func(m string) bool { return strings.HasPrefix(m, "sentinel: ") }), "go-redis's lines: %q", lines)
	assert.True(t, strings.HasSuffix(lines[len(lines)-1], "exiting"), "the exit error: %q", lines)
}

// jsonLines requires every line of log to be a JSON object with a msg and
// returns the messages.
func jsonLines(t *testing.T, log string) []string {
	t.Helper()
	var msgs []string
	for line := range strings.Lines(log) {
		var entry struct {
			Msg string `json:"msg"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &entry), "not JSON: %s", line)
		require.NotEmpty(t, entry.Msg, line)
		msgs = append(msgs, entry.Msg)
	}
	require.NotEmpty(t, msgs)
	return msgs
}

// probe GETs u on a connection of its own, as a kubelet does, and returns
// the status.
func probe(t *testing.T, u string) int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: Timeout}
	resp, err := client.Get(u)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestExampleSessionsBoundToUser runs an example program without
// DEMO_AUTO_LOGIN, so that alice and bob both sign in, and replays the
// Mcp-Session-Id of alice's session with bob's token (MCP checklist A5: a
// session is bound to its user). Bob's tool call, event stream and DELETE
// are refused; alice's session serves her still, and she can end it.
func TestExampleSessionsBoundToUser(t *testing.T) {
	s := Start(t)
	alice := s.LoginAs(t, "Alice's Client", "alice")
	bob := s.LoginAs(t, "Bob's Client", "bob")

	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "demotest", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearer(alice)}, DisableStandaloneSSE: true},
		&mcp.ClientSessionOptions{ProtocolVersion: sessionProtocol})
	require.NoError(t, err)
	defer session.Close()
	id := session.ID()
	require.NotEmpty(t, id, "no MCP session")
	require.Equal(t, http.StatusOK, sessionRequest(t, s, alice, id, http.MethodPost), "alice's own session")

	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		t.Run("bob's "+method+" with alice's session is refused", func(t *testing.T) {
			status := sessionRequest(t, s, bob, id, method)
			assert.True(t, status >= 400 && status < 500, "status %d", status)
		})
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	require.NoError(t, err, "alice's session after bob's attempts")
	assert.Contains(t, Text(t, res), `"username":"alice"`)
	status := sessionRequest(t, s, alice, id, http.MethodDelete)
	assert.True(t, status >= 200 && status < 300, "alice ends her session: status %d", status)
}

// sessionProtocol is the last MCP version with sessions (Mcp-Session-Id).
const sessionProtocol = "2025-11-25"

// sessionRequest sends method to the MCP endpoint in the session id with
// token, a whoami tool call for a POST, and returns the status. It does not
// read the body: a GET that is served is an endless event stream.
func sessionRequest(t *testing.T, s *Server, token, id, method string) int {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
	}
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+"/mcp", body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Mcp-Session-Id", id)
	req.Header.Set("Mcp-Protocol-Version", sessionProtocol)
	req.Header.Set("Accept", "application/json, text/event-stream")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestExampleWithRedis runs an example program with REDIS_URL and keys from
// the environment: its state goes to Redis and no key is generated.
func TestExampleWithRedis(t *testing.T) {
	r := testredis.Start(t)
	key := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	s := Start(t, "DEMO_AUTO_LOGIN=alice", "REDIS_URL=redis://"+r.Addr+"/0",
		"JWT_SIGNING_KEY="+key(1), "STORAGE_ENCRYPTION_KEY="+key(2))

	res := s.CallTool(t, s.Login(t, "Redis Client"), "whoami")
	require.False(t, res.IsError, Text(t, res))
	assert.Contains(t, Text(t, res), `"username":"alice"`)

	keys, err := r.Client(t).Keys(t.Context(), "cognitomcp:*").Result()
	require.NoError(t, err)
	assert.NotEmpty(t, keys, "the proxy's state is in Redis")
	assert.NotContains(t, s.Stderr(), "keys generated at startup")
	s.Stop(t)
}

// TestExampleReplicas runs two replicas of an example program as a
// multi-replica deployment would: one Cognito, one Redis, the same
// JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY (no COGNITOMCP_MASTER_SECRET),
// and a load balancer without sticky sessions in front, which sends each
// request to the other replica. A sign-in whose steps alternate between the
// replicas completes, and an MCP client's requests succeed whichever replica
// each reaches.
func TestExampleReplicas(t *testing.T) {
	r := testredis.Start(t)
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: rand.Text(), Email: "alice@example.com",
		EmailVerified: true, Groups: []string{"admin"}})
	pool.SetAutoLogin("alice")

	replicas := []*url.URL{{Scheme: "http", Host: freeAddr(t)}, {Scheme: "http", Host: freeAddr(t)}}
	var requests atomic.Uint64
	lb := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(replicas[requests.Add(1)%uint64(len(replicas))])
		pr.Out.Host = pr.In.Host
	}})
	t.Cleanup(lb.Close)
	app := pool.AddClient(cognitotest.Client{Secret: rand.Text(), CallbackURLs: []string{lb.URL + "/auth/callback"},
		AllowedScopes: []string{"openid", "email", "profile"}})

	key := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	env := []string{"BASE_URL=" + lb.URL, "COGNITO_ISSUER_URL=" + pool.Issuer, "COGNITO_CLIENT_ID=" + app.ID,
		"COGNITO_CLIENT_SECRET=" + app.Secret, "REDIS_URL=redis://" + r.Addr + "/0",
		"JWT_SIGNING_KEY=" + key(1), "STORAGE_ENCRYPTION_KEY=" + key(2)}
	var servers []*Server
	for _, u := range replicas {
		servers = append(servers, Start(t, append(env, "ADDR="+u.Host)...))
	}

	token := login(t, lb.URL, "Replicated Client", nil)
	res := callTool(t, lb.URL+"/mcp", token, "whoami")
	require.False(t, res.IsError, Text(t, res))
	assert.Contains(t, Text(t, res), `"username":"alice"`)
	res = callTool(t, lb.URL+"/mcp", token, "admin_report")
	assert.False(t, res.IsError, Text(t, res))
	for _, s := range servers {
		assert.Contains(t, s.Stderr(), "request admitted", "MCP requests reach every replica")
		assert.NotContains(t, s.Stderr(), "keys generated at startup")
		s.Stop(t)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

type whoami struct {
	Sub       string   `json:"sub"`
	Username  string   `json:"username"`
	Groups    []string `json:"groups"`
	Scopes    []string `json:"scopes"`
	Email     string   `json:"email"`
	MCPClient *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"mcp_client"`
}

// TestToolsAcrossReplicas calls an example's whoami tool through replicas
// of its MCP handler (built as with REDIS_URL), sending each request to the
// next replica, as a load balancer without sticky sessions does: each
// request is answered whichever replica it reaches.
func TestToolsAcrossReplicas(t *testing.T, replicas ...http.Handler) {
	require.GreaterOrEqual(t, len(replicas), 2)
	var requests atomic.Uint64
	lb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		replicas[requests.Add(1)%uint64(len(replicas))].ServeHTTP(w, r)
	})
	claims := &cognitomcp.Claims{Subject: "sub-1", Username: "u", Scopes: []string{"openid"}, Expiry: time.Now().Add(time.Hour)}
	res := CallInProcess(t, lb, claims, "whoami")
	require.False(t, res.IsError, Text(t, res))
	assert.Contains(t, Text(t, res), `"sub":"sub-1"`)
	assert.GreaterOrEqual(t, requests.Load(), uint64(len(replicas)), "every replica served a request")
}

// TestTools calls an example's tools in process (no proxy: the claims are
// put in the context directly) for users in and out of the admin group.
func TestTools(t *testing.T, mcpHandler http.Handler) {
	claims := func(groups ...string) *cognitomcp.Claims {
		return &cognitomcp.Claims{Subject: "sub-1", Username: "u", Groups: groups, Scopes: []string{"openid"},
			Email: "u@example.com", Expiry: time.Now().Add(time.Hour),
			MCPClient: &cognitomcp.ClientInfo{ID: "client-1", Name: "Client One"}}
	}
	tests := []struct {
		name    string
		tool    string
		claims  *cognitomcp.Claims
		isError bool
		text    string
	}{
		{"whoami", "whoami", claims("dev"),
			false, `{"sub":"sub-1","username":"u","groups":["dev"],"scopes":["openid"],"email":"u@example.com","mcp_client":{"id":"client-1","name":"Client One"}}`},
		{"whoami without groups", "whoami", claims(), false, `"groups":[]`},
		{"admin_report as admin", "admin_report", claims("staff", "admin"), false, `"requested_by":"u"`},
		{"admin_report without groups", "admin_report", claims(),
			true, `admin_report requires membership in the Cognito group "admin"; you are in: (none)`},
		{"admin_report in other groups", "admin_report", claims("staff", "dev"),
			true, `admin_report requires membership in the Cognito group "admin"; you are in: staff, dev`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := CallInProcess(t, mcpHandler, tc.claims, tc.tool)
			assert.Equal(t, tc.isError, res.IsError)
			if strings.HasPrefix(tc.text, "{") { // the whole answer; the SDKs order keys differently
				assert.JSONEq(t, tc.text, Text(t, res))
			} else {
				assert.Contains(t, Text(t, res), tc.text)
			}
		})
	}
}
