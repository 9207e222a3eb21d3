package cognitotest

import (
	"net/http"
	"strings"
)

// handleRevoke is POST /oauth2/revoke: it revokes a refresh token of the
// calling client and every token derived from it. Secret clients must use
// Basic authentication; public clients send client_id. Unknown, foreign or
// already revoked tokens get 200, as in Cognito.
func (p *UserPool) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if err := parsePostForm(r); err != nil {
		err.write(w)
		return
	}
	c, err := p.authenticateClient(r, false, http.StatusUnauthorized)
	if err != nil {
		err.write(w)
		return
	}
	tok := r.PostForm.Get("token")
	switch {
	case tok == "":
		badRequest("invalid_request", "token is required").write(w)
		return
	case c.DisableRevocation:
		badRequest("invalid_request", "token revocation is disabled for the client").write(w)
		return
	case strings.Count(tok, ".") == 2: // a JWS: access or ID token
		badRequest("unsupported_token_type", "").write(w)
		return
	}
	now := p.now()
	p.mu.Lock()
	if rt := p.refresh[tok]; rt != nil && !rt.retired(now) && rt.sess.clientID == c.ID && !rt.sess.revoked {
		rt.sess.revoked = true
		p.revoked++
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}
