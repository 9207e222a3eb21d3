package main

import (
	"log/slog"
	"os"
	"testing"

	"github.com/cognitomcp/cognitomcp/examples/internal/demo"
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

func TestServer(t *testing.T) { demotest.TestExample(t, "examples/server") }

func TestServerWithRedis(t *testing.T) { demotest.TestExampleWithRedis(t) }

func TestServerReplicas(t *testing.T) { demotest.TestExampleReplicas(t) }

func TestServerSessionsBoundToUser(t *testing.T) { demotest.TestExampleSessionsBoundToUser(t) }

func TestTools(t *testing.T) {
	demotest.TestTools(t, newMCPHandler(demo.MCPConfig{Logger: slog.New(slog.DiscardHandler)}))
}

// TestToolsAcrossReplicas: with REDIS_URL (Stateless) no request needs the
// replica that answered the one before.
func TestToolsAcrossReplicas(t *testing.T) {
	cfg := demo.MCPConfig{Logger: slog.New(slog.DiscardHandler), Stateless: true}
	demotest.TestToolsAcrossReplicas(t, newMCPHandler(cfg), newMCPHandler(cfg))
}
