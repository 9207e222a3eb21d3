package cognitomcp_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cognitomcp/cognitomcp"
)

// TestClaimsNilHoldsNothing: a nil *Claims (ClaimsFromContext without
// RequireToken in front) holds no group and no scope, and does not panic.
func TestClaimsNilHoldsNothing(t *testing.T) {
	var c *cognitomcp.Claims
	tests := []struct {
		name string
		got  func() bool
	}{
		{"InGroup", func() bool { return c.InGroup("admin") }},
		{"InGroup of none", func() bool { return c.InGroup() }},
		{"InAllGroups", func() bool { return c.InAllGroups("admin") }},
		{"InAllGroups of none", func() bool { return c.InAllGroups() }},
		{"HasScope", func() bool { return c.HasScope("openid") }},
		{"HasScope empty", func() bool { return c.HasScope("") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.NotPanics(t, func() { assert.False(t, tc.got()) })
		})
	}
	t.Run("Decode", func(t *testing.T) {
		var v map[string]any
		assert.NotPanics(t, func() { assert.Error(t, c.Decode(&v)) })
		assert.Nil(t, v)
	})
}

// TestClaimsMethods: the methods of a non-nil *Claims.
func TestClaimsMethods(t *testing.T) {
	c := &cognitomcp.Claims{Groups: []string{"admin", "ops"}, Scopes: []string{"openid", "mcp-api/tools"}}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"InGroup one of them", c.InGroup("dev", "ops"), true},
		{"InGroup none of them", c.InGroup("dev"), false},
		{"InGroup of none", c.InGroup(), false},
		{"InAllGroups all", c.InAllGroups("admin", "ops"), true},
		{"InAllGroups one missing", c.InAllGroups("admin", "dev"), false},
		{"InAllGroups of none", c.InAllGroups(), true},
		{"HasScope granted", c.HasScope("mcp-api/tools"), true},
		{"HasScope not granted", c.HasScope("mcp-api/admin"), false},
		{"no groups: InGroup", (&cognitomcp.Claims{}).InGroup("admin"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.got)
		})
	}
}
