package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
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
// through the noise of the machine.
func BenchmarkHandler(b *testing.B) {
	for _, handler := range []string{"gosdk", "json"} {
		b.Run("handler="+handler, func(b *testing.B) {
			st, err := newStack(b.Context(), handler, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: st.auth}
			go func() { _ = srv.Serve(st.authLn) }()
			b.Cleanup(func() { _ = srv.Close(); st.close() })
			token, err := signIn(b.Context(), st.base, st.pool.Transport())
			if err != nil {
				b.Fatal(err)
			}
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
					for b.Loop() {
						req := httptest.NewRequest(http.MethodPost, side.url, strings.NewReader(mcpCall))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Accept", "application/json, text/event-stream")
						req.Header.Set("MCP-Protocol-Version", "2025-06-18")
						req.Header.Set("Authorization", "Bearer "+token) // the open side ignores it, as with wrk
						w := httptest.NewRecorder()
						side.h.ServeHTTP(w, req)
						if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "hello") {
							b.Fatalf("status %d: %.200s", w.Code, w.Body.String())
						}
					}
				})
			}
		})
	}
}
