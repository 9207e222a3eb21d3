package main

import (
	"log/slog"
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

func TestServer(t *testing.T) { demotest.TestExample(t, "examples/mcpgo") }

func TestServerWithRedis(t *testing.T) { demotest.TestExampleWithRedis(t) }

func TestTools(t *testing.T) { demotest.TestTools(t, newMCPHandler(slog.New(slog.DiscardHandler))) }
