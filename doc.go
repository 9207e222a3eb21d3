// Package cognitomcp puts Amazon Cognito sign-in in front of an MCP server
// built on net/http.
//
// It has two halves. The resource-server half verifies Cognito JWTs
// ([Verifier]) and puts the user in the request context ([RequireToken],
// [ClaimsFromContext]), with [RequireGroups] and [RequireScopes] for
// authorization. The proxy half ([Proxy]) is, to MCP clients, an OAuth 2.1
// authorization server with the metadata, dynamic registration, PKCE and
// resource indicators they expect, and, to Cognito, one confidential app
// client using the hosted UI.
//
// Behind the proxy, an MCP server gets sign-in for every MCP client with no
// setup on the client's side:
//
//	proxy, err := cognitomcp.NewProxy(ctx, cognitomcp.ProxyConfig{
//		UserPoolID:   "eu-west-1_AbCdEf123",
//		ClientID:     os.Getenv("COGNITO_CLIENT_ID"),
//		ClientSecret: os.Getenv("COGNITO_CLIENT_SECRET"),
//		BaseURL:      "https://mcp.example.com", // Cognito callback: BaseURL + "/auth/callback"
//		Keys:         cognitomcp.KeyConfig{MasterSecret: masterSecret},
//		Store:        cognitomcp.NewRedisStore(redisClient, cognitomcp.RedisStoreOptions{}),
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &http.Server{Addr: ":8000", Handler: proxy.Handler(mcpHandler),
//		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
//		IdleTimeout: 2 * time.Minute} // no WriteTimeout: it would cut MCP streams
//	log.Fatal(srv.ListenAndServe())
//
// Resource-server mode, verifying Cognito access tokens directly:
//
//	v, err := cognitomcp.NewVerifier(ctx, cognitomcp.VerifierConfig{
//		UserPoolID: "eu-west-1_AbCdEf123", // region taken from the id
//		ClientIDs:  []string{"6qbm3example"},
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	issuers := cognitomcp.CognitoIssuers("eu-west-1_AbCdEf123") // nil for a malformed pool id
//	if issuers == nil {
//		log.Fatal("not a user pool id")
//	}
//	prm, err := cognitomcp.ResourceMetadataHandler(cognitomcp.ResourceMetadata{
//		Resource:             "https://mcp.example.com/mcp",
//		AuthorizationServers: issuers[:1], // the original issuer form
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	auth := cognitomcp.RequireToken(cognitomcp.MiddlewareConfig{
//		Verifier:            v,
//		ResourceMetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
//	})
//	mux := http.NewServeMux()
//	mux.Handle("/.well-known/oauth-protected-resource/mcp", prm)
//	mux.Handle("/mcp", cognitomcp.CheckOrigin("https://mcp.example.com")(
//		auth(cognitomcp.RequireGroups("mcp-users")(mcpHandler))))
//
// Inside the handler (or an mcp-go tool, whose context comes from the
// request; go-sdk tools read the claims from req.Extra.TokenInfo instead, as
// [ClaimsFromContext] explains):
//
//	claims, ok := cognitomcp.ClaimsFromContext(r.Context())
//	if !ok { // RequireToken is not in front of this handler
//		http.Error(w, "not signed in", http.StatusUnauthorized)
//		return
//	}
//	log.Printf("%s (%s) in %v", claims.Username, claims.Subject, claims.Groups)
//
// The package cognitomcp/cognitotest is a fake Cognito user pool for tests,
// in the spirit of net/http/httptest.
package cognitomcp
