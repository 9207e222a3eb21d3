package cognitotest

import (
	"cmp"
	"net/http"
	"time"
)

// Endpoint names one of the pool's HTTP endpoints, for InjectFault and
// Requests.
type Endpoint string

// The pool's endpoints.
const (
	EndpointToken     Endpoint = "token"     // POST /oauth2/token (domain)
	EndpointJWKS      Endpoint = "jwks"      // GET {issuer}/.well-known/jwks.json
	EndpointDiscovery Endpoint = "discovery" // GET {issuer}/.well-known/openid-configuration
	EndpointRevoke    Endpoint = "revoke"    // POST /oauth2/revoke (domain)
	EndpointUserInfo  Endpoint = "userinfo"  // GET/POST /oauth2/userInfo (domain)
	EndpointAuthorize Endpoint = "authorize" // GET /oauth2/authorize (domain)
	EndpointLogin     Endpoint = "login"     // GET/POST /login (domain)
	EndpointLogout    Endpoint = "logout"    // GET /logout (domain)
)

var allEndpoints = []Endpoint{
	EndpointToken, EndpointJWKS, EndpointDiscovery, EndpointRevoke,
	EndpointUserInfo, EndpointAuthorize, EndpointLogin, EndpointLogout,
}

// Fault describes how an endpoint misbehaves.
type Fault struct {
	// Delay holds the response back for this wall-clock time (not
	// Options.Now), or until the request's context ends or the pool closes.
	Delay time.Duration
	// Status, if non-zero, replaces the answer with a JSON error body
	// {"error": ...} with this status (e.g. 500, 503, 429).
	Status int
	// MalformedJSON replaces the answer with a truncated JSON body, with
	// status Status or 200.
	MalformedJSON bool
	// Times limits the fault to the next Times requests; 0 means until
	// ClearFaults.
	Times int
}

// InjectFault makes endpoint e misbehave as f describes, replacing any fault
// set on e before. A Fault with only Delay delays the normal answer.
func (p *UserPool) InjectFault(e Endpoint, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[e] = &f
}

// ClearFaults removes all injected faults.
func (p *UserPool) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.faults)
}

// Requests reports how many requests reached endpoint e, faulted ones
// included.
func (p *UserPool) Requests(e Endpoint) int {
	if c, ok := p.requests[e]; ok {
		return int(c.Load())
	}
	return 0
}

// instrument counts requests to e and applies its fault before h.
func (p *UserPool) instrument(e Endpoint, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.requests[e].Add(1)
		if f, ok := p.takeFault(e); ok && p.serveFault(w, r, f) {
			return
		}
		h(w, r)
	}
}

// takeFault returns e's fault and uses up one of its Times.
func (p *UserPool) takeFault(e Endpoint) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.faults[e]
	if !ok {
		return Fault{}, false
	}
	if f.Times > 0 {
		if f.Times--; f.Times == 0 {
			delete(p.faults, e)
		}
	}
	return *f, true
}

// serveFault applies f and reports whether it answered the request.
func (p *UserPool) serveFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-p.closing:
			http.Error(w, "pool closed", http.StatusServiceUnavailable)
			return true
		}
	}
	switch {
	case f.MalformedJSON:
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(cmp.Or(f.Status, http.StatusOK))
		_, _ = w.Write([]byte(`{"access_token":"eyJraWQiOiJ`))
	case f.Status != 0:
		writeJSON(w, f.Status, map[string]string{"error": faultError(f.Status)})
	default:
		return false
	}
	return true
}

// faultError is the error code written for an injected status.
func faultError(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "too_many_requests"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request"
	}
}
