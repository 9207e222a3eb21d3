package cognitomcp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// get sends a GET with a bearer token and prints the status and body.
func get(url, token string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s\n", resp.StatusCode, bytes.TrimSpace(body))
}

// Plain net/http: RequireToken authenticates, RequireGroups authorizes, and
// the handler reads the Cognito user from the context.
func ExampleRequireGroups() {
	// A fake pool stands in for Cognito; in production set UserPoolID.
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	defer pool.Close()
	app := pool.AddClient(cognitotest.Client{Secret: "secret"})
	pool.AddUser(cognitotest.User{Username: "alice", Password: "pw", Groups: []string{"admin"}})
	pool.AddUser(cognitotest.User{Username: "bob", Password: "pw"})

	v, err := cognitomcp.NewVerifier(context.Background(), cognitomcp.VerifierConfig{
		IssuerURL: pool.Issuer, // in production: UserPoolID: "eu-west-1_AbCdEf123"
		ClientIDs: []string{app.ID},
	})
	if err != nil {
		log.Fatal(err)
	}
	auth := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier:            v,
		ResourceMetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource/admin",
	})
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := cognitomcp.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", claims.Username)
	})
	mux := http.NewServeMux()
	mux.Handle("/admin", auth(cognitomcp.RequireGroups("admin")(admin)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get(srv.URL+"/admin", pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID}))
	get(srv.URL+"/admin", pool.MintAccessToken(cognitotest.TokenOptions{Username: "bob", ClientID: app.ID}))
	get(srv.URL+"/admin", "")
	// Output:
	// 200 hello alice
	// 403 {"error":"access_denied","error_description":"insufficient group membership"}
	// 401 {"error":"invalid_token","error_description":"a bearer token is required"}
}

// fakeCognito is a fake user pool with alice (group admin) and bob (no
// group), one app client, and a verifier of the pool's access tokens.
type fakeCognito struct {
	pool     *cognitotest.UserPool
	clientID string
	verifier *cognitomcp.Verifier
}

func newFakeCognito() *fakeCognito {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	app := pool.AddClient(cognitotest.Client{Secret: "secret"})
	pool.AddUser(cognitotest.User{Username: "alice", Password: "pw", Groups: []string{"admin"}})
	pool.AddUser(cognitotest.User{Username: "bob", Password: "pw"})
	v, err := cognitomcp.NewVerifier(context.Background(), cognitomcp.VerifierConfig{
		IssuerURL: pool.Issuer, // in production: UserPoolID: "eu-west-1_AbCdEf123"
		ClientIDs: []string{app.ID},
	})
	if err != nil {
		log.Fatal(err)
	}
	return &fakeCognito{pool: pool, clientID: app.ID, verifier: v}
}

// token returns a Cognito access token of the user with the given scopes
// (default openid, email and profile).
func (f *fakeCognito) token(username string, scopes ...string) string {
	return f.pool.MintAccessToken(cognitotest.TokenOptions{Username: username, ClientID: f.clientID, Scopes: scopes})
}

func (f *fakeCognito) Close() { f.pool.Close() }

// hello answers "hello <username>" to a request that RequireToken admitted.
var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	claims, _ := cognitomcp.ClaimsFromContext(r.Context())
	fmt.Fprintf(w, "hello %s", claims.Username)
})

// serve sends a request through h and prints the status and body.
func serve(h http.Handler, method, target, token string) {
	req := httptest.NewRequest(method, target, strings.NewReader("{}"))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
}

// newSecret stands for 32 random bytes kept in a secret manager.
func newSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// newExampleProxy is a Proxy for https://mcp.example.com in front of a fake
// user pool, and the function that closes the pool.
func newExampleProxy() (*cognitomcp.Proxy, func()) {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	app := pool.AddClient(cognitotest.Client{Secret: "secret", CallbackURLs: []string{"https://mcp.example.com/auth/callback"}})
	proxy, err := cognitomcp.NewProxy(context.Background(), cognitomcp.ProxyConfig{
		IssuerURL: pool.Issuer, ClientID: app.ID, ClientSecret: app.Secret,
		BaseURL: "https://mcp.example.com", Keys: cognitomcp.KeyConfig{MasterSecret: newSecret()},
	})
	if err != nil {
		log.Fatal(err)
	}
	return proxy, pool.Close
}

// A Proxy makes an MCP server an OAuth 2.1 authorization server in front of
// Cognito. Handler serves the OAuth routes and the protected MCP endpoint.
func ExampleProxy_Handler() {
	pool := cognitotest.NewUserPool(cognitotest.Options{}) // in production: your user pool
	defer pool.Close()
	app := pool.AddClient(cognitotest.Client{Secret: "secret", CallbackURLs: []string{"https://mcp.example.com/auth/callback"}})

	proxy, err := cognitomcp.NewProxy(context.Background(), cognitomcp.ProxyConfig{
		IssuerURL:    pool.Issuer, // in production: UserPoolID: "eu-west-1_AbCdEf123", DomainURL: "https://….amazoncognito.com"
		ClientID:     app.ID,
		ClientSecret: app.Secret,
		BaseURL:      "https://mcp.example.com",
		Keys:         cognitomcp.KeyConfig{MasterSecret: newSecret()}, // 32 random bytes from your secret store
	})
	if err != nil {
		log.Fatal(err)
	}
	h := proxy.Handler(hello) // hello stands for the MCP server

	// An MCP client without a token is told where to find the authorization server...
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "https://mcp.example.com/mcp", strings.NewReader("{}")))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))

	// ...reads the protected resource metadata...
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", nil))
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &prm)
	fmt.Println(prm.Resource, prm.AuthorizationServers)

	// ...and registers itself (RFC 7591) before signing the user in.
	req := httptest.NewRequest("POST", "https://mcp.example.com/register", strings.NewReader(
		`{"client_name":"My Agent","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`))
	req.Header.Set("Content-Type", "application/json")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var reg struct {
		ClientID   string `json:"client_id"`
		ClientName string `json:"client_name"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &reg)
	fmt.Println(rec.Code, reg.ClientName, reg.ClientID != "")
	// Output:
	// 401 Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="openid email profile"
	// https://mcp.example.com/mcp [https://mcp.example.com]
	// 201 My Agent true
}

// The proxy's handler mounts at the root of an http.ServeMux, beside routes
// of your own that need no sign-in.
func Example_serveMux() {
	proxy, done := newExampleProxy() // configured as in ExampleProxy_Handler, on a fake pool
	defer done()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.Handle("/", proxy.Handler(hello)) // /mcp, /authorize, /token, the metadata, …

	serve(mux, "GET", "https://mcp.example.com/healthz", "")
	serve(mux, "POST", "https://mcp.example.com/mcp", "")
	// Output:
	// 200 ok
	// 401 {"error":"invalid_token","error_description":"a bearer token is required"}
}

// With chi, RequireToken and RequireGroups are ordinary middleware.
func Example_chi() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	r := chi.NewRouter()
	r.Use(cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier}))
	r.With(cognitomcp.RequireGroups("admin")).Get("/admin", hello)

	serve(r, "GET", "/admin", cognito.token("alice"))
	serve(r, "GET", "/admin", cognito.token("bob"))
	// Output:
	// 200 hello alice
	// 403 {"error":"access_denied","error_description":"insufficient group membership"}
}

// A Proxy inside a chi router: the proxy's routes go to the proxy with no
// RequireToken in front (a client must reach them without a token to sign
// in), and only the MCP endpoint is guarded, as Proxy.Handler guards it:
// the Origin check first, then the token. r.Use(proxy.RequireToken()) on
// the router that serves the proxy would refuse discovery, registration
// and sign-in themselves.
func ExampleProxy_chi() {
	proxy, done := newExampleProxy() // configured as in ExampleProxy_Handler, on a fake pool
	defer done()

	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	r.Handle("/.well-known/*", proxy) // the metadata documents
	for _, path := range []string{"/register", "/authorize", "/consent", "/auth/callback", "/token", "/revoke", "/jwks"} {
		r.Handle(path, proxy)
	}
	r.Group(func(r chi.Router) {
		r.Use(proxy.CheckOrigin(), proxy.RequireToken())
		r.Handle("/mcp", hello) // hello stands for the MCP server
	})

	register := httptest.NewRequest("POST", "https://mcp.example.com/register", strings.NewReader(
		`{"client_name":"My Agent","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`))
	register.Header.Set("Content-Type", "application/json")
	foreign := httptest.NewRequest("POST", "https://mcp.example.com/mcp", strings.NewReader("{}"))
	foreign.Header.Set("Origin", "https://attacker.example")
	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "https://mcp.example.com/healthz", nil),
		httptest.NewRequest("GET", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", nil),
		httptest.NewRequest("GET", "https://mcp.example.com/.well-known/oauth-authorization-server", nil),
		register,
		httptest.NewRequest("POST", "https://mcp.example.com/mcp", strings.NewReader("{}")), // no token
		foreign,
	} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(req.Method, req.URL.Path, rec.Code)
	}
	// Output:
	// GET /healthz 200
	// GET /.well-known/oauth-protected-resource/mcp 200
	// GET /.well-known/oauth-authorization-server 200
	// POST /register 201
	// POST /mcp 401
	// POST /mcp 403
}

// With gorilla/mux, the middleware goes to Router.Use or wraps one route.
func Example_gorillaMux() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	r := mux.NewRouter()
	r.Use(cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier}))
	r.Handle("/admin", cognitomcp.RequireGroups("admin")(hello)).Methods("GET")

	serve(r, "GET", "/admin", cognito.token("alice"))
	serve(r, "GET", "/admin", "")
	// Output:
	// 200 hello alice
	// 401 {"error":"invalid_token","error_description":"a bearer token is required"}
}

// With echo, echo.WrapMiddleware adapts the middleware; handlers read the
// claims from the request's context.
func Example_echo() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	e := echo.New()
	e.Use(echo.WrapMiddleware(cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier})))
	e.GET("/admin", func(c echo.Context) error {
		claims, _ := cognitomcp.ClaimsFromContext(c.Request().Context())
		return c.String(http.StatusOK, "hello "+claims.Username)
	}, echo.WrapMiddleware(cognitomcp.RequireGroups("admin")))

	serve(e, "GET", "/admin", cognito.token("alice"))
	serve(e, "GET", "/admin", cognito.token("bob"))
	// Output:
	// 200 hello alice
	// 403 {"error":"access_denied","error_description":"insufficient group membership"}
}

// RequireScopes answers 403 insufficient_scope with a challenge listing the
// scopes to ask for, so MCP clients can step up: those the token holds and
// the missing ones.
func ExampleRequireScopes() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	auth := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier})
	h := auth(cognitomcp.RequireScopes("mcp-api/write")(hello))

	req := httptest.NewRequest("POST", "/tools", nil)
	req.Header.Set("Authorization", "Bearer "+cognito.token("alice", "mcp-api/read"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 403 Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="mcp-api/read mcp-api/write"
}

// The official Go SDK (github.com/modelcontextprotocol/go-sdk): cognitomcp
// verifies the token, and a bridge hands the claims to the SDK as its
// TokenInfo. Tools read req.Extra.TokenInfo, not ctx: a stateful session
// keeps the context of the request that created it.
func Example_goSDK() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	server := mcp.NewServer(&mcp.Implementation{Name: "example", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		var claims *cognitomcp.Claims // nil without the bridge: InGroup and HasScope answer false
		if req.Extra != nil && req.Extra.TokenInfo != nil {
			claims, _ = req.Extra.TokenInfo.Extra["claims"].(*cognitomcp.Claims)
		}
		if claims == nil {
			return nil, nil, errors.New("not signed in")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello " + claims.Username}}}, nil, nil
	})
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})

	bridge := func(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		c, ok := cognitomcp.ClaimsFromContext(r.Context())
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: c.Subject, Scopes: c.Scopes, Expiration: c.Expiry,
			Extra: map[string]any{"claims": c}}, nil
	}
	requireToken := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier})
	h := requireToken(auth.RequireBearerToken(bridge, nil)(streamable))

	fmt.Println(callTool(h, "whoami", cognito.token("alice")))
	// Output:
	// hello alice
}

// github.com/mark3labs/mcp-go passes the request's context to tools, so
// they read the claims with ClaimsFromContext.
func Example_mcpGo() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.Close()

	s := server.NewMCPServer("example", "1.0.0")
	s.AddTool(mcpgo.NewTool("whoami"), func(ctx context.Context, _ mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		claims, _ := cognitomcp.ClaimsFromContext(ctx)
		return mcpgo.NewToolResultText("hello " + claims.Username), nil
	})
	streamable := server.NewStreamableHTTPServer(s, server.WithStateLess(true))
	h := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: cognito.verifier})(streamable)

	fmt.Println(callTool(h, "whoami", cognito.token("bob")))
	// Output:
	// hello bob
}

// callTool sends one MCP tools/call request through h and returns the text
// of the result, or the HTTP error.
func callTool(h http.Handler, tool, token string) string {
	req := httptest.NewRequest("POST", "/mcp", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+tool+`","arguments":{}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp struct {
		Result struct {
			Content []struct{ Text string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Result.Content) == 0 {
		return fmt.Sprintf("%d %s", rec.Code, rec.Body)
	}
	return resp.Result.Content[0].Text
}

// Resource-server mode: no proxy. A machine client gets a Cognito access
// token with the client_credentials grant and calls an API that verifies it
// directly. Its sub is the app client id; it has no username or groups.
func Example_resourceServer() {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	defer pool.Close()
	pool.AddResourceServer("mcp-api", "tools")
	job := pool.AddClient(cognitotest.Client{ID: "reportingjob", Secret: "secret",
		ClientCredentials: true, AllowedScopes: []string{"mcp-api/tools"}})

	v, err := cognitomcp.NewVerifier(context.Background(), cognitomcp.VerifierConfig{
		IssuerURL: pool.Issuer, // in production: UserPoolID: "eu-west-1_AbCdEf123"
		ClientIDs: []string{job.ID},
	})
	if err != nil {
		log.Fatal(err)
	}
	api := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{Verifier: v})(
		cognitomcp.RequireScopes("mcp-api/tools")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := cognitomcp.ClaimsFromContext(r.Context())
			fmt.Fprintf(w, "sub=%s username=%q scopes=%v", c.Subject, c.Username, c.Scopes)
		})))
	srv := httptest.NewServer(api)
	defer srv.Close()

	cc := clientcredentials.Config{ClientID: job.ID, ClientSecret: job.Secret,
		TokenURL: pool.DomainURL + "/oauth2/token", Scopes: []string{"mcp-api/tools"}}
	resp, err := cc.Client(context.Background()).Get(srv.URL) // fetches and sends the token
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 200 sub=reportingjob username="" scopes=[mcp-api/tools]
}

// Resource-server mode in front of MCP clients: the endpoint's protected
// resource metadata tells them where to sign in, CheckOrigin keeps other
// web pages out (DNS rebinding), and RequireToken verifies the pool's
// access tokens, its 401 pointing at the metadata.
func ExampleResourceMetadataHandler() {
	cognito := newFakeCognito() // a fake user pool with alice (group admin) and bob, and a Verifier
	defer cognito.pool.Close()
	const base = "https://mcp.example.com" // this server, as clients reach it
	issuers := cognitomcp.CognitoIssuers("eu-west-1_AbCdEf123")
	if issuers == nil { // a malformed pool id
		log.Fatal("not a user pool id")
	}
	prm, err := cognitomcp.ResourceMetadataHandler(cognitomcp.ResourceMetadata{
		Resource:             base + "/mcp",
		AuthorizationServers: issuers[:1], // the original issuer form
		Scopes:               []string{"openid", "mcp-api/tools"},
	})
	if err != nil {
		log.Fatal(err)
	}
	auth := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
		Verifier:            cognito.verifier,
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp",
	})
	mcp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := cognitomcp.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", claims.Username)
	})
	mux := http.NewServeMux()
	mux.Handle("/.well-known/oauth-protected-resource/mcp", prm)
	mux.Handle("/mcp", cognitomcp.CheckOrigin(base)(auth(mcp)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get(srv.URL+"/.well-known/oauth-protected-resource/mcp", "")
	resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader("{}"))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	get(srv.URL+"/mcp", cognito.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: cognito.clientID}))
	// Output:
	// 200 {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"],"scopes_supported":["openid","mcp-api/tools"],"bearer_methods_supported":["header"]}
	// 401 Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	// 200 hello alice
}
