package demo

import (
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// fakeCognito is the fake user pool the examples run without configuration.
type fakeCognito struct {
	pool       *cognitotest.UserPool
	alice, bob *cognitotest.User
}

// startFakeCognito starts a fake user pool on loopback with the demo users
// and an app client whose callback is base+"/auth/callback", and points pcfg
// at it.
func startFakeCognito(cfg config, base string, pcfg *cognitomcp.ProxyConfig) *fakeCognito {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	scopes := []string{"openid", "email", "profile"}
	for _, s := range cfg.Scopes {
		if i := strings.LastIndex(s, "/"); i > 0 { // a resource-server scope: "mcp-api/tools"
			pool.AddResourceServer(s[:i], s[i+1:])
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	f := &fakeCognito{pool: pool}
	f.alice = pool.AddUser(cognitotest.User{Username: "alice", Password: password(), Email: "alice@example.com",
		EmailVerified: true, Groups: []string{AdminGroup}})
	f.bob = pool.AddUser(cognitotest.User{Username: "bob", Password: password(), Email: "bob@example.com", EmailVerified: true})
	app := pool.AddClient(cognitotest.Client{Secret: password(), CallbackURLs: []string{base + "/auth/callback"},
		AllowedScopes: scopes})
	pool.SetAutoLogin(cfg.AutoLogin)

	pcfg.IssuerURL, pcfg.ClientID, pcfg.ClientSecret = pool.Issuer, app.ID, app.Secret
	pcfg.HTTPClient = pool.HTTPClient()
	return f
}

// print shows where the fake runs and the users and their passwords.
func (f *fakeCognito) print(w io.Writer, autoLogin string) {
	fmt.Fprintf(w, "fake cognito: %s\n", f.pool.Issuer)
	fmt.Fprintf(w, "  sign-in page: %s (COGNITO_USER_POOL_ID unset: no real Cognito)\n", f.pool.DomainURL)
	fmt.Fprintf(w, "  user alice (groups: admin),  password %s\n", f.alice.Password)
	fmt.Fprintf(w, "  user bob   (groups: none),   password %s\n", f.bob.Password)
	if autoLogin != "" {
		fmt.Fprintf(w, "  DEMO_AUTO_LOGIN=%s: the sign-in form is skipped\n", autoLogin)
	}
}

// password returns a random password for a demo user or client.
func password() string {
	return strings.ToLower(rand.Text()[:16])
}

// printConnect tells how to connect MCP clients to resource.
func printConnect(w io.Writer, resource string) {
	fmt.Fprintf(w, `MCP endpoint: %[1]s
  MCP Inspector:  npx @modelcontextprotocol/inspector
                  then Transport Type "Streamable HTTP", URL %[1]s, Connect (OAuth runs in the browser)
  mcp-remote:     npx mcp-remote %[1]s
  TypeScript SDK: new StreamableHTTPClientTransport(new URL(%[1]q), { authProvider })
                  with an OAuthClientProvider from @modelcontextprotocol/sdk/client/auth.js
`, resource)
}
