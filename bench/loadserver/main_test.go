package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
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
	for _, handler := range []string{"gosdk", "json"} {
		b.Run("handler="+handler, func(b *testing.B) {
			st, token := signedIn(b, handler, "proxy")
			sides := []struct {
				name string
				h    http.Handler
				url  string
			}{
				{"open", st.open, "http://" + st.openLn.Addr().String() + "/mcp"},
				{"auth", st.auth, st.resource},
			}
			for _, side := range sides {
				b.Run("side="+side.name, func(b *testing.B) {
					b.ReportAllocs()
					sched := readSched()
					for b.Loop() {
						w := httptest.NewRecorder()
						side.h.ServeHTTP(w, mcpRequest(side.url, token)) // the open side ignores the token, as with wrk
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

// fronts are loadserver's -front values.
var fronts = []string{"proxy", "cognitomcp", "cognitomcp+gosdk", "cognitomcp+copy", "none", "gosdk", "copy", "copy+alloc"}

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

// TestFronts serves wrk's request through every -front, both handlers: the
// auth listener answers it as the open one does, with the token signed in
// through the proxy, and only the proxy refuses it without the token.
func TestFronts(t *testing.T) {
	for _, handler := range []string{"gosdk", "json"} {
		for _, front := range fronts {
			t.Run(handler+"/"+front, func(t *testing.T) {
				st, token := signedIn(t, handler, front)
				for _, side := range []struct {
					name string
					h    http.Handler
				}{{"open", st.open}, {"auth", st.auth}} {
					for _, bearer := range []string{token, ""} {
						w := httptest.NewRecorder()
						side.h.ServeHTTP(w, mcpRequest(st.resource, bearer))
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
func mcpRequest(url, bearer string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, url, strings.NewReader(mcpCall))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req
}
