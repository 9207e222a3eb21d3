package cognitotest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// invalidTokenDescription is Cognito's userInfo text for a rejected token.
const invalidTokenDescription = "Access token is expired, disabled, or deleted, or the user has globally signed out."

// handleUserInfo is GET/POST /oauth2/userInfo: the user's attributes for a
// live access token with the openid scope. Revoked tokens are rejected even
// though their signature is still valid.
func (p *UserPool) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		userInfoError(w, http.StatusBadRequest, "invalid_request", "Bad OAuth2 request at UserInfo Endpoint")
		return
	}
	username, scopes, ok := p.verifyAccessToken(tok)
	if !ok || !slices.Contains(scopes, "openid") {
		userInfoError(w, http.StatusUnauthorized, "invalid_token", invalidTokenDescription)
		return
	}
	u, ok := p.user(username)
	if !ok {
		userInfoError(w, http.StatusUnauthorized, "invalid_token", invalidTokenDescription)
		return
	}
	writeJSON(w, http.StatusOK, userInfoClaims(u, scopes))
}

func userInfoError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
	writeJSON(w, status, &oauthError{Code: code, Description: desc})
}

// verifyAccessToken checks signature, token_use, issuer, expiry and
// revocation, and returns the username and scopes.
func (p *UserPool) verifyAccessToken(tok string) (username string, scopes []string, ok bool) {
	header, claims, err := DecodeJWT(tok)
	if err != nil || header["alg"] != "RS256" {
		return "", nil, false
	}
	kid, _ := header["kid"].(string)
	pub, found := p.publicKey(kid)
	parts := strings.Split(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if !found || err != nil {
		return "", nil, false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
		return "", nil, false
	}
	expNum, _ := claims["exp"].(json.Number)
	exp, _ := expNum.Int64()
	iss, _ := claims["iss"].(string)
	if claims["token_use"] != "access" || p.now().Unix() >= exp || (iss != p.Issuer && iss != p.OtherIssuer()) {
		return "", nil, false
	}
	originJTI, _ := claims["origin_jti"].(string)
	p.mu.Lock()
	sess := p.sessions[originJTI]
	revoked := sess != nil && sess.revoked
	p.mu.Unlock()
	username, _ = claims["username"].(string)
	scope, _ := claims["scope"].(string)
	return username, strings.Fields(scope), !revoked && username != ""
}

// userInfoClaims returns the attributes the scopes allow, as strings (Cognito
// returns email_verified as "true"/"false"). With openid alone, all of them.
func userInfoClaims(u User, scopes []string) map[string]string {
	attrs := make(map[string]string, len(u.Attributes)+2)
	for k, v := range u.Attributes {
		attrs[k] = v
	}
	if u.Email != "" {
		attrs["email"] = u.Email
		attrs["email_verified"] = "false"
		if u.EmailVerified {
			attrs["email_verified"] = "true"
		}
	}
	all := !slices.ContainsFunc(scopes, isOIDCAttributeScope)
	out := map[string]string{}
	for k, v := range attrs {
		if all || slices.Contains(scopes, attributeScope(k)) {
			out[k] = v
		}
	}
	out["sub"], out["username"] = u.Sub, u.Username
	return out
}

// attributeScope is the standard scope that releases attribute name.
func attributeScope(name string) string {
	switch {
	case strings.HasPrefix(name, "email"):
		return "email"
	case strings.HasPrefix(name, "phone_number"):
		return "phone"
	default:
		return "profile"
	}
}
