package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/cognitomcp/cognitomcp"
)

// Identity is what the whoami tool answers: the Cognito user and the MCP
// client that called.
type Identity struct {
	Sub       string     `json:"sub"`
	Username  string     `json:"username,omitempty"`
	Groups    []string   `json:"groups"`
	Scopes    []string   `json:"scopes"`
	Email     string     `json:"email,omitempty"`
	MCPClient *MCPClient `json:"mcp_client,omitempty"`
}

// MCPClient is the MCP client that presented the token.
type MCPClient struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// IdentityOf returns the identity in c.
func IdentityOf(c *cognitomcp.Claims) Identity {
	id := Identity{Sub: c.Subject, Username: c.Username, Email: c.Email,
		Groups: append([]string{}, c.Groups...), Scopes: append([]string{}, c.Scopes...)}
	if c.MCPClient != nil {
		id.MCPClient = &MCPClient{ID: c.MCPClient.ID, Name: c.MCPClient.Name}
	}
	return id
}

// AdminGroup is the Cognito group admin_report requires.
const AdminGroup = "admin"

// Report is what the admin_report tool answers.
type Report struct {
	RequestedBy string    `json:"requested_by"`
	GeneratedAt time.Time `json:"generated_at"`
	Summary     string    `json:"summary"`
}

// AdminReport returns the report for c, or an error for the tool result
// when c is not in AdminGroup.
func AdminReport(c *cognitomcp.Claims, now time.Time) (Report, error) {
	if !c.InGroup(AdminGroup) {
		groups := strings.Join(c.Groups, ", ")
		if groups == "" {
			groups = "(none)"
		}
		return Report{}, fmt.Errorf("admin_report requires membership in the Cognito group %q; you are in: %s", AdminGroup, groups)
	}
	who := c.Username
	if who == "" {
		who = c.Subject
	}
	return Report{RequestedBy: who, GeneratedAt: now.UTC(), Summary: "all systems nominal"}, nil
}
