package cognitotest

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// discovery is Cognito's openid-configuration document: exactly these keys,
// and no registration_endpoint, code_challenge_methods_supported or
// grant_types_supported.
type discovery struct {
	AuthorizationEndpoint   string   `json:"authorization_endpoint"`
	EndSessionEndpoint      string   `json:"end_session_endpoint"`
	IDTokenSigningAlgs      []string `json:"id_token_signing_alg_values_supported"`
	Issuer                  string   `json:"issuer"`
	JWKSURI                 string   `json:"jwks_uri"`
	ResponseTypesSupported  []string `json:"response_types_supported"`
	RevocationEndpoint      string   `json:"revocation_endpoint"`
	ScopesSupported         []string `json:"scopes_supported"`
	SubjectTypesSupported   []string `json:"subject_types_supported"`
	TokenEndpoint           string   `json:"token_endpoint"`
	TokenEndpointAuthMethod []string `json:"token_endpoint_auth_methods_supported"`
	UserinfoEndpoint        string   `json:"userinfo_endpoint"`
}

// serveIssuerHost serves {issuer}/.well-known/openid-configuration and
// {issuer}/.well-known/jwks.json for an issuer whose path is the pool id
// (or, on loopback, the UPDATED form's /updated/ and the pool id). With
// AWSHostnames it answers only on the pool's region's two issuer hosts
// (cognito-idp and issuer-cognito-idp), so both issuer formats work; any
// other host or path is 404, as a wrong discovery URL is at Cognito. The
// document's issuer is the URL asked for.
func (p *UserPool) serveIssuerHost(w http.ResponseWriter, r *http.Request) {
	prefix, isJWKS := strings.CutSuffix(r.URL.Path, "/.well-known/jwks.json")
	found := isJWKS
	if !isJWKS {
		prefix, found = strings.CutSuffix(r.URL.Path, "/.well-known/openid-configuration")
	}
	updated := !p.opts.AWSHostnames && prefix == "/updated/"+p.PoolID // the UPDATED form on loopback
	if !found || (prefix != "/"+p.PoolID && !updated) || !p.isIssuerHost(r.Host) {
		http.NotFound(w, r)
		return
	}
	scheme := "http://"
	if p.opts.AWSHostnames {
		scheme = "https://"
	}
	issuer := scheme + r.Host + prefix
	if isJWKS {
		p.instrument(EndpointJWKS, p.serveJWKS)(w, r)
		return
	}
	p.instrument(EndpointDiscovery, func(w http.ResponseWriter, r *http.Request) {
		p.serveDiscovery(w, r, issuer)
	})(w, r)
}

// isIssuerHost reports whether host is one of the pool's issuer hosts.
// On loopback there is one listener and no region in the host name.
func (p *UserPool) isIssuerHost(host string) bool {
	if !p.opts.AWSHostnames {
		return true
	}
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host == "cognito-idp."+p.Region+".amazonaws.com" || host == "issuer-cognito-idp."+p.Region+".amazonaws.com"
}

func (p *UserPool) serveDiscovery(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, http.StatusOK, discovery{
		AuthorizationEndpoint:   p.DomainURL + "/oauth2/authorize",
		EndSessionEndpoint:      p.DomainURL + "/logout",
		IDTokenSigningAlgs:      []string{"RS256"},
		Issuer:                  issuer,
		JWKSURI:                 issuer + "/.well-known/jwks.json",
		ResponseTypesSupported:  []string{"code", "token"},
		RevocationEndpoint:      p.DomainURL + "/oauth2/revoke",
		ScopesSupported:         []string{"openid", "email", "phone", "profile"},
		SubjectTypesSupported:   []string{"public"},
		TokenEndpoint:           p.DomainURL + "/oauth2/token",
		TokenEndpointAuthMethod: []string{"client_secret_basic", "client_secret_post"},
		UserinfoEndpoint:        p.DomainURL + "/oauth2/userInfo",
	})
}

func (p *UserPool) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, http.StatusOK, p.jwks())
}

// allowMethods answers 405 unless r.Method is one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
	return false
}

// writeJSON writes v with Cognito's JSON content type and no-cache headers.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
