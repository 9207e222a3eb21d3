package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// TestSetKeys: fixed keys give every process the same keys, the cookie key
// included (replicas sharing REDIS_URL, or a restart, accept each other's
// sign-in and consent cookies), and generated reports exactly when some key
// is random.
func TestSetKeys(t *testing.T) {
	key := func(b byte) [][]byte { return [][]byte{bytes.Repeat([]byte{b}, 32)} }
	tests := []struct {
		name      string
		cfg       config
		generated bool
	}{
		{"nothing set", config{}, true},
		{"master secret", config{MasterSecret: key(3)[0]}, false},
		{"signing and encryption keys: cookie key derived from them", config{SigningKeys: key(1), EncryptionKeys: key(2)}, false},
		{"all three", config{SigningKeys: key(1), EncryptionKeys: key(2), MasterSecret: key(3)[0]}, false},
		{"signing key only", config{SigningKeys: key(1)}, true},
		{"encryption key only", config{EncryptionKeys: key(2)}, true},
		{"key lists", config{SigningKeys: append(key(1), key(4)...), EncryptionKeys: append(key(2), key(5)...)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.generated, tc.cfg.generatesKeys(), "what loadConfig checks")
			a, b := expandedKeys(t, tc.cfg), expandedKeys(t, tc.cfg) // two processes
			if tc.generated {
				assert.NotEqual(t, a.CookieKeys, b.CookieKeys)
			} else {
				assert.Equal(t, a, b, "another replica, or a restart, has the same keys")
			}
		})
	}

	t.Run("a new signing key is a new cookie key", func(t *testing.T) {
		k1, err := cookieKeyOf(key(1)[0], key(2)[0])
		require.NoError(t, err)
		k2, err := cookieKeyOf(key(4)[0], key(2)[0])
		require.NoError(t, err)
		assert.NotEqual(t, k1, k2)
	})
}

// expandedKeys is the KeyConfig setKeys gives cfg, as NewProxy validates
// and derives it, and whether setKeys generated a key.
func expandedKeys(t *testing.T, cfg config) cognitomcp.KeyConfig {
	t.Helper()
	var pcfg cognitomcp.ProxyConfig
	generated, err := setKeys(cfg, &pcfg)
	require.NoError(t, err)
	assert.Equal(t, cfg.generatesKeys(), generated)
	keys, err := pcfg.Keys.Expanded()
	require.NoError(t, err)
	return keys
}

// TestSetKeysRotation rolls out a new JWT_SIGNING_KEY, then a new
// STORAGE_ENCRYPTION_KEY, as the README says, in three deploys each: add the
// new key after the old, move it first, drop the old. During each deploy
// replicas of the one before and the one after run side by side, so each
// must verify or open every token, record and cookie the other makes with
// its first keys; and once the new key is first, it is the one in use.
func TestSetKeysRotation(t *testing.T) {
	k := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	oldSig, newSig, oldEnc, newEnc := k(1), k(2), k(3), k(4)
	deploys := []config{
		{SigningKeys: [][]byte{oldSig}, EncryptionKeys: [][]byte{oldEnc}},
		{SigningKeys: [][]byte{oldSig, newSig}, EncryptionKeys: [][]byte{oldEnc}},
		{SigningKeys: [][]byte{newSig, oldSig}, EncryptionKeys: [][]byte{oldEnc}},
		{SigningKeys: [][]byte{newSig}, EncryptionKeys: [][]byte{oldEnc}},
		{SigningKeys: [][]byte{newSig}, EncryptionKeys: [][]byte{oldEnc, newEnc}},
		{SigningKeys: [][]byte{newSig}, EncryptionKeys: [][]byte{newEnc, oldEnc}},
		{SigningKeys: [][]byte{newSig}, EncryptionKeys: [][]byte{newEnc}},
	}
	for i := 1; i < len(deploys); i++ {
		before, after := expandedKeys(t, deploys[i-1]), expandedKeys(t, deploys[i])
		for _, pair := range [][2]cognitomcp.KeyConfig{{before, after}, {after, before}} {
			maker, reader := pair[0], pair[1]
			assert.Contains(t, reader.SigningKeys, maker.SigningKeys[0], "deploy %d: a token", i)
			assert.Contains(t, reader.EncryptionKeys, maker.EncryptionKeys[0], "deploy %d: a record", i)
			assert.True(t, slices.ContainsFunc(reader.CookieKeys, func(c []byte) bool { return bytes.Equal(c, maker.CookieKeys[0]) }),
				"deploy %d: a cookie", i)
		}
	}
	assert.Equal(t, newSig, expandedKeys(t, deploys[2]).SigningKeys[0].Secret, "moved first, the new key signs")
	assert.Equal(t, newEnc, expandedKeys(t, deploys[5]).EncryptionKeys[0].Key, "moved first, the new key seals")
}

// TestProbes: /healthz and /readyz answer GET and HEAD by themselves,
// without authentication; anything else, other methods on those paths
// included, goes to the proxy.
func TestProbes(t *testing.T) {
	p := &probes{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "proxy", http.StatusTeapot) })}
	tests := []struct {
		method, path string
		draining     bool
		status       int
	}{
		{"GET", "/healthz", false, http.StatusOK},
		{"HEAD", "/healthz", false, http.StatusOK},
		{"GET", "/readyz", false, http.StatusOK},
		{"GET", "/healthz", true, http.StatusOK},
		{"GET", "/readyz", true, http.StatusServiceUnavailable},
		{"HEAD", "/readyz", true, http.StatusServiceUnavailable},
		{"POST", "/healthz", false, http.StatusTeapot},
		{"GET", "/healthz/", false, http.StatusTeapot},
		{"GET", "/mcp", false, http.StatusTeapot},
	}
	for _, tc := range tests {
		p.draining.Store(tc.draining)
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		assert.Equal(t, tc.status, w.Code, "%s %s, draining %v", tc.method, tc.path, tc.draining)
		if tc.status != http.StatusTeapot {
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		}
	}
}

// TestServeDrains: on a signal /readyz answers 503 at once, while
// everything else is served for the whole SHUTDOWN_DELAY; only then does
// the server shut down.
func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &probes{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "served") })}
	waiting, release := make(chan time.Duration), make(chan time.Time)
	sd := shutdown{probes: p, delay: 7 * time.Second, timeout: time.Second,
		after: func(d time.Duration) <-chan time.Time { waiting <- d; return release }}
	ctx, sigterm := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &http.Server{Handler: p}, ln, sd, slog.New(slog.DiscardHandler)) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status, _ := get("/readyz")
	require.Equal(t, http.StatusOK, status, "ready before the signal")

	sigterm()
	select {
	case d := <-waiting:
		assert.Equal(t, 7*time.Second, d)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not wait for SHUTDOWN_DELAY")
	}
	status, _ = get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status, "unready during the delay")
	status, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, status, "alive during the delay")
	status, body := get("/mcp")
	assert.Equal(t, "served", body, "requests still served during the delay: status %d", status)
	select {
	case err := <-done:
		t.Fatalf("serve returned before the delay ended: %v", err)
	default:
	}

	close(release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the delay")
	}
}

// TestServeShutdownTimeout: SHUTDOWN_TIMEOUT bounds the wait for a request
// in flight; the server then closes it and returns.
func TestServeShutdownTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	entered := make(chan struct{})
	hung := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // until the server closes the connection
	})
	p := &probes{next: hung}
	ctx, sigterm := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, &http.Server{Handler: p}, ln, shutdown{probes: p, timeout: 50 * time.Millisecond, after: time.After},
			slog.New(slog.DiscardHandler))
	}()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/mcp")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	sigterm()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a hung request held up shutdown past SHUTDOWN_TIMEOUT")
	}
}

// TestNewLogger: LOG_FORMAT=json makes every line JSON, go-redis's own
// included (here a Sentinel it cannot reach).
func TestNewLogger(t *testing.T) {
	defaultLogger := slog.Default()
	t.Cleanup(func() { slog.SetDefault(defaultLogger); logging.Enable() })
	var buf syncBuffer
	logger := newLogger(config{LogJSON: true}, &buf)
	logger.Info("from the example")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: []string{closed.Addr().String()},
		MaxRetries: -1, DialerRetries: 1})
	defer client.Close()
	require.Error(t, client.Ping(t.Context()).Err())

	var msgs []string
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var line struct{ Level, Msg, Logger string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "not JSON: %s", sc.Text())
		msgs = append(msgs, line.Level+" "+line.Logger+" "+line.Msg)
	}
	assert.Contains(t, msgs, "INFO  from the example")
	assert.True(t, slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, "WARN go-redis sentinel: ") }), "%q", msgs)
}

// syncBuffer is a log or output buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer

// TestServerReadTimeout: the program's server cuts a request whose body
// does not arrive within ReadTimeout, but an event stream (a GET, and a
// POST answered as a stream once its body is read) goes on past it.
func TestServerReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	bodyErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			_, err := io.ReadAll(r.Body)
			bodyErr <- err
			return
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 8 { // 4 × timeout
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(timeout / 2)
		}
	})
	srv := newServer(h, timeout, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, err := http.NewRequestWithContext(t.Context(), method, base+"/stream", strings.NewReader(`{"jsonrpc":"2.0"}`))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, method)
		assert.Equal(t, http.StatusOK, resp.StatusCode, method)
		assert.Equal(t, 8, strings.Count(string(body), "data: "), "%s: the stream outlived ReadTimeout: %q", method, body)
	}

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	require.NoError(t, err)
	select { // the client holds the rest of its body for good
	case err := <-bodyErr:
		var ne net.Error
		require.ErrorAs(t, err, &ne, "the body read fails")
		assert.True(t, ne.Timeout(), "%v", err)
	case <-time.After(20 * timeout):
		t.Fatal("a body that never arrives holds the handler past ReadTimeout")
	}
}
