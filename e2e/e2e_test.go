// Package e2e_test runs cognitomcp against real clients: the official MCP
// TypeScript SDK on Node.js (tsclient_test.go, against the example server
// built from examples/server) and headless Chromium driven by chromedp
// (browser_test.go, against an in-process proxy). It is a package of its
// own so that the root package does not depend on chromedp.
//
// A test whose tool is missing (node and npm, chromium) skips and says what
// to install, unless COGNITOMCP_FULL=1, which scripts/test.sh sets: then it
// fails.
package e2e_test

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// unavailable skips t because a tool it needs is missing, or fails it when
// COGNITOMCP_FULL=1 makes every test mandatory.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("COGNITOMCP_FULL") == "1" {
		t.Fatalf(format+" (COGNITOMCP_FULL=1: required)", args...)
	}
	t.Skipf(format, args...)
}

// moduleRoot is the directory of cognitomcp's go.mod: go test runs in e2e/.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above the test directory: %v", err)
	}
	return root
}

// raceEnabled reports whether this test binary was built with -race, so
// the programs it builds can be too.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// syncBuffer is a log or output buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer
