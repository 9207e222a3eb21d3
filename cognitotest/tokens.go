package cognitotest

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TokenOptions describes a token for MintAccessToken and MintIDToken.
type TokenOptions struct {
	// Username is the user, who must exist. Empty mints a
	// client-credentials access token: sub is ClientID, no username or
	// groups.
	Username string
	// ClientID is the app client; it need not be registered.
	ClientID string
	// Scopes default to openid, email and profile for a user, and to all
	// resource-server scopes for a client-credentials token.
	Scopes []string
	// Resource sets aud on the access token (resource binding).
	Resource string
	// Issuer overrides iss; default UserPool.Issuer.
	Issuer string
	// IssuedAt is iat and auth_time; default the pool's Now.
	IssuedAt time.Time
	// TTL is exp-iat; default Options.AccessTokenTTL or IDTokenTTL.
	// A negative TTL gives an expired token.
	TTL time.Duration
	// Nonce sets the ID token's nonce claim.
	Nonce string
	// AccessToken, when set, gives the ID token an at_hash for it.
	AccessToken string
	// Claims are merged last; a nil value deletes the claim.
	Claims map[string]any
	// Header adds or overrides JWS header fields, except "alg": the token
	// is always RS256-signed (see SignWithHS256 and friends for others).
	// A nil value deletes the field.
	Header map[string]any
}

// issue is what one token response is issued for.
type issue struct {
	user      *User // nil for client credentials
	clientID  string
	scopes    []string
	resource  string
	nonce     string
	issuer    string
	authTime  time.Time
	issuedAt  time.Time
	originJTI string
	eventID   string
}

// MintAccessToken returns an access token signed with the pool's current
// access key, with the claims /oauth2/token would give. It panics if
// o.Username names no user.
func (p *UserPool) MintAccessToken(o TokenOptions) string {
	is := p.issueFor(o)
	ttl := cmp.Or(o.TTL, p.opts.AccessTokenTTL)
	claims := mergeClaims(p.accessClaims(is, ttl), o.Claims)
	return p.signAs(false, claims, o.Header)
}

// MintIDToken returns an ID token signed with the pool's current ID key. It
// panics if o.Username is empty or names no user.
func (p *UserPool) MintIDToken(o TokenOptions) string {
	if o.Username == "" {
		panic("cognitotest: MintIDToken needs a Username")
	}
	is := p.issueFor(o)
	ttl := cmp.Or(o.TTL, p.opts.IDTokenTTL)
	claims := mergeClaims(p.idClaims(is, ttl, o.AccessToken), o.Claims)
	return p.signAs(true, claims, o.Header)
}

// issueFor turns TokenOptions into an issue, filling in defaults.
func (p *UserPool) issueFor(o TokenOptions) issue {
	is := issue{
		clientID: o.ClientID, scopes: slices.Clone(o.Scopes), resource: o.Resource,
		nonce: o.Nonce, issuer: cmp.Or(o.Issuer, p.Issuer),
		issuedAt: o.IssuedAt, originJTI: newUUID(), eventID: newUUID(),
	}
	if is.issuedAt.IsZero() {
		is.issuedAt = p.now()
	}
	is.authTime = is.issuedAt
	if o.Username != "" {
		u, ok := p.user(o.Username)
		if !ok {
			panic(fmt.Sprintf("cognitotest: no user %q", o.Username))
		}
		is.user = &u
		if is.scopes == nil {
			is.scopes = []string{"openid", "email", "profile"}
		}
	} else if is.scopes == nil {
		is.scopes = p.resourceScopes()
	}
	return is
}

// resourceScopes returns all resource-server scopes, sorted.
func (p *UserPool) resourceScopes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for s := range p.rsScopes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// accessClaims returns Cognito's access-token claims for is.
func (p *UserPool) accessClaims(is issue, ttl time.Duration) map[string]any {
	c := map[string]any{
		"iss":       is.issuer,
		"client_id": is.clientID,
		"token_use": "access",
		"scope":     strings.Join(is.scopes, " "),
		"auth_time": is.authTime.Unix(),
		"iat":       is.issuedAt.Unix(),
		"exp":       is.issuedAt.Add(ttl).Unix(),
		"jti":       newUUID(),
		"version":   2,
	}
	if is.resource != "" {
		c["aud"] = is.resource
	}
	if is.user == nil { // client credentials: no user, no session
		c["sub"] = is.clientID
		return c
	}
	c["sub"] = is.user.Sub
	c["username"] = is.user.Username
	c["origin_jti"] = is.originJTI
	c["event_id"] = is.eventID
	if len(is.user.Groups) > 0 {
		c["cognito:groups"] = slices.Clone(is.user.Groups)
	}
	return c
}

// idClaims returns Cognito's ID-token claims for is; accessToken, if set,
// gives at_hash.
func (p *UserPool) idClaims(is issue, ttl time.Duration, accessToken string) map[string]any {
	u := is.user
	c := make(map[string]any)
	for k, v := range u.Attributes {
		c[k] = v
	}
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = u.EmailVerified
	}
	if len(u.Groups) > 0 {
		c["cognito:groups"] = slices.Clone(u.Groups)
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["at_hash"] = base64.RawURLEncoding.EncodeToString(sum[:16])
	}
	if is.nonce != "" {
		c["nonce"] = is.nonce
	}
	for k, v := range map[string]any{
		"sub": u.Sub, "aud": is.clientID, "iss": is.issuer, "token_use": "id",
		"cognito:username": u.Username, "origin_jti": is.originJTI, "event_id": is.eventID,
		"auth_time": is.authTime.Unix(), "iat": is.issuedAt.Unix(),
		"exp": is.issuedAt.Add(ttl).Unix(), "jti": newUUID(),
	} {
		c[k] = v
	}
	return c
}

// mergeClaims applies extra to c; nil values delete.
func mergeClaims(c, extra map[string]any) map[string]any {
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// signAs signs claims with the current ID (idKey) or access key.
func (p *UserPool) signAs(idKey bool, claims, extraHeader map[string]any) string {
	p.mu.Lock()
	k := p.keys.access
	if idKey {
		k = p.keys.id
	}
	p.mu.Unlock()
	header := mergeClaims(map[string]any{"kid": k.kid}, extraHeader)
	return SignWithKey(header, claims, k.key)
}

// SignWithKey returns an RS256 JWS of claims signed with key, with header
// plus "alg":"RS256". Use it for tokens signed by a foreign key.
func SignWithKey(header, claims map[string]any, key *rsa.PrivateKey) string {
	input := signingInput(header, "RS256", claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic("cognitotest: sign: " + err.Error())
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// SignWithHS256 returns an HS256 JWS of claims with header plus
// "alg":"HS256", e.g. the algorithm-confusion attack that uses the
// DER-encoded RSA public key as the HMAC secret.
func SignWithHS256(header, claims map[string]any, secret []byte) string {
	input := signingInput(header, "HS256", claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// SignWithNone returns an unsigned JWS ("alg":"none", empty signature).
func SignWithNone(header, claims map[string]any) string {
	return signingInput(header, "none", claims) + "."
}

// signingInput encodes header (kid first, then alg, as Cognito orders
// them) and claims.
func signingInput(header map[string]any, alg string, claims map[string]any) string {
	h := map[string]any{}
	for k, v := range header {
		h[k] = v
	}
	h["alg"] = alg
	return encodeSegment(orderedJSON(h, "kid", "alg")) + "." + encodeSegment(mustJSON(claims))
}

// orderedJSON marshals m as an object whose first keys are first (when
// present), then the rest in sorted order.
func orderedJSON(m map[string]any, first ...string) []byte {
	var buf bytes.Buffer
	buf.WriteByte('{')
	write := func(k string) {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(mustJSON(k))
		buf.WriteByte(':')
		buf.Write(mustJSON(m[k]))
	}
	for _, k := range first {
		if _, ok := m[k]; ok {
			write(k)
		}
	}
	var rest []string
	for k := range m {
		if !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		write(k)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("cognitotest: marshal: " + err.Error())
	}
	return b
}

func encodeSegment(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeJWT returns the header and claims of a JWS without verifying it.
// Numbers decode as json.Number, so re-signing preserves them exactly.
func DecodeJWT(token string) (header, claims map[string]any, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("cognitotest: not a JWS: want 3 parts")
	}
	if header, err = decodeSegment(parts[0]); err != nil {
		return nil, nil, fmt.Errorf("cognitotest: header: %w", err)
	}
	if claims, err = decodeSegment(parts[1]); err != nil {
		return nil, nil, fmt.Errorf("cognitotest: claims: %w", err)
	}
	return header, claims, nil
}

func decodeSegment(s string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}
