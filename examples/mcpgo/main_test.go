package main

import (
	"os"
	"testing"

	"github.com/cognitomcp/cognitomcp/examples/internal/demotest"
)

// TestMain runs main when the test binary is re-executed as the server.
func TestMain(m *testing.M) {
	if os.Getenv(demotest.RunMainEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestExample runs the examples' shared suite on this one.
func TestExample(t *testing.T) { demotest.Suite(t, "examples/mcpgo", newMCPHandler) }
