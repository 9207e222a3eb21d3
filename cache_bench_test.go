package cognitomcp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// heapTokens is how many tokens BenchmarkTokenCacheHeap caches.
const heapTokens = 100_000

// BenchmarkTokenCacheHeap fills a cache with 100,000 distinct tokens, each
// entry built as Verify (kind=cognito: a Cognito access token) or the
// proxy (kind=proxy: the proxy's access token, its claims read from a
// grant) builds it, and reports the heap they hold after a GC
// (runtime.MemStats.HeapAlloc delta) per token and in all, beside the
// cache's own estimate (entrySize), which the byte bound counts. The bounds
// are raised to hold them all: at the defaults (10,000 entries, 64 MiB) the
// cache holds 10,000. Run it with -benchtime=1x.
func BenchmarkTokenCacheHeap(b *testing.B) {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	b.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice", Password: "alice-pw-1", Email: "alice@example.com",
		Groups: []string{"admin", "staff"}, Attributes: map[string]string{"custom:tenant": "acme"}})
	app := pool.AddClient(cognitotest.Client{CallbackURLs: []string{"http://127.0.0.1/cb"}})
	access := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	id := pool.MintIDToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	kinds := []struct {
		name string
		make func(i int) (raw string, c *Claims)
	}{
		{"cognito", cognitoEntry(b, access, pool.Issuer, app.ID)},
		{"proxy", proxyEntry(b, access, id)},
	}
	for _, k := range kinds {
		b.Run("kind="+k.name, func(b *testing.B) {
			toks := make([]string, heapTokens)
			for i := range toks {
				toks[i], _ = k.make(i)
			}
			now := time.Now()
			var heap, estimate int64
			for b.Loop() {
				before := heapAlloc()
				cache := newTokenCacheBytes(2*heapTokens, 1<<30)
				for i, raw := range toks {
					_, c := k.make(i)
					cache.put(raw, c, now.Add(time.Hour), now)
				}
				after := heapAlloc()
				n, est := cache.stats()
				if n != heapTokens {
					b.Fatalf("cached %d tokens, want %d", n, heapTokens)
				}
				heap, estimate = after-before, est
				runtime.KeepAlive(cache)
			}
			b.ReportMetric(float64(heap)/heapTokens, "heap-B/token")
			b.ReportMetric(float64(estimate)/heapTokens, "estimate-B/token")
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		})
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// cognitoEntry returns distinct variants of a Cognito access token (jti and
// signature changed; the signature is not checked) and the Claims Verify
// caches for them, decoded as Verify decodes them.
func cognitoEntry(tb testing.TB, tok, issuer, clientID string) func(int) (string, *Claims) {
	_, claims, err := cognitotest.DecodeJWT(tok)
	if err != nil {
		tb.Fatal(err)
	}
	hdr, _, _ := strings.Cut(tok, ".")
	v := &Verifier{issuers: []string{issuer}, clientIDs: []string{clientID}, use: AccessToken}
	return func(i int) (string, *Claims) {
		claims["jti"] = "b3f8c6de-0000-4000-8000-" + strconv.FormatInt(1e11+int64(i), 10)
		payload, _ := json.Marshal(claims)
		raw := hdr + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + randomSignature(256)
		var wire cognitoClaims
		if err := json.Unmarshal(payload, &wire); err != nil {
			tb.Fatal(err)
		}
		client, err := v.checkUseAndClient(&wire)
		if err != nil {
			tb.Fatal(err)
		}
		return raw, claimsFromWire(&wire, client, payload)
	}
}

// proxyEntry returns distinct proxy access tokens of the usual size and the
// Claims verifyAccessToken caches for them: the user's claims decoded from
// a grant record, whose Raw merges the Cognito access and ID tokens' claims.
func proxyEntry(tb testing.TB, access, id string) func(int) (string, *Claims) {
	_, at, err1 := cognitotest.DecodeJWT(access)
	_, it, err2 := cognitotest.DecodeJWT(id)
	if err1 != nil || err2 != nil {
		tb.Fatal(err1, err2)
	}
	for k, v := range it {
		at[k] = v
	}
	raw, _ := json.Marshal(at)
	user, _ := json.Marshal(userClaims{Subject: it["sub"].(string), Username: "alice", Groups: []string{"admin", "staff"},
		Email: "alice@example.com", Issuer: it["iss"].(string), AppID: it["aud"].(string), Raw: raw})
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"0123abcd","typ":"at+jwt"}`))
	body := strings.Repeat("x", 371)
	return func(i int) (string, *Claims) {
		var u userClaims
		if err := json.Unmarshal(user, &u); err != nil {
			tb.Fatal(err)
		}
		c := &Claims{Issuer: u.Issuer, Subject: u.Subject, Username: u.Username, ClientID: u.AppID,
			TokenUse: AccessToken, Groups: u.Groups, Scopes: strings.Fields("openid email"), Email: u.Email,
			Expiry: time.Now().Add(time.Hour), IssuedAt: time.Now(),
			MCPClient: &ClientInfo{ID: strconv.Itoa(1e9 + i), Name: "Bench Client"}, raw: u.Raw}
		return hdr + "." + body + "." + randomSignature(32), c
	}
}

func randomSignature(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// BenchmarkTokenKey is the per-request hashing: tokenKey on a Cognito-sized
// token, against SHA-256 of the whole token.
func BenchmarkTokenKey(b *testing.B) {
	tok := strings.Repeat("h", 91) + "." + strings.Repeat("p", 615) + "." + randomSignature(256)
	b.Run("tokenKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tokenKey(tok)
		}
	})
	b.Run("baseline=sha256-whole-token", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = sha256.Sum256([]byte(tok))
		}
	})
}
