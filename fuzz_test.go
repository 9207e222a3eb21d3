package cognitomcp

// Fuzz targets for what an attacker controls: the Authorization header (with
// the verification behind it, of proxy tokens and of Cognito tokens), the
// /authorize query and form, the /token form, the /register JSON, and the
// stored values the proxy decodes. FuzzValidateRedirectURI (redirect_test.go)
// and FuzzTokenVerify / FuzzSealerOpen (keys_test.go) cover redirect URIs,
// the JWS layer and the sealed format. Every target checks invariants, not
// only the absence of panics; scripts/fuzz.sh runs them all.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cognitomcp/cognitomcp/cognitotest"
)

const (
	fzBase     = "http://127.0.0.1:8931"
	fzClientID = "fz-client-0000000000001"
	fzLoopback = "http://127.0.0.1:8976/callback"
	fzHTTPS    = "https://app.example/cb"
	fzVerifier = "fuzz-verifier-fuzz-verifier-fuzz-verifier-fuzz"
	// The sign-in's ids and secret are fixed, so every fuzz worker process
	// has the same tokens, and a seed's token means the same in each.
	fzGrantID     = "fzgrant000000000000001"
	fzGrantSecret = "fz-grant-secret-fz-grant-secret-fz-grant-s"
	fzCode        = "fz-code-fz-code-fz-code-fz-code-fz-code-fz0"
	// fzCognito in a fuzzed header stands for this process's Cognito token
	// (the fake pool's keys differ from one process to the next).
	fzCognito = "@COGNITO@"
)

// fzEnv is a proxy in front of a fake pool, with a fixed clock, no rate
// limits, one registered client and one live sign-in, whose handlers the
// targets call directly.
type fzEnv struct {
	p       *Proxy
	pool    *cognitotest.UserPool
	app     *cognitotest.Client
	now     time.Time
	client  *clientRecord
	grant   *grantRecord
	access  string // a valid proxy access token of the sign-in
	refresh string // its valid refresh token (never used as a seed)
	cognito string // a valid Cognito access token for the proxy's app client
}

// fzStore is a MemoryStore that drops writes of the kinds in discard, so a
// long fuzz run does not fill memory with what it creates.
type fzStore struct {
	*MemoryStore
	discard []string
}

func (s *fzStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if slices.Contains(s.discard, kindOf(key)) {
		return nil
	}
	return s.MemoryStore.Set(ctx, key, v, ttl)
}

func newFzEnv(tb testing.TB, discard ...string) *fzEnv {
	tb.Helper()
	e := &fzEnv{now: time.Unix(1_900_000_000, 0)}
	inner := NewMemoryStore()
	clock := func() time.Time { return e.now }
	e.pool = cognitotest.NewUserPool(cognitotest.Options{Now: clock})
	tb.Cleanup(e.pool.Close)
	e.pool.AddUser(cognitotest.User{Username: "alice", Password: "pw"})
	e.app = e.pool.AddClient(cognitotest.Client{Secret: "s", CallbackURLs: []string{fzBase + "/auth/callback"}})
	p, err := NewProxy(context.Background(), ProxyConfig{
		IssuerURL: e.pool.Issuer, ClientID: e.app.ID, ClientSecret: "s", BaseURL: fzBase,
		Keys:       KeyConfig{MasterSecret: bytes.Repeat([]byte{9}, 32)},
		Store:      &fzStore{MemoryStore: inner, discard: discard},
		HTTPClient: e.pool.HTTPClient(), Now: clock, Logger: slog.New(slog.DiscardHandler),
		RateLimits: RateLimits{Register: -1, Authorize: -1, Token: -1},
	})
	if err != nil {
		tb.Fatal(err)
	}
	e.p = p
	ctx := context.Background()
	e.client = &clientRecord{ID: fzClientID, Name: "Fuzz", RedirectURIs: []string{fzLoopback, fzHTTPS},
		Scopes: p.scopes, GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", ApplicationType: "native", IssuedAt: e.now, Touched: e.now}
	e.grant = &grantRecord{ID: fzGrantID, Secret: fzGrantSecret, ClientID: fzClientID, ClientName: "Fuzz",
		Scopes: []string{"openid", "email"}, Resource: p.resource,
		User:       userClaims{Subject: "sub-alice", Username: "alice", Issuer: e.pool.Issuer, AppID: e.app.ID},
		Upstream:   upstreamTokens{RefreshToken: "upstream-rt", Expiry: e.now.Add(24 * time.Hour)},
		Generation: 1, RotatedAt: e.now, RotatedScopes: []string{"openid", "email"}, CreatedAt: e.now, ExpiresAt: e.now.Add(30 * 24 * time.Hour)}
	for key, v := range map[string]any{storeKey(kindClient, fzClientID): e.client, storeKey(kindGrant, e.grant.ID): e.grant} {
		b, err := p.seal(key, v) // stored past the discarding wrapper
		if err == nil {
			err = inner.Set(ctx, key, b, time.Hour)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	tok, te := p.tokensFor(e.grant, 1, e.now, e.grant.Scopes)
	if te != nil {
		tb.Fatal(te)
	}
	e.access, e.refresh = tok.AccessToken, tok.RefreshToken
	e.cognito = e.pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: e.app.ID})
	return e
}

// serve runs h on req and returns the recorder.
func fzServe(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	req.RemoteAddr = "192.0.2.7:40000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// fzBearer reads an Authorization value the way RFC 6750 §2.1 and RFC 7235
// allow, independently of the middleware: the scheme "Bearer" in any case,
// one or more spaces, then the token.
func fzBearer(h string) (string, bool) {
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimLeft(h[7:], " "), true
}

// FuzzBearerMiddleware sends fuzzed Authorization headers to the proxy's MCP
// endpoint (proxy tokens) and to RequireToken with the Cognito Verifier
// (Cognito access tokens). Invariants: the protected handler runs only for
// exactly the genuine token (scheme case aside); never with two headers;
// refusals are 400 or 401 with a Bearer challenge; nothing else (no 5xx).
func FuzzBearerMiddleware(f *testing.F) {
	e := newFzEnv(f)
	admit := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	mcp := e.p.Handler(admit)
	rs := RequireToken(MiddlewareConfig{Verifier: e.p.verifier, ResourceMetadataURL: e.p.prmURL})(admit)
	_, idClaims, _ := cognitotest.DecodeJWT(e.cognito)
	for _, seed := range []string{
		"Bearer " + e.access, "bearer " + e.access, "BEARER   " + e.access, "Bearer " + fzCognito, "bEaReR  " + fzCognito,
		"Bearer " + fzCognito + "x", "Bearer " + fzCognito[:5],
		"Bearer " + e.access[:len(e.access)-1], "Bearer " + e.access + "=", "Bearer " + e.access + " x",
		"Bearer\t" + e.access, "Basic " + e.access, "Bearer", "Bearer ", "", "Bearer a.b.c", "Bearer ....",
		"Bearer " + strings.Repeat("A", 17<<10),
		"Bearer " + cognitotest.SignWithNone(map[string]any{"kid": e.pool.AccessKeyID()}, idClaims),
		"Bearer " + cognitotest.SignWithHS256(map[string]any{"kid": e.pool.AccessKeyID()}, idClaims, []byte("k")),
		"Bearer " + e.pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: e.app.ID}),
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, authz string, twice bool) {
		authz = strings.ReplaceAll(authz, fzCognito, e.cognito)
		for _, target := range []struct {
			name  string
			h     http.Handler
			valid string
		}{{"mcp", mcp, e.access}, {"rs", rs, e.cognito}} {
			req := httptest.NewRequest(http.MethodPost, fzBase+"/mcp", strings.NewReader("{}"))
			req.Header["Authorization"] = []string{authz}
			if twice {
				req.Header["Authorization"] = append(req.Header["Authorization"], authz)
			}
			w := fzServe(target.h, req)
			switch w.Code {
			case 299:
				tok, ok := fzBearer(authz)
				if twice || !ok || tok != target.valid {
					t.Fatalf("%s admitted Authorization %q (twice=%v)", target.name, authz, twice)
				}
			case http.StatusBadRequest, http.StatusUnauthorized:
				if ch := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
					t.Fatalf("%s %d without a Bearer challenge: %q", target.name, w.Code, ch)
				}
			case http.StatusRequestHeaderFieldsTooLarge:
				// The proxy counts every header and the path: with the
				// header twice, half the bound and a little is enough.
				sent := len(authz)
				if twice {
					sent *= 2
				}
				if target.name != "mcp" || sent < maxHeaderBytes-1<<10 {
					t.Fatalf("%s 431 for %d bytes of Authorization (twice=%v)", target.name, len(authz), twice)
				}
			default:
				t.Fatalf("%s answered %d to %q", target.name, w.Code, authz)
			}
		}
	})
}

// FuzzAuthorizeForm sends fuzzed /authorize queries (GET) and forms (POST).
// Invariants: no 5xx; an error page (400) never redirects; a redirect goes
// only to the proxy's consent page or, with error and iss and never a code,
// to a redirect URI the client registered (a loopback one on any port).
func FuzzAuthorizeForm(f *testing.F) {
	e := newFzEnv(f, kindTxn)
	valid := url.Values{"response_type": {"code"}, "client_id": {fzClientID}, "redirect_uri": {fzLoopback},
		"code_challenge": {s256(fzVerifier)}, "code_challenge_method": {"S256"}, "state": {"st"},
		"scope": {"openid email"}, "resource": {e.p.resource}}
	edit := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range valid {
			q[kk] = slices.Clone(vv)
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q.Encode()
	}
	for _, seed := range []string{
		valid.Encode(), edit("redirect_uri", "http://127.0.0.1:1/callback"), edit("redirect_uri", fzHTTPS),
		edit("redirect_uri", "https://evil.example/cb"), edit("redirect_uri", "http://127.0.0.1:8976@evil.example/callback"),
		edit("redirect_uri", ""), edit("client_id", "nobody"), edit("code_challenge_method", "plain"),
		edit("code_challenge", ""), edit("response_type", "token"), edit("scope", "openid admin"),
		edit("resource", "https://other.example/mcp"), edit("state", strings.Repeat("s", 3000)),
		valid.Encode() + "&state=again", "client_id=" + fzClientID + "&redirect_uri=javascript:alert(1)",
		"%zz", "", "client_id=%00&redirect_uri=%0d%0a",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, query string, post bool) {
		var req *http.Request
		if post {
			req = httptest.NewRequest(http.MethodPost, fzBase+"/authorize", strings.NewReader(query))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(http.MethodGet, fzBase+"/authorize", nil)
			req.URL.RawQuery = query
		}
		w := fzServe(e.p, req)
		loc := w.Header().Get("Location")
		switch w.Code {
		case http.StatusFound:
			if strings.HasPrefix(loc, fzBase+"/consent?txn=") {
				return
			}
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("unparsable Location %q", loc)
			}
			q := u.Query()
			target := u.Scheme + "://" + u.Host + u.Path
			if _, ok := matchRedirectURI(e.client.RedirectURIs, target); !ok || u.User != nil || u.Fragment != "" {
				t.Fatalf("redirected to %q, not a registered redirect URI (query %q)", loc, query)
			}
			if q.Get("error") == "" || q.Get("iss") != e.p.issuer || q.Has("code") {
				t.Fatalf("redirect to the client without error and iss, or with a code: %q", loc)
			}
		case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge:
			if loc != "" {
				t.Fatalf("an error page that redirects to %q", loc)
			}
		default:
			t.Fatalf("answered %d to %q", w.Code, query)
		}
	})
}

// fzTokenErrors are the error codes /token may answer with.
var fzTokenErrors = []string{CodeInvalidRequest, CodeInvalidClient, CodeInvalidGrant, CodeUnsupportedGrantType,
	CodeInvalidScope, CodeInvalidTarget}

// FuzzTokenForm posts fuzzed bodies, content types and Basic credentials to
// /token. No seed holds a valid grant: a code redeemed with the wrong
// verifier, refresh tokens with a wrong MAC or generation. Invariants: never
// a 200; 400, 401 or 405 only, with a JSON OAuth error among the token
// endpoint's codes, and no-store.
func FuzzTokenForm(f *testing.F) {
	e := newFzEnv(f)
	ctx := context.Background()
	code := fzCode
	rec := codeRecord{GrantID: e.grant.ID, ClientID: fzClientID, RedirectURI: fzLoopback, RedirectURIGiven: true,
		CodeChallenge: s256(fzVerifier), Scopes: []string{"openid"}, Resource: e.p.resource, ExpiresAt: e.now.Add(time.Minute)}
	if err := e.p.put(ctx, storeKey(kindCode, code), &rec, time.Hour); err != nil {
		f.Fatal(err)
	}
	// Wrong in the whole MAC, not in a few bytes a mutation could restore.
	zeroMAC := b64Strict.EncodeToString(make([]byte, 32))
	badMAC := fzGrantID + ".1." + zeroMAC
	nextGen := fzGrantID + ".2." + zeroMAC
	forms := []url.Values{
		{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {strings.Repeat("x", 43)}, "client_id": {fzClientID}, "redirect_uri": {fzLoopback}},
		{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {fzClientID}},
		{"grant_type": {"refresh_token"}, "refresh_token": {badMAC}, "client_id": {fzClientID}},
		{"grant_type": {"refresh_token"}, "refresh_token": {nextGen}, "client_id": {fzClientID}},
		{"grant_type": {"refresh_token"}, "refresh_token": {e.access}, "client_id": {fzClientID}},
		{"grant_type": {"client_credentials"}, "client_id": {fzClientID}},
		{"grant_type": {"password"}, "username": {"alice"}, "password": {"pw"}, "client_id": {fzClientID}},
		{"grant_type": {"refresh_token"}, "refresh_token": {badMAC}, "client_id": {"nobody"}},
	}
	for i, form := range forms {
		f.Add(form.Encode(), uint8(i%5), "")
	}
	f.Add("grant_type=refresh_token&grant_type=authorization_code&client_id="+fzClientID, uint8(0), "")
	f.Add(`{"grant_type":"refresh_token","refresh_token":"`+badMAC+`"}`, uint8(1), "")
	f.Add("grant_type=refresh_token&refresh_token="+url.QueryEscape(badMAC), uint8(0), "Basic "+fzClientID)
	f.Add("grant_type=refresh_token&client_id=a", uint8(0), "Basic YTpi")
	f.Add("%", uint8(0), "Basic %%%")
	contentTypes := []string{"application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=x",
		"", "application/x-www-form-urlencoded; charset=utf-8"}
	f.Fuzz(func(t *testing.T, body string, ct uint8, basic string) {
		req := httptest.NewRequest(http.MethodPost, fzBase+"/token", strings.NewReader(body))
		if c := contentTypes[int(ct)%len(contentTypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		if basic != "" {
			req.Header["Authorization"] = []string{basic}
		}
		w := fzServe(e.p, req)
		if w.Code == http.StatusOK {
			t.Fatalf("issued tokens for %q (ct %d, %q)", body, ct, basic)
		}
		if w.Code != http.StatusBadRequest && w.Code != http.StatusUnauthorized && w.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("answered %d to %q", w.Code, body)
		}
		var out map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || !slices.Contains(fzTokenErrors, out["error"]) {
			t.Fatalf("body %q is not a token-endpoint error", w.Body.String())
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("error without no-store")
		}
	})
}

// FuzzRegisterJSON posts fuzzed bodies to /register. Invariants: 201, 400 or
// 413 only; a 201 registers a public client (auth method none, no secret)
// whose every redirect URI was in the request and passes
// validateRedirectURI, at most maxRedirectURIs of them, and whose name
// passes checkText; a refusal is invalid_client_metadata or
// invalid_redirect_uri.
func FuzzRegisterJSON(f *testing.F) {
	e := newFzEnv(f, kindClient)
	for _, seed := range []string{
		`{"client_name":"ts-client","redirect_uris":["http://127.0.0.1:8976/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","scope":"openid email"}`,
		`{"redirect_uris":["http://localhost:3334/oauth/callback"],"client_name":"MCP CLI Client","client_uri":"https://github.com/x","software_id":"2e6d","software_version":"0.15.1","scope":"openid offline_access","application_type":"native"}`,
		`{"redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"application_type":"web"}`,
		`{"redirect_uris":["javascript:alert(1)"]}`, `{"redirect_uris":["http://localhost@evil.example/cb"]}`,
		`{"redirect_uris":["https://app.example/cb/%2e%2e/x"]}`, `{"redirect_uris":["https://app.example\\@evil/cb"]}`,
		`{"redirect_uris":["http://127.0.0.1:1/cb"],"client_secret":"x","token_endpoint_auth_method":"client_secret_basic"}`,
		`{"redirect_uris":["http://127.0.0.1:1/cb"],"client_name":"a\u202eb"}`, `{"REDIRECT_URIS":["http://127.0.0.1:1/cb"]}`,
		`{"redirect_uris":"http://127.0.0.1:1/cb"}`, `[]`, `null`, `{}`, `{"redirect_uris":[null]}`,
		`{"redirect_uris":["http://127.0.0.1:1/cb"],"logo_uri":"javascript:x","client_uri":"http://x"}`,
		`{"redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["implicit"],"scope":"admin"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, fzBase+"/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := fzServe(e.p, req)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%d with a body that is not JSON: %q", w.Code, w.Body.String())
		}
		switch w.Code {
		case http.StatusCreated:
			var sent struct {
				RedirectURIs []string `json:"redirect_uris"`
			}
			_ = json.Unmarshal([]byte(body), &sent)
			if out["token_endpoint_auth_method"] != "none" || out["client_secret"] != nil || out["client_id"] == "" {
				t.Fatalf("registered a client that is not public: %v", out)
			}
			uris, _ := out["redirect_uris"].([]any)
			if len(uris) == 0 || len(uris) > maxRedirectURIs {
				t.Fatalf("registered %d redirect URIs", len(uris))
			}
			for _, u := range uris {
				s, _ := u.(string)
				if err := validateRedirectURI(s, e.p.redirectPatterns); err != nil || !slices.Contains(sent.RedirectURIs, s) {
					t.Fatalf("registered the redirect URI %q (%v) from %q", s, err, body)
				}
			}
			name, _ := out["client_name"].(string)
			if err := checkText(name, maxClientNameLen); err != nil {
				t.Fatalf("registered the name %q: %v", name, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if c := out["error"]; c != CodeInvalidClientMetadata && c != CodeInvalidRedirectURI {
				t.Fatalf("refused with %v", c)
			}
		default:
			t.Fatalf("answered %d to %q", w.Code, body)
		}
	})
}

// fzKinds are the stored record kinds and what each decodes into.
var fzKinds = []struct {
	kind string
	new  func() any
}{
	{kindClient, func() any { return new(clientRecord) }},
	{kindTxn, func() any { return new(transaction) }},
	{kindCode, func() any { return new(codeRecord) }},
	{kindGrant, func() any { return new(grantRecord) }},
	{kindCSRF, func() any { return new(string) }},
	{kindUsed, func() any { return new(string) }},
	{kindRevoked, func() any { return new(bool) }},
}

// FuzzStoredValue decodes fuzzed stored values, as a store returns them
// (raw bytes, which must read as absent unless the sealer made them) and as
// the proxy sealed them (any JSON: a record of odd but authentic content, as
// an older or newer version might write). A grant of fuzzed content is then
// put behind a refresh and an MCP request. Invariants: no panic; raw bytes
// never open; decoding fails only as ErrNotFound; the refresh never answers
// 5xx but 503, and issues tokens only for the client the grant names; the
// MCP request admits only the grant's subject.
func FuzzStoredValue(f *testing.F) {
	e := newFzEnv(f, kindGrant) // the proxy's own grant writes are dropped
	ctx := context.Background()
	sealedGrant, _ := e.p.seal(storeKey(kindGrant, "x"), e.grant)
	good, _ := json.Marshal(e.grant)
	f.Add(uint8(3), sealedGrant, good)
	f.Add(uint8(3), []byte{}, []byte(`{"id":"x","secret":"","client_id":"`+fzClientID+`","gen":9223372036854775807,"exp":"2030-01-01T00:00:00Z"}`))
	f.Add(uint8(3), []byte{1, 2, 'k'}, []byte(`{"client_id":"`+fzClientID+`","gen":1,"exp":"0001-01-01T00:00:00Z","upstream":{"exp":"1970-01-01T00:00:00Z"}}`))
	f.Add(uint8(3), []byte("null"), []byte(`{"client_id":"`+fzClientID+`","gen":-1,"user":{"sub":""},"resource":"`+e.p.resource+`"}`))
	f.Add(uint8(0), []byte("{}"), []byte(`{"id":"`+fzClientID+`","redirect_uris":null}`))
	f.Add(uint8(1), []byte{0}, []byte(`{"redirect_uri":"javascript:x","scopes":[1]}`))
	f.Add(uint8(2), []byte{1, 0}, []byte(`{"exp":"not a time"}`))
	f.Add(uint8(4), []byte{}, []byte(`"txn"`))
	f.Add(uint8(6), []byte{}, []byte(`true`))
	f.Add(uint8(6), []byte{}, []byte(`[]`))
	f.Fuzz(func(t *testing.T, kind uint8, raw, plaintext []byte) {
		k := fzKinds[int(kind)%len(fzKinds)]
		key := storeKey(k.kind, "fz-id")
		if err := e.p.open(key, raw, k.new()); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("raw value: %v", err)
		} else if err == nil {
			if _, err := e.p.keys.sealer.Open(raw, []byte(key)); err != nil {
				t.Fatalf("a value the sealer refuses decoded")
			}
		}
		sealed, err := e.p.keys.sealer.Seal(plaintext, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		v := k.new()
		if err := e.p.open(key, sealed, v); err != nil {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("sealed value: %v", err)
			}
			return
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		if k.kind == kindGrant {
			fzUseGrant(t, e, ctx, v.(*grantRecord), plaintext)
		}
	})
}

// fzUseGrant stores a grant of fuzzed content under a fresh id and presents
// a refresh token and an access token made for it.
func fzUseGrant(t *testing.T, e *fzEnv, ctx context.Context, g *grantRecord, plaintext []byte) {
	gid := randomToken(16)
	key := storeKey(kindGrant, gid)
	sealed, err := e.p.keys.sealer.Seal(plaintext, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	store := e.p.store.(*fzStore).MemoryStore
	if err := store.Set(ctx, key, sealed, time.Minute); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Delete(ctx, key) }()
	gen := max(g.Generation, 1)
	rt := gid + "." + strconv.Itoa(gen) + "." + b64Strict.EncodeToString(refreshMAC(g, gen))
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {fzClientID}}
	req := httptest.NewRequest(http.MethodPost, fzBase+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := fzServe(e.p, req)
	switch {
	case w.Code == http.StatusOK && g.ClientID != fzClientID:
		t.Fatalf("refreshed a grant of client %q for %q", g.ClientID, fzClientID)
	case w.Code >= 500 && w.Code != http.StatusServiceUnavailable:
		t.Fatalf("refresh answered %d: %s", w.Code, w.Body.String())
	}
	g.ID = gid
	tok, te := e.p.tokensFor(g, gen, e.now, g.Scopes)
	if te != nil {
		return
	}
	c, err := e.p.verifyAccessToken(ctx, tok.AccessToken)
	if err == nil && (c.Subject != g.User.Subject || c.MCPClient == nil || c.MCPClient.ID != g.ClientID) {
		t.Fatalf("admitted %q of client %v for a grant of %q / %q", c.Subject, c.MCPClient, g.User.Subject, g.ClientID)
	}
}
