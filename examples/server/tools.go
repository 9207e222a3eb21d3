package main

import (
	"context"
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/examples/internal/demo"
)

func addTools(server *mcp.Server) {
	mcp.AddTool(server, &mcp.Tool{
		Name:        "whoami",
		Description: "Returns the signed-in Cognito user (sub, username, groups, scopes, email) and the MCP client that called.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, whoami)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "admin_report",
		Description: `An administrative report; requires membership in the Cognito group "admin".`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, adminReport)
}

func whoami(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, demo.Identity, error) {
	c, err := claims(req)
	if err != nil {
		return nil, demo.Identity{}, err
	}
	return nil, demo.IdentityOf(c), nil
}

// adminReport answers a tool error (IsError) to users outside the group: the
// error returned by a go-sdk typed handler becomes the result's text.
func adminReport(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, demo.Report, error) {
	c, err := claims(req)
	if err != nil {
		return nil, demo.Report{}, err
	}
	report, err := demo.AdminReport(c, time.Now())
	return nil, report, err
}

// claims returns the Cognito claims of the request that called the tool.
func claims(req *mcp.CallToolRequest) (*cognitomcp.Claims, error) {
	if req.Extra != nil && req.Extra.TokenInfo != nil {
		if c, ok := req.Extra.TokenInfo.Extra["claims"].(*cognitomcp.Claims); ok {
			return c, nil
		}
	}
	return nil, errors.New("not signed in")
}
