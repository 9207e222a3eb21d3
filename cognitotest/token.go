package cognitotest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// oauthError is an OAuth error response: {"error": ..., "error_description": ...}.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func badRequest(code, desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, Code: code, Description: desc}
}

func (e *oauthError) write(w http.ResponseWriter) { writeJSON(w, e.status, e) }

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

// session is one sign-in: the refresh tokens and the access and ID tokens
// derived from it share its origin_jti and auth_time.
type session struct {
	clientID, username string
	scopes             []string
	resource           string
	authTime           time.Time
	originJTI, eventID string
	revoked            bool
}

// refreshToken is an issued refresh token. A token rotated out keeps
// working until its grace period ends, at retiredAt.
type refreshToken struct {
	sess      *session
	expires   time.Time
	retiredAt time.Time // zero until rotated out with a grace period
}

// retired reports whether rt was rotated out and its grace period is over
// at now.
func (rt *refreshToken) retired(now time.Time) bool {
	return !rt.retiredAt.IsZero() && !now.Before(rt.retiredAt)
}

// handleToken is POST /oauth2/token.
func (p *UserPool) handleToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if err := parsePostForm(r); err != nil {
		err.write(w)
		return
	}
	c, err := p.authenticateClient(r, true, http.StatusBadRequest)
	if err != nil {
		err.write(w)
		return
	}
	grant := r.PostForm.Get("grant_type")
	var resp *tokenResponse
	switch grant {
	case "authorization_code":
		resp, err = p.grantCode(c, r.PostForm)
	case "refresh_token":
		resp, err = p.grantRefresh(c, r.PostForm)
	case "client_credentials":
		resp, err = p.grantClientCredentials(c, r.PostForm)
	case "":
		err = badRequest("invalid_request", "grant_type is required")
	default:
		err = badRequest("unsupported_grant_type", "")
	}
	if err != nil {
		err.write(w)
		return
	}
	p.mu.Lock()
	p.grants[grant]++
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// parsePostForm parses an application/x-www-form-urlencoded body.
func parsePostForm(r *http.Request) *oauthError {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return badRequest("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return badRequest("invalid_request", "malformed form body")
	}
	return nil
}

// authenticateClient checks client_secret_basic, or client_secret_post when
// allowPost, against whether the client has a secret. A public client
// identifies itself with client_id in the body: it must send no secret and
// no Basic header (Basic with an empty secret gets invalid_client).
func (p *UserPool) authenticateClient(r *http.Request, allowPost bool, failStatus int) (Client, *oauthError) {
	invalid := &oauthError{status: failStatus, Code: "invalid_client"}
	form := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		id, secret = formUnescape(id), formUnescape(secret)
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return Client{}, invalid
		}
		if form.Get("client_secret") != "" {
			return Client{}, badRequest("invalid_request", "more than one client authentication method")
		}
	} else {
		id = form.Get("client_id")
		if allowPost {
			secret = form.Get("client_secret")
		}
	}
	c, ok := p.client(id)
	switch {
	case id == "" || !ok:
		return Client{}, invalid
	case c.Secret == "" && secret != "":
		return Client{}, badRequest("unauthorized_client", "the client has no secret")
	case c.Secret == "" && basic:
		return Client{}, invalid
	case c.Secret != "" && subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1:
		return Client{}, invalid
	}
	return c, nil
}

// formUnescape undoes the form encoding RFC 6749 §2.3.1 applies to Basic
// credentials, keeping values that are not encoded.
func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// grantCode redeems a single-use code bound to the client, redirect_uri and
// PKCE challenge.
func (p *UserPool) grantCode(c Client, f url.Values) (*tokenResponse, *oauthError) {
	code, redirectURI := f.Get("code"), f.Get("redirect_uri")
	if code == "" || redirectURI == "" {
		return nil, badRequest("invalid_request", "code and redirect_uri are required")
	}
	p.mu.Lock()
	ac := p.codes[code]
	delete(p.codes, code)
	p.mu.Unlock()
	switch {
	case ac == nil || !p.now().Before(ac.expires) || ac.clientID != c.ID:
		return nil, badRequest("invalid_grant", "")
	case ac.redirectURI != redirectURI:
		return nil, badRequest("unauthorized_client", "invalid_redirect")
	case ac.challenge != "" && !verifierMatches(f.Get("code_verifier"), ac.challenge):
		return nil, badRequest("invalid_grant", "")
	}
	u, ok := p.user(ac.username)
	if !ok {
		return nil, badRequest("invalid_grant", "")
	}
	sess := &session{
		clientID: c.ID, username: ac.username, scopes: ac.scopes, resource: ac.resource,
		authTime: ac.authTime, originJTI: newUUID(), eventID: newUUID(),
	}
	rt := newRefreshToken()
	p.mu.Lock()
	p.sessions[sess.originJTI] = sess
	p.refresh[rt] = &refreshToken{sess: sess, expires: p.now().Add(p.opts.RefreshTokenTTL)}
	p.mu.Unlock()
	resp := p.tokensFor(*sess, u, ac.nonce)
	resp.RefreshToken = rt
	return resp, nil
}

// verifierMatches checks an S256 code_verifier against its challenge.
func verifierMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return verifier != "" && subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// grantRefresh issues new tokens for a live refresh token of this client;
// with rotation it issues a new refresh token and retires the one presented
// once the grace period (from its first rotation) is over.
func (p *UserPool) grantRefresh(c Client, f url.Values) (*tokenResponse, *oauthError) {
	tok := f.Get("refresh_token")
	if tok == "" {
		return nil, badRequest("invalid_request", "refresh_token is required")
	}
	now := p.now()
	p.mu.Lock()
	rt := p.refresh[tok]
	if rt == nil || rt.retired(now) || rt.sess.revoked || !now.Before(rt.expires) || rt.sess.clientID != c.ID {
		p.mu.Unlock()
		return nil, badRequest("invalid_grant", "Invalid Refresh Token")
	}
	sess, next := *rt.sess, ""
	if p.rotation {
		switch {
		case p.grace == 0:
			delete(p.refresh, tok)
		case rt.retiredAt.IsZero(): // a retry within the grace does not extend it
			rt.retiredAt = now.Add(p.grace)
		}
		next = newRefreshToken()
		p.refresh[next] = &refreshToken{sess: rt.sess, expires: now.Add(p.opts.RefreshTokenTTL)}
	}
	p.mu.Unlock()
	u, ok := p.user(sess.username)
	if !ok {
		return nil, badRequest("invalid_grant", "Invalid Refresh Token")
	}
	resp := p.tokensFor(sess, u, "")
	resp.RefreshToken = next
	return resp, nil
}

// tokensFor signs an access token, and an ID token when openid was granted.
func (p *UserPool) tokensFor(sess session, u User, nonce string) *tokenResponse {
	is := issue{
		user: &u, clientID: sess.clientID, scopes: sess.scopes, resource: sess.resource,
		nonce: nonce, issuer: p.Issuer, authTime: sess.authTime, issuedAt: p.now(),
		originJTI: sess.originJTI, eventID: sess.eventID,
	}
	p.mu.Lock()
	preToken := p.preToken
	p.mu.Unlock()
	if preToken != nil {
		suppress := preToken(u.Username, slices.Clone(sess.scopes))
		is.scopes = slices.DeleteFunc(slices.Clone(sess.scopes), func(s string) bool { return slices.Contains(suppress, s) })
	}
	at := p.signAs(false, p.accessClaims(is, p.opts.AccessTokenTTL), nil)
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(p.opts.AccessTokenTTL.Seconds())}
	if slices.Contains(sess.scopes, "openid") {
		resp.IDToken = p.signAs(true, p.idClaims(is, p.opts.IDTokenTTL, at), nil)
	}
	return resp
}

// grantClientCredentials issues an M2M access token with resource-server
// scopes. Unknown scopes are invalid_scope; known ones the client may not
// use are dropped, as Cognito documents.
func (p *UserPool) grantClientCredentials(c Client, f url.Values) (*tokenResponse, *oauthError) {
	if c.Secret == "" || !c.ClientCredentials {
		return nil, badRequest("unauthorized_client", "")
	}
	p.mu.Lock()
	allowed := slices.DeleteFunc(slices.Clone(c.AllowedScopes), func(s string) bool { return !p.rsScopes[s] })
	scopes := allowed
	if requested := strings.Fields(f.Get("scope")); len(requested) > 0 {
		scopes = nil
		for _, s := range requested {
			if !p.rsScopes[s] {
				p.mu.Unlock()
				return nil, badRequest("invalid_scope", "")
			}
			if slices.Contains(allowed, s) && !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	p.mu.Unlock()
	if len(scopes) == 0 {
		return nil, badRequest("invalid_scope", "")
	}
	now := p.now()
	is := issue{clientID: c.ID, scopes: scopes, issuer: p.Issuer, authTime: now, issuedAt: now}
	at := p.signAs(false, p.accessClaims(is, p.opts.AccessTokenTTL), nil)
	return &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(p.opts.AccessTokenTTL.Seconds())}, nil
}

// newRefreshToken returns an opaque token shaped like Cognito's 5-part JWE.
func newRefreshToken() string {
	const header = "eyJjdHkiOiJKV1QiLCJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiUlNBLU9BRVAifQ" // {"cty":"JWT","enc":"A256GCM","alg":"RSA-OAEP"}
	parts := []string{header}
	for _, n := range []int{256, 12, 512, 16} {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		parts = append(parts, base64.RawURLEncoding.EncodeToString(b))
	}
	return strings.Join(parts, ".")
}
