package cognitomcp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

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
