package cognitomcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

const testPRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

// echoClaims answers 200 with the user's name, or "anonymous".
var echoClaims = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := cognitomcp.ClaimsFromContext(r.Context())
	if !ok {
		_, _ = w.Write([]byte("anonymous"))
		return
	}
	_, _ = w.Write([]byte(c.Username))
})

func TestRequireToken(t *testing.T) {
	f := newVerifierFixture(t, 0)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mw := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier: f.access, ResourceMetadataURL: testPRM, Scopes: []string{"openid"}, Logger: logger,
	})
	h := mw(echoClaims)
	alice := f.accessToken(nil)
	expired := f.accessToken(func(o *cognitotest.TokenOptions) { o.IssuedAt = f.clock.Now().Add(-2 * time.Hour) })
	noScope := f.accessToken(func(o *cognitotest.TokenOptions) { o.Scopes = []string{"email"} })
	idToken := f.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: f.client.ID})
	challenge := `Bearer resource_metadata="` + testPRM + `", scope="openid"`

	tests := []struct {
		name       string
		method     string
		target     string
		headers    map[string][]string
		body       string
		wantStatus int
		wantAuth   string // exact WWW-Authenticate; "-" for absent
		wantBody   string // exact body for 200, error code otherwise
	}{
		{name: "valid token", headers: bearer(alice), wantStatus: 200, wantAuth: "-", wantBody: "alice"},
		{name: "scheme in lower case", headers: map[string][]string{"Authorization": {"bearer " + alice}}, wantStatus: 200, wantAuth: "-", wantBody: "alice"},
		{name: "scheme in upper case", headers: map[string][]string{"Authorization": {"BEARER " + alice}}, wantStatus: 200, wantAuth: "-", wantBody: "alice"},
		{name: "no token", wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
		{name: "another scheme", headers: map[string][]string{"Authorization": {"Basic dXNlcjpwYXNz"}}, wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
		{name: "token in the query is ignored", target: "/mcp?access_token=" + alice, wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
		{name: "token in a form is ignored", method: http.MethodPost, body: "access_token=" + alice,
			headers: map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
		{name: "two Authorization headers", headers: map[string][]string{"Authorization": {"Bearer " + alice, "Bearer " + alice}},
			wantStatus: 400, wantAuth: `Bearer error="invalid_request", error_description="more than one Authorization header", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_request"},
		{name: "bearer without token", headers: map[string][]string{"Authorization": {"Bearer "}}, wantStatus: 400,
			wantAuth: `Bearer error="invalid_request", error_description="malformed bearer token", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_request"},
		{name: "token with a space inside", headers: map[string][]string{"Authorization": {"Bearer ab cd"}}, wantStatus: 400,
			wantAuth: `Bearer error="invalid_request", error_description="malformed bearer token", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_request"},
		{name: "garbage token", headers: bearer("garbage"), wantStatus: 401,
			wantAuth: `Bearer error="invalid_token", error_description="invalid token", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_token"},
		{name: "expired token", headers: bearer(expired), wantStatus: 401,
			wantAuth: `Bearer error="invalid_token", error_description="token expired", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_token"},
		{name: "ID token", headers: bearer(idToken), wantStatus: 401,
			wantAuth: `Bearer error="invalid_token", error_description="invalid token", resource_metadata="` + testPRM + `", scope="openid"`, wantBody: "invalid_token"},
		// The scope the token holds (email) stays in the challenge, as
		// RequireScopes keeps it: a client asks for exactly what it is told.
		{name: "missing required scope", headers: bearer(noScope), wantStatus: 403,
			wantAuth: `Bearer error="insufficient_scope", error_description="the token lacks a required scope", resource_metadata="` + testPRM + `", scope="openid email"`, wantBody: "insufficient_scope"},
		{name: "CORS preflight is refused like any request without a token", method: http.MethodOptions,
			headers: map[string][]string{"Access-Control-Request-Method": {"POST"}, "Origin": {"http://localhost:6274"}}, wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
		{name: "OPTIONS that is no preflight", method: http.MethodOptions, wantStatus: 401, wantAuth: challenge, wantBody: "invalid_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, target := tc.method, tc.target
			if method == "" {
				method = http.MethodGet
			}
			if target == "" {
				target = "/mcp"
			}
			req := httptest.NewRequest(method, target, strings.NewReader(tc.body))
			for k, vs := range tc.headers {
				req.Header[k] = vs
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.wantStatus, rec.Code)
			if tc.wantAuth == "-" {
				assert.Empty(t, rec.Header().Values("WWW-Authenticate"))
			} else {
				assert.Equal(t, []string{tc.wantAuth}, rec.Header().Values("WWW-Authenticate"))
			}
			if tc.wantStatus == 200 {
				assert.Equal(t, tc.wantBody, rec.Body.String())
				return
			}
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body map[string]string
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, tc.wantBody, body["error"])
			assert.NotEmpty(t, body["error_description"])
			assert.Len(t, body, 2)
		})
	}
	for _, tok := range []string{alice, expired, noScope, idToken} {
		assert.NotContains(t, logs.String(), tok[strings.LastIndex(tok, ".")+1:], "a token signature reached the log")
	}
	assert.Contains(t, logs.String(), "request refused")
	assert.Contains(t, logs.String(), "request admitted")
}

func bearer(tok string) map[string][]string {
	return map[string][]string{"Authorization": {"Bearer " + tok}}
}

func TestRequireTokenKeySetUnavailable(t *testing.T) {
	f := newVerifierFixture(t, 0)
	f.pool.RotateKeys()
	tok := f.accessToken(nil)
	f.pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Status: 500})
	f.clock.Advance(2 * time.Minute)
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM})(echoClaims)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil).WithContext(t.Context()))
	// without a token: 401 even while the keys are down
	assert.Equal(t, 401, rec.Code)
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	h.ServeHTTP(rec, req)
	assert.Equal(t, 503, rec.Code)
	assert.Equal(t, "5", rec.Header().Get("Retry-After"))
	assert.Empty(t, rec.Header().Get("WWW-Authenticate"))
	assert.Contains(t, rec.Body.String(), `"temporarily_unavailable"`)
}

func TestRequireGroupsAndScopes(t *testing.T) {
	f := newVerifierFixture(t, 0)
	alice := f.accessToken(nil)
	bob := f.accessToken(func(o *cognitotest.TokenOptions) { o.Username = "bob" })
	tokenMW := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM})
	scopedMW := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM, Scopes: []string{"openid", "email"}})
	tests := []struct {
		name       string
		handler    http.Handler
		token      string
		wantStatus int
		wantAuth   string
		wantCode   string
	}{
		{"any group: member", tokenMW(cognitomcp.RequireGroups("nope", "admin")(echoClaims)), alice, 200, "", ""},
		{"any group: not a member", tokenMW(cognitomcp.RequireGroups("admin")(echoClaims)), bob, 403, "", "access_denied"},
		{"all groups: member of all", tokenMW(cognitomcp.RequireAllGroups("admin", "staff")(echoClaims)), alice, 200, "", ""},
		{"all groups: member of some", tokenMW(cognitomcp.RequireAllGroups("admin", "root")(echoClaims)), alice, 403, "", "access_denied"},
		{"groups without RequireToken", cognitomcp.RequireGroups("admin")(echoClaims), alice, 401, "Bearer", "invalid_token"},
		{"scopes without RequireToken", cognitomcp.RequireScopes("openid")(echoClaims), alice, 401, "Bearer", "invalid_token"},
		{"scopes held", tokenMW(cognitomcp.RequireScopes("openid", "email")(echoClaims)), alice, 200, "", ""},
		// The scopes the token holds (openid email profile) stay in the
		// challenge: a client asks for exactly what it is told.
		{"scope missing: step-up challenge", tokenMW(cognitomcp.RequireScopes("openid", "mcp/admin")(echoClaims)), alice, 403,
			`Bearer error="insufficient_scope", error_description="the token lacks a required scope", resource_metadata="` + testPRM + `", scope="openid email profile mcp/admin"`, "insufficient_scope"},
		// The client asks for exactly the scope named: without RequireToken's
		// own, its new token would be refused by RequireToken in turn.
		{"scope missing behind RequireToken's scopes: step-up keeps them", scopedMW(cognitomcp.RequireScopes("mcp/admin", "email")(echoClaims)), alice, 403,
			`Bearer error="insufficient_scope", error_description="the token lacks a required scope", resource_metadata="` + testPRM + `", scope="openid email profile mcp/admin"`, "insufficient_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			rec := httptest.NewRecorder()
			tc.handler.ServeHTTP(rec, req)
			assert.Equal(t, tc.wantStatus, rec.Code)
			assert.Equal(t, tc.wantAuth, rec.Header().Get("WWW-Authenticate"))
			if tc.wantCode != "" {
				var body map[string]string
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				assert.Equal(t, tc.wantCode, body["error"])
				assert.NotContains(t, rec.Body.String(), "admin", "group names stay out of responses")
			}
		})
	}
}

// TestPreflightNeverReachesTheHandler: a CORS preflight carries no token;
// RequireToken and the authorization middleware refuse it like any request
// without one, and the handler behind them never runs (an OPTIONS with
// Access-Control-Request-Method is anyone's to send).
func TestPreflightNeverReachesTheHandler(t *testing.T) {
	f := newVerifierFixture(t, 0)
	tokenMW := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM})
	reached := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the protected handler ran") })
	for name, h := range map[string]http.Handler{
		"RequireToken":                tokenMW(reached),
		"RequireToken, RequireGroups": tokenMW(cognitomcp.RequireGroups("admin")(reached)),
		"RequireGroups alone":         cognitomcp.RequireGroups("admin")(reached),
		"RequireAllGroups alone":      cognitomcp.RequireAllGroups("admin")(reached),
		"RequireScopes alone":         cognitomcp.RequireScopes("openid")(reached),
	} {
		req := httptest.NewRequest(http.MethodOptions, "/mcp", nil)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Origin", "http://localhost:6274")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, name)
		assert.True(t, strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer"), name)
	}
}

// TestRequireNothingPanics: an authorization middleware built from an empty
// list (a configuration left blank) would admit nobody or everybody; it
// panics at construction instead. The list is copied: changing the caller's
// slice afterwards changes nothing.
func TestRequireNothingPanics(t *testing.T) {
	assert.PanicsWithValue(t, "cognitomcp: RequireGroups with nothing to require", func() { cognitomcp.RequireGroups() })
	assert.PanicsWithValue(t, "cognitomcp: RequireAllGroups with nothing to require", func() { cognitomcp.RequireAllGroups([]string{}...) })
	assert.PanicsWithValue(t, "cognitomcp: RequireScopes with nothing to require", func() { cognitomcp.RequireScopes() })
	assert.PanicsWithValue(t, `cognitomcp: RequireGroups: "" is not a name`, func() { cognitomcp.RequireGroups(strings.Split("", ",")...) })
	assert.PanicsWithValue(t, `cognitomcp: RequireScopes: "a b" is not a name`, func() { cognitomcp.RequireScopes("a b") })

	f := newVerifierFixture(t, 0)
	alice := f.accessToken(nil) // in admin and staff
	groups := []string{"root"}
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access})(cognitomcp.RequireAllGroups(groups...)(echoClaims))
	groups[0] = "admin"
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusForbidden, rec.Code)
}

// TestRequireTokenVerifierFuncErrors: a verifier of one's own is answered
// by what its error wraps: ErrInvalidToken 401 invalid_token with the
// challenge, ErrUnavailable 503 with Retry-After, anything else 500; and
// its claims reach the handler. Neither claims nor an error breaks the
// TokenVerifier contract: 500, logged, and the request never reaches the
// handler (it used to panic on the nil claims).
func TestRequireTokenVerifierFuncErrors(t *testing.T) {
	carol := &cognitomcp.Claims{Username: "carol", TokenUse: cognitomcp.AccessToken}
	for _, tc := range []struct {
		name       string
		claims     *cognitomcp.Claims
		err        error
		wantStatus int
		wantCode   string
		wantLog    string
	}{
		{"invalid token", nil, fmt.Errorf("unknown key: %w", cognitomcp.ErrInvalidToken), 401, "invalid_token", "unknown key"},
		{"a token sentinel, bare", nil, cognitomcp.ErrTokenExpired, 401, "invalid_token", "token expired"},
		{"revoked", nil, fmt.Errorf("revoked upstream: %w", cognitomcp.ErrTokenRevoked), 401, "invalid_token", "revoked upstream"},
		{"unavailable", nil, fmt.Errorf("introspection down: %w", cognitomcp.ErrUnavailable), 503, "temporarily_unavailable", "introspection down"},
		{"another error", nil, errors.New("something else"), 500, "server_error", "something else"},
		{"neither claims nor an error", nil, nil, 500, "server_error", "TokenVerifierFunc returned neither claims nor an error"},
		{"claims", carol, nil, 200, "", "request admitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := cognitomcp.TokenVerifierFunc(func(_ context.Context, raw string) (*cognitomcp.Claims, error) {
				return tc.claims, tc.err
			})
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v, ResourceMetadataURL: testPRM, Logger: logger})(echoClaims)
			req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			req.Header.Set("Authorization", "Bearer opaque-token")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.wantStatus, rec.Code)
			assert.Contains(t, logs.String(), tc.wantLog)
			switch tc.wantStatus {
			case 200:
				assert.Equal(t, "carol", rec.Body.String())
			case 401:
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
			case 500:
				assert.Empty(t, rec.Header().Get("WWW-Authenticate"), "signing in again cannot help")
			case 503:
				assert.Equal(t, "5", rec.Header().Get("Retry-After"))
			}
			if tc.wantCode != "" {
				assert.Contains(t, rec.Body.String(), `"error":"`+tc.wantCode+`"`)
				assert.NotContains(t, rec.Body.String(), tc.wantLog, "the cause stays out of the answer")
				assert.NotContains(t, rec.Body.String(), "carol", "the handler never ran")
			}
		})
	}
}

// TestInsufficientScopeChallenge: however a scope is required (RequireToken's
// Scopes, the Verifier's RequiredScopes, RequireScopes), the 403 challenge
// names the scopes to ask for: the required ones and those the token already
// holds (a client asks for exactly the scopes a challenge names, so one left
// out would be lost at the next sign-in).
func TestInsufficientScopeChallenge(t *testing.T) {
	f := newVerifierFixture(t, 0)
	tok := f.accessToken(func(o *cognitotest.TokenOptions) { o.Scopes = []string{"openid", "profile"} })
	requiring, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		UserPoolID: f.pool.PoolID, ClientIDs: []string{f.client.ID}, RequiredScopes: []string{"openid", "mcp/tools"},
		HTTPClient: f.pool.HTTPClient(), Now: f.clock.Now,
	})
	require.NoError(t, err)
	tests := []struct {
		name      string
		handler   http.Handler
		wantScope string
	}{
		{"MiddlewareConfig.Scopes", cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM,
			Scopes: []string{"openid", "mcp/tools"}})(echoClaims), "openid mcp/tools profile"},
		{"VerifierConfig.RequiredScopes", cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: requiring, ResourceMetadataURL: testPRM})(echoClaims),
			"openid profile mcp/tools"},
		{"RequireScopes", cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: f.access, ResourceMetadataURL: testPRM})(
			cognitomcp.RequireScopes("openid", "mcp/tools")(echoClaims)), "openid profile mcp/tools"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			tc.handler.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusForbidden, rec.Code)
			assert.Equal(t, `Bearer error="insufficient_scope", error_description="the token lacks a required scope", resource_metadata="`+testPRM+`", scope="`+tc.wantScope+`"`,
				rec.Header().Get("WWW-Authenticate"))
		})
	}
}

// TestRequireTokenScopesMustBeNames: a blank scope, or one holding white
// space (what splitting an empty setting gives), would refuse every
// request; RequireToken panics on it at construction, as RequireScopes
// does. No scopes at all require nothing.
func TestRequireTokenScopesMustBeNames(t *testing.T) {
	v := cognitomcp.TokenVerifierFunc(func(context.Context, string) (*cognitomcp.Claims, error) {
		return &cognitomcp.Claims{Username: "carol", Scopes: []string{"openid"}}, nil
	})
	tests := []struct {
		name      string
		scopes    []string
		wantPanic string // "" for none
	}{
		{name: "nil", scopes: nil},
		{name: "empty", scopes: []string{}},
		{name: "names", scopes: []string{"openid"}},
		{name: "split of an empty setting", scopes: strings.Split("", " "), wantPanic: `cognitomcp: RequireToken: MiddlewareConfig.Scopes: "" is not a name`},
		{name: "white space", scopes: []string{"openid", "\t"}, wantPanic: `cognitomcp: RequireToken: MiddlewareConfig.Scopes: "\t" is not a name`},
		{name: "two in one", scopes: []string{"openid email"}, wantPanic: `cognitomcp: RequireToken: MiddlewareConfig.Scopes: "openid email" is not a name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			build := func() { cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v, Scopes: tc.scopes}) }
			if tc.wantPanic != "" {
				assert.PanicsWithValue(t, tc.wantPanic, build)
				return
			}
			require.NotPanics(t, build)
			h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v, Scopes: tc.scopes})(echoClaims)
			req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			req.Header.Set("Authorization", "Bearer opaque-token")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusOK, rec.Code)
		})
	}
}

func TestRequireTokenErrorHandler(t *testing.T) {
	f := newVerifierFixture(t, 0)
	expired := f.accessToken(func(o *cognitotest.TokenOptions) { o.IssuedAt = f.clock.Now().Add(-2 * time.Hour) })
	var got error
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier: f.access, ResourceMetadataURL: testPRM,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusTeapot)
		},
	})(echoClaims)
	req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+expired)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusTeapot, rec.Code)
	assert.ErrorIs(t, got, cognitomcp.ErrTokenExpired)
	assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`, "the challenge is set before the hook runs")
}

func TestRequireTokenPanicsWithoutVerifier(t *testing.T) {
	assert.PanicsWithValue(t, "cognitomcp: RequireToken: MiddlewareConfig.Verifier is nil", func() {
		cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{})
	})
}

func TestNewContext(t *testing.T) {
	c := &cognitomcp.Claims{Subject: "u1", Groups: []string{"admin"}}
	ctx := cognitomcp.NewContext(t.Context(), c)
	got, ok := cognitomcp.ClaimsFromContext(ctx)
	require.True(t, ok)
	assert.Same(t, c, got)
	_, ok = cognitomcp.ClaimsFromContext(t.Context())
	assert.False(t, ok)
}

// TestResourceMetadataHandler: resource-server mode's RFC 9728 document,
// as MCP clients read it (CORS included), and the configurations refused.
func TestResourceMetadataHandler(t *testing.T) {
	h, err := cognitomcp.ResourceMetadataHandler(cognitomcp.ResourceMetadata{
		Resource:             "https://mcp.example.com/mcp",
		AuthorizationServers: cognitomcp.CognitoIssuers("eu-west-1_AbCdEf123"),
		Scopes:               []string{"openid", "mcp-api/tools"},
		ResourceName:         "Notes",
	})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, testPRM, nil)
	req.Header.Set("Origin", "http://localhost:6274")
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	assert.JSONEq(t, `{"resource":"https://mcp.example.com/mcp",
		"authorization_servers":["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123","https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"],
		"scopes_supported":["openid","mcp-api/tools"],"bearer_methods_supported":["header"],"resource_name":"Notes"}`, rec.Body.String())

	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodOptions, testPRM, nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "GET")
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusNoContent, rec.Code, "a browser's preflight")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, testPRM, nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	for name, m := range map[string]cognitomcp.ResourceMetadata{
		"no resource":                {AuthorizationServers: []string{"https://as.example"}},
		"a relative resource":        {Resource: "/mcp", AuthorizationServers: []string{"https://as.example"}},
		"plain http off loopback":    {Resource: "http://mcp.example.com/mcp", AuthorizationServers: []string{"https://as.example"}},
		"a fragment":                 {Resource: "https://mcp.example.com/mcp#x", AuthorizationServers: []string{"https://as.example"}},
		"no authorization server":    {Resource: "https://mcp.example.com/mcp"},
		"a bad authorization server": {Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{"as.example"}},
	} {
		_, err := cognitomcp.ResourceMetadataHandler(m)
		assert.Error(t, err, name)
	}
}

// TestCheckOrigin: resource-server mode's DNS-rebinding defence and CORS,
// as Proxy.Handler applies them: a foreign Origin is refused before the
// handler; an allowed one (configured in another form than browsers send)
// gets the headers a browser-based MCP client needs, WWW-Authenticate and
// Mcp-Session-Id exposed; its preflight is answered; no Origin passes.
func TestCheckOrigin(t *testing.T) {
	reached := 0
	h := cognitomcp.CheckOrigin("HTTPS://Inspector.Example:443")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+testPRM+`"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	send := func(method, origin string, preflight bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "https://mcp.example.com/mcp", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if preflight {
			req.Header.Set("Access-Control-Request-Method", "POST")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	rec := send(http.MethodPost, "https://evil.example", false)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"))
	assert.Zero(t, reached, "refused before the handler")

	rec = send(http.MethodPost, "https://inspector.example", false)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, "https://inspector.example", rec.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "WWW-Authenticate, Mcp-Session-Id", rec.Header().Get("Access-Control-Expose-Headers"), "the client reads the challenge and the session")

	rec = send(http.MethodOptions, "https://inspector.example", true)
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.Contains(t, rec.Header().Get("Access-Control-Allow-Headers"), "Authorization")
	assert.Contains(t, rec.Header().Get("Access-Control-Allow-Headers"), "Mcp-Session-Id")
	assert.Equal(t, 1, reached, "the preflight is answered here")

	rec = send(http.MethodPost, "", false)
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "no Origin: not a browser")
	assert.Equal(t, 2, reached)

	assert.Panics(t, func() { cognitomcp.CheckOrigin() }, "an empty list would refuse every browser")
}

// TestRequireTokenLogLevels: a refusal that is the client's doing is
// logged at Info; one that is the server's (signing keys or the store
// unreachable) at Error, where an operator looks; a request without a
// token (every MCP client's first) at Debug. Each line names the path.
func TestRequireTokenLogLevels(t *testing.T) {
	for err, level := range map[error]string{cognitomcp.ErrTokenExpired: "INFO", cognitomcp.ErrUnavailable: "ERROR", cognitomcp.ErrNoToken: "DEBUG"} {
		var logs bytes.Buffer
		h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
			Verifier: cognitomcp.TokenVerifierFunc(func(context.Context, string) (*cognitomcp.Claims, error) { return nil, err }),
			Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})(echoClaims)
		req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		if err != cognitomcp.ErrNoToken {
			req.Header.Set("Authorization", "Bearer abc")
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		assert.Contains(t, logs.String(), "level="+level+` msg="cognitomcp: request refused"`, err.Error())
		assert.Contains(t, logs.String(), "path=/mcp")
	}
}

// TestRequireTokenLogsAShortPath: a refusal's log line holds the path cut
// short, whatever its length (a path can be as long as net/http's header
// limit, 1 MiB), and quoted.
func TestRequireTokenLogsAShortPath(t *testing.T) {
	var logs bytes.Buffer
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier: cognitomcp.TokenVerifierFunc(func(context.Context, string) (*cognitomcp.Claims, error) { return nil, cognitomcp.ErrTokenExpired }),
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})(echoClaims)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.URL.Path = "/" + strings.Repeat("a", 512<<10) + "\nlevel=ERROR msg=forged"
	r.Header.Set("Authorization", "Bearer abc")
	h.ServeHTTP(httptest.NewRecorder(), r)
	assert.Less(t, logs.Len(), 4096, "one refusal logged %d bytes", logs.Len())
	assert.NotContains(t, logs.String(), "\nlevel=ERROR")
}
