// Command server is an MCP server (the official Go SDK,
// github.com/modelcontextprotocol/go-sdk) behind Amazon Cognito sign-in.
//
// With no configuration it starts a fake Cognito on loopback and prints the
// demo users and how to connect:
//
//	go run ./examples/server
//
// Against a real user pool:
//
//	COGNITO_USER_POOL_ID=eu-west-1_AbCdEf123 COGNITO_CLIENT_ID=… COGNITO_CLIENT_SECRET=… \
//	COGNITO_DOMAIN=https://myapp.auth.eu-west-1.amazoncognito.com go run ./examples/server
//
// The app client's allowed callback URLs must contain BASE_URL+"/auth/callback".
// See examples/internal/demo for every variable.
package main

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/examples/internal/demo"
)

func main() {
	demo.Main("examples/server", newMCPHandler)
}

// newMCPHandler returns the streamable HTTP handler of the MCP server,
// stateless when cfg says so (with REDIS_URL: go-sdk's sessions live in one
// replica's memory). The proxy in front of it has verified the token and put
// the claims in the request context; the bridge hands them to go-sdk as its
// TokenInfo, which the tools read (a stateful session keeps the context of
// the request that created it, so tools must not read the claims from ctx).
func newMCPHandler(cfg demo.MCPConfig) http.Handler {
	server := mcp.NewServer(&mcp.Implementation{Name: "cognitomcp-example", Version: "1.0.0"}, &mcp.ServerOptions{Logger: cfg.Logger})
	addTools(server)
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Logger: cfg.Logger, Stateless: cfg.Stateless})
	return auth.RequireBearerToken(claimsBridge, nil)(streamable)
}

// claimsBridge is the go-sdk TokenVerifier that reads the claims
// cognitomcp's middleware verified, so each token is verified once. Its
// UserID binds go-sdk's sessions to the Cognito user: a session answers
// another user's token with 403.
func claimsBridge(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
	c, ok := cognitomcp.ClaimsFromContext(r.Context())
	if !ok {
		return nil, auth.ErrInvalidToken // unreachable behind proxy.Handler
	}
	return &auth.TokenInfo{UserID: c.Subject, Scopes: c.Scopes, Expiration: c.Expiry,
		Extra: map[string]any{"claims": c}}, nil
}
