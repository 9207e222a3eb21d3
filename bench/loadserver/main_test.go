package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
)

// mcpCall is the request wrk sends (mcp.lua): one tools/call of "echo".
const mcpCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`

// BenchmarkHandler is the CPU cost of one MCP request, the one wrk sends,
// through each stack in process (no network, no scheduler between client and
// server): side=open is the bare handler, side=auth the same handler behind
// the proxy, with a token signed in through it. The difference is what the
// proxy adds per request, which the load step's throughput comparison sees
// through the noise of the machine. goroutines/op (goroutines started per
// request) and sched-samples/op (the runtime's samples of a goroutine going
// from runnable to running, about one in eight) show whether a side makes a
// request wait on other goroutines more often.
func BenchmarkHandler(b *testing.B) {
	for _, handler := range handlers {
		b.Run("handler="+handler, func(b *testing.B) {
			st, token := signedIn(b, handler, "proxy")
			for _, side := range st.sides() {
				session := sessionFor(b, handler, side, token)
				b.Run("side="+side.name, func(b *testing.B) {
					b.ReportAllocs()
					sched := readSched()
					for b.Loop() {
						w := httptest.NewRecorder()
						side.h.ServeHTTP(w, mcpPost(side.url, token, session, mcpCall)) // the open side ignores the token, as with wrk
						if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "hello") {
							b.Fatalf("status %d: %.200s", w.Code, w.Body.String())
						}
					}
					sched.report(b)
				})
			}
		})
	}
}

// handlers are loadserver's -handler values.
var handlers = []string{"gosdk", "session", "json"}

// sessionFor opens the session wrk's requests go in with -handler=session
// (through s, with token, as loadserver does); "" for the other handlers.
func sessionFor(tb testing.TB, handler string, s side, token string) string {
	if handler != "session" {
		return ""
	}
	id, err := openSession(s.h, s.url, token)
	if err != nil {
		tb.Fatalf("%s: %v", s.name, err)
	}
	return id
}

// fronts are loadserver's -front values.
var fronts = []string{"proxy", "cognitomcp", "cognitomcp+gosdk", "cognitomcp+copy", "none", "gosdk", "copy", "copy+alloc", "frames"}

// BenchmarkFronts is the cost of wrk's request through the auth listener of
// every -front, go-sdk's handler: what each part of the proxy's chain
// allocates, and (noisily: a GC cycle every ~8 requests) what it costs.
// Compare with benchstat -col /front.
func BenchmarkFronts(b *testing.B) {
	for _, front := range fronts {
		b.Run("front="+front, func(b *testing.B) {
			st, token := signedIn(b, "gosdk", front)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				st.auth.ServeHTTP(w, mcpRequest(st.resource, token))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %.200s", w.Code, w.Body.String())
				}
			}
		})
	}
}

// schedCounts is a reading of the runtime's goroutine counters.
type schedCounts struct{ created, scheduled uint64 }

func readSched() schedCounts {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}, {Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	c := schedCounts{created: s[0].Value.Uint64()}
	for _, n := range s[1].Value.Float64Histogram().Counts {
		c.scheduled += n
	}
	return c
}

// report reports the goroutines created and scheduled per op since c.
func (c schedCounts) report(b *testing.B) {
	now := readSched()
	b.ReportMetric(float64(now.created-c.created)/float64(b.N), "goroutines/op")
	b.ReportMetric(float64(now.scheduled-c.scheduled)/float64(b.N), "sched-samples/op")
}

// TestFronts serves wrk's request through every -front, every handler: the
// auth listener answers it as the open one does, with the token signed in
// through the proxy, and only the proxy refuses it without the token. With
// -handler=session, each listener's request is sent in the session opened
// through it.
func TestFronts(t *testing.T) {
	for _, handler := range handlers {
		for _, front := range fronts {
			t.Run(handler+"/"+front, func(t *testing.T) {
				st, token := signedIn(t, handler, front)
				for _, side := range st.sides() {
					session := sessionFor(t, handler, side, token)
					for _, bearer := range []string{token, ""} {
						w := httptest.NewRecorder()
						side.h.ServeHTTP(w, mcpPost(side.url, bearer, session, mcpCall))
						want := http.StatusOK
						if side.name == "auth" && bearer == "" && (front == "proxy" || strings.HasPrefix(front, "cognitomcp") || front == "gosdk") {
							want = http.StatusUnauthorized
						}
						if w.Code != want || (want == http.StatusOK && !strings.Contains(w.Body.String(), "hello")) {
							t.Errorf("%s, token %t: status %d, want %d: %.200s", side.name, bearer != "", w.Code, want, w.Body.String())
						}
					}
				}
			})
		}
	}
	if _, err := newStack(t.Context(), "gosdk", "nope", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("newStack with front nope: no error")
	}
}

// signedIn builds the stack for handler and front, serves its auth listener
// (which answers the sign-in) until the test ends, and signs in.
func signedIn(tb testing.TB, handler, front string) (*stack, string) {
	st, err := newStack(tb.Context(), handler, front, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: st.auth}
	go func() { _ = srv.Serve(st.authLn) }()
	tb.Cleanup(func() { _ = srv.Close(); st.close() })
	token, err := signIn(tb.Context(), st.base, st.pool.Transport())
	if err != nil {
		tb.Fatal(err)
	}
	return st, token
}

// mcpRequest is the request wrk sends (mcp.lua) to url, with the bearer
// token when there is one.
func mcpRequest(url, bearer string) *http.Request { return mcpPost(url, bearer, "", mcpCall) }

// TestRuntimeMetrics reads /debug/runtime on the open listener twice around
// a GC cycle and a request: every sample is there, as a number, and the
// counters moved.
func TestRuntimeMetrics(t *testing.T) {
	st, token := signedIn(t, "gosdk", "none")
	read := func() map[string]float64 {
		w := httptest.NewRecorder()
		st.open.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug/runtime", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		f := strings.Fields(w.Body.String())
		if len(f)%2 != 0 {
			t.Fatalf("odd number of fields: %q", w.Body.String())
		}
		m := make(map[string]float64)
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i+1], 64)
			if err != nil {
				t.Fatalf("%s: %v", f[i], err)
			}
			m[f[i]] = v
		}
		return m
	}
	before := read()
	runtime.GC()
	w := httptest.NewRecorder()
	st.open.ServeHTTP(w, mcpRequest(st.openURL(), token))
	if w.Code != http.StatusOK {
		t.Fatalf("mcp: status %d", w.Code)
	}
	after := read()
	want := []string{"/sched/latencies:seconds:count", "/sched/latencies:seconds:sum", "/sched/latencies:seconds:ge4ms"}
	for _, name := range runtimeSamples {
		if !strings.HasSuffix(name, ":seconds") {
			want = append(want, name)
		}
	}
	for _, name := range want {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	for _, name := range []string{"/gc/cycles/total:gc-cycles", "/gc/heap/allocs:objects", "/sched/goroutines-created:goroutines"} {
		if after[name] <= before[name] {
			t.Errorf("%s: %v, then %v: want more", name, before[name], after[name])
		}
	}
}

// TestRunSwapped runs loadserver with and without -swap: the sides come in
// the order -swap asks for, and both listeners serve wrk's request over the
// network, the auth one only with the token.
func TestRunSwapped(t *testing.T) {
	defer func(old bool) { *swap = old }(*swap)
	for _, swapped := range []bool{false, true} {
		t.Run("swap="+strconv.FormatBool(swapped), func(t *testing.T) {
			*swap = swapped
			st, err := newStack(t.Context(), "json", "proxy", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range st.sides() {
				names = append(names, s.name)
			}
			st.close()
			if want := map[bool]string{false: "auth open", true: "open auth"}[swapped]; strings.Join(names, " ") != want {
				t.Errorf("sides %q, want %q", names, want)
			}

			ctx, cancel := context.WithCancel(t.Context())
			r, w := io.Pipe()
			done := make(chan error, 1)
			go func() { done <- run(ctx, "json", "proxy", "", w); w.Close() }()
			var line struct{ Auth, Open, Token string }
			if err := json.NewDecoder(r).Decode(&line); err != nil {
				t.Fatal(err)
			}
			go func() { _, _ = io.Copy(io.Discard, r) }()
			for _, c := range []struct {
				url, token string
				want       int
			}{{line.Auth, line.Token, http.StatusOK}, {line.Auth, "", http.StatusUnauthorized}, {line.Open, "", http.StatusOK}} {
				req := mcpRequest(c.url, c.token)
				req.RequestURI = ""
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.want || (c.want == http.StatusOK && !strings.Contains(string(body), "hello")) {
					t.Errorf("%s, token %t: status %d, want %d: %.200s", c.url, c.token != "", resp.StatusCode, c.want, body)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}
