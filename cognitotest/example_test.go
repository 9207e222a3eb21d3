package cognitotest_test

import (
	"context"
	"fmt"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// A pool with the real Cognito hostnames, verified with go-oidc against the
// real issuer string.
func ExampleNewUserPool() {
	pool := cognitotest.NewUserPool(cognitotest.Options{PoolID: "eu-central-1_AbCdEf123", AWSHostnames: true})
	defer pool.Close()
	pool.AddUser(cognitotest.User{Username: "alice", Password: "pw", Groups: []string{"admin"}})
	app := pool.AddClient(cognitotest.Client{CallbackURLs: []string{"https://app.example/callback"}})

	ctx := oidc.ClientContext(context.Background(), pool.HTTPClient())
	provider, err := oidc.NewProvider(ctx, "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_AbCdEf123")
	if err != nil {
		panic(err)
	}
	at := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	tok, err := provider.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, at)
	if err != nil {
		panic(err)
	}
	var claims struct {
		TokenUse string   `json:"token_use"`
		Groups   []string `json:"cognito:groups"`
	}
	_ = tok.Claims(&claims)
	fmt.Println(tok.Issuer, claims.TokenUse, claims.Groups)
	// Output: https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_AbCdEf123 access [admin]
}
