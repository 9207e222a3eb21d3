package cognitomcp

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// TokenUse is the kind of Cognito token, from its token_use claim.
type TokenUse string

// The two kinds of token Cognito issues.
const (
	AccessToken TokenUse = "access" // the bearer credential for APIs; the default everywhere
	IDToken     TokenUse = "id"     // identity for the app client; accepted only when asked for
)

// Claims are the verified claims of a request: the Cognito user (or machine
// client) and, behind the proxy, the MCP client that called.
//
// A *Claims is shared with the verified-token cache: every request that
// carries the same token, concurrent or later, gets the same *Claims. Treat
// it as read-only; to change it, copy it first (and clone the slices and
// MCPClient), or the change reaches later requests with that token. Its
// methods are safe on a nil *Claims, which holds no group and no scope.
type Claims struct {
	Issuer   string   // iss
	Subject  string   // sub: the user's stable id; the app client id for client_credentials tokens
	Username string   // username (access token) or cognito:username (ID token); empty for machine tokens
	ClientID string   // the Cognito app client: client_id (access token) or aud (ID token)
	TokenUse TokenUse // token_use
	Groups   []string // cognito:groups; nil when the user is in no group
	Scopes   []string // scope, split on spaces; behind the proxy, the scopes granted to the MCP client
	Email    string   // email, from an ID token (behind the proxy, from the ID token verified at sign-in)
	Expiry   time.Time
	IssuedAt time.Time

	// MCPClient is the MCP client that presented the token. It is nil
	// outside the proxy (a Cognito token verified directly has no MCP client).
	MCPClient *ClientInfo

	raw     json.RawMessage // the token payload (behind the proxy, the Cognito claims merged)
	grantID string          // behind the proxy, the sign-in the token belongs to
	tokenID string          // behind the proxy, the token's jti
}

// ClientInfo identifies an MCP client registered with the proxy.
type ClientInfo struct {
	ID   string // the client_id it registered with (or its metadata document URL)
	Name string // client_name, as the client declared it: not verified
}

// InGroup reports whether the user is in at least one of groups. It is
// false for a nil *Claims.
func (c *Claims) InGroup(groups ...string) bool {
	if c == nil {
		return false
	}
	for _, g := range groups {
		if slices.Contains(c.Groups, g) {
			return true
		}
	}
	return false
}

// InAllGroups reports whether the user is in every one of groups. It is
// false for a nil *Claims, even with no groups named, and true for a
// non-nil one with no groups named.
func (c *Claims) InAllGroups(groups ...string) bool {
	if c == nil {
		return false
	}
	for _, g := range groups {
		if !slices.Contains(c.Groups, g) {
			return false
		}
	}
	return true
}

// HasScope reports whether scope was granted. It is false for a nil
// *Claims.
func (c *Claims) HasScope(scope string) bool {
	return c != nil && slices.Contains(c.Scopes, scope)
}

// Decode unmarshals the raw token payload into v, for claims this type does
// not name (custom:* attributes, auth_time, origin_jti, …). Behind the proxy
// the payload is the Cognito access token's claims with the ID token's
// added (ID-token values win for keys in both). It returns an error, and
// leaves v alone, when c is nil or carries no payload (Claims built by
// hand).
func (c *Claims) Decode(v any) error {
	if c == nil || len(c.raw) == 0 {
		return errors.New("cognitomcp: claims carry no raw payload")
	}
	return json.Unmarshal(c.raw, v)
}

// claimsKey is the context key of the request's authentication.
type claimsKey struct{}

// authCtx is the context RequireToken hands down: the claims, and how this
// endpoint challenges (so RequireScopes answers with the same
// resource_metadata and error handler). One allocation carries both.
type authCtx struct {
	context.Context
	claims *Claims
	mw     *middleware // nil when set by NewContext
}

func (c *authCtx) Value(key any) any {
	if key == (claimsKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *authCtx) String() string { return "cognitomcp.authContext" }

// NewContext returns a copy of ctx carrying c, for tests and for adapters
// that authenticate some other way.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return &authCtx{Context: ctx, claims: c}
}

// ClaimsFromContext returns the claims that RequireToken (or NewContext)
// stored in ctx, and false when there are none (RequireToken is not in
// front of the handler).
//
// It gives the claims of the request only where ctx is that request's
// context: a net/http handler's r.Context(), and tools of
// github.com/mark3labs/mcp-go, which hands each tool the context of the
// request that called it. Tools of github.com/modelcontextprotocol/go-sdk
// with stateful sessions (its default) get the context of the request that
// opened the session, so there ClaimsFromContext returns that request's
// claims: possibly expired, and another user's if the session id leaks. With
// go-sdk, wrap the MCP handler in auth.RequireBearerToken with a verifier
// that returns the claims from ClaimsFromContext(r.Context()) as the
// TokenInfo (its UserID the claims' Subject, which also binds sessions to
// the user), and read them in tools from req.Extra.TokenInfo; see
// Example_goSDK.
//
// The *Claims is shared with the verified-token cache: treat it as
// read-only, and copy it before changing it, or the change reaches later
// requests that carry the same token.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	st, ok := ctx.Value(claimsKey{}).(*authCtx)
	if !ok || st.claims == nil {
		return nil, false
	}
	return st.claims, true
}

func authFromContext(ctx context.Context) *authCtx {
	st, _ := ctx.Value(claimsKey{}).(*authCtx)
	return st
}

// cognitoClaims is the wire form of a Cognito token payload.
type cognitoClaims struct {
	Issuer          string   `json:"iss"`
	Subject         string   `json:"sub"`
	Audience        audience `json:"aud"`
	ClientID        string   `json:"client_id"`
	TokenUse        TokenUse `json:"token_use"`
	Username        string   `json:"username"`
	CognitoUsername string   `json:"cognito:username"`
	Groups          []string `json:"cognito:groups"`
	Scope           string   `json:"scope"`
	Email           string   `json:"email"`
	Expiry          *int64   `json:"exp"`
	IssuedAt        *int64   `json:"iat"`
	NotBefore       *int64   `json:"nbf"`
}

// audience is the aud claim: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

func unixTime(p *int64) time.Time {
	if p == nil {
		return time.Time{}
	}
	return time.Unix(*p, 0)
}
