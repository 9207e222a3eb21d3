package demo

import (
	"io"
	"net/http"
	"sync/atomic"
)

// probes answers the orchestrator's probes in front of next, outside
// authentication: GET /healthz is 200 while the process serves (liveness),
// GET /readyz is 200 until shutdown begins and 503 from then on
// (readiness). Neither touches the store: a Redis outage must not mark
// every replica unready at once, while the tokens they cached still serve
// and the proxy answers what needs Redis with 503 by itself. The paths are
// matched exactly, not through http.ServeMux, which would redirect the
// proxy's unclean paths.
type probes struct {
	draining atomic.Bool // set by serve when shutdown begins
	next     http.Handler
}

func (p *probes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		switch r.URL.Path {
		case "/healthz":
			probeAnswer(w, http.StatusOK, "ok\n")
			return
		case "/readyz":
			if p.draining.Load() {
				probeAnswer(w, http.StatusServiceUnavailable, "shutting down\n")
			} else {
				probeAnswer(w, http.StatusOK, "ok\n")
			}
			return
		}
	}
	p.next.ServeHTTP(w, r)
}

func probeAnswer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
