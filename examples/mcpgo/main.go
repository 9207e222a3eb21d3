// Command mcpgo is examples/server on github.com/mark3labs/mcp-go: an MCP
// server behind Amazon Cognito sign-in, with the same tools and the same
// environment (see examples/internal/demo).
//
//	go run ./examples/mcpgo
//
// mcp-go passes each request's context to its tool handlers, so they read
// the Cognito user with cognitomcp.ClaimsFromContext(ctx).
package main

import (
	"context"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/examples/internal/demo"
)

func main() {
	demo.Main("examples/mcpgo", newMCPHandler)
}

// newMCPHandler returns the streamable HTTP handler of the MCP server, whose
// session IDs are bound to the Cognito user (see userSessions). It needs
// nothing for cfg.Stateless: the session IDs are checked for their user's
// tag only, never against one process's memory, so any replica answers any
// request. (mcp-go's WithStateLess would rather give every client the same
// empty session ID for its event stream.)
func newMCPHandler(cfg demo.MCPConfig) http.Handler {
	s := server.NewMCPServer("cognitomcp-example-mcpgo", "1.0.0")
	s.AddTool(mcp.NewTool("whoami",
		mcp.WithDescription("Returns the signed-in Cognito user (sub, username, groups, scopes, email) and the MCP client that called."),
		mcp.WithOutputSchema[demo.Identity](),
		mcp.WithReadOnlyHintAnnotation(true),
	), whoami)
	s.AddTool(mcp.NewTool("admin_report",
		mcp.WithDescription(`An administrative report; requires membership in the Cognito group "admin".`),
		mcp.WithReadOnlyHintAnnotation(true),
	), adminReport)
	return bindSessions(server.NewStreamableHTTPServer(s, server.WithStreamableHTTPLogger(cfg.Logger),
		server.WithSessionIdManagerResolver(userSessions{})))
}

func whoami(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	c, ok := cognitomcp.ClaimsFromContext(ctx)
	if !ok {
		return mcp.NewToolResultError("not signed in"), nil
	}
	return mcp.NewToolResultStructuredOnly(demo.IdentityOf(c)), nil
}

func adminReport(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	c, ok := cognitomcp.ClaimsFromContext(ctx)
	if !ok {
		return mcp.NewToolResultError("not signed in"), nil
	}
	report, err := demo.AdminReport(c, time.Now())
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultStructuredOnly(report), nil
}
