package cognitomcp_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
	"github.com/cognitomcp/cognitomcp/cognitotest"
)

// withKid returns tok with its header's kid replaced, keeping its payload
// and (now wrong) signature: the kid is looked up before any signature is
// checked, so this is all a flood of unknown kids needs.
func withKid(t *testing.T, tok, kid string) string {
	t.Helper()
	parts := strings.SplitN(tok, ".", 2)
	return b64e([]byte(`{"alg":"RS256","kid":"`+kid+`"}`)) + "." + parts[1]
}

// TestVerifierUnknownKidFlood sends 10,000 tokens with distinct unknown kids
// per rate-limit window, from many goroutines: each window causes one JWKS
// fetch, however many kids and callers.
func TestVerifierUnknownKidFlood(t *testing.T) {
	f := newVerifierFixture(t, 0)
	good := f.accessToken(nil)
	const perWindow, workers = 10_000, 16
	for window := range 3 {
		f.clock.Advance(2 * time.Minute) // past JWKSRefreshInterval (default 1 minute)
		before := f.pool.Requests(cognitotest.EndpointJWKS)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < perWindow; i += workers {
					kid := "unknown-" + strconv.Itoa(window) + "-" + strconv.Itoa(i)
					_, err := f.access.Verify(t.Context(), withKid(t, good, kid))
					if !assert.ErrorIs(t, err, cognitomcp.ErrUnknownKey) {
						return
					}
				}
			})
		}
		wg.Wait()
		assert.Equal(t, before+1, f.pool.Requests(cognitotest.EndpointJWKS), "window %d: 10,000 unknown kids, one fetch", window)
	}
}

// TestVerifierNoNetworkOnTheHotPath verifies tokens under known keys, good
// and badly signed, with the cache off: the JWKS is never fetched again.
func TestVerifierNoNetworkOnTheHotPath(t *testing.T) {
	f := newVerifierFixture(t, 0) // CacheSize -1: every Verify checks the signature
	f.clock.Advance(2 * time.Minute)
	before := f.pool.Requests(cognitotest.EndpointJWKS)
	good := f.accessToken(nil)
	badSig := good[:len(good)-4] + "AAAA"
	for range 200 {
		_, err := f.access.Verify(t.Context(), good)
		require.NoError(t, err)
		_, err = f.access.Verify(t.Context(), badSig)
		require.ErrorIs(t, err, cognitomcp.ErrInvalidSignature)
	}
	assert.Equal(t, before, f.pool.Requests(cognitotest.EndpointJWKS), "a known kid never fetches, even with a bad signature")
}

// TestVerifierRefetchKeepsTheCallersDeadline: the request whose unknown kid
// starts a JWKS fetch waits for it no longer than its own context, as the
// requests waiting on the same fetch do; the fetch goes on for them.
func TestVerifierRefetchKeepsTheCallersDeadline(t *testing.T) {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice"})
	app := pool.AddClient(cognitotest.Client{})
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{
		IssuerURL: pool.Issuer, ClientIDs: []string{app.ID}, JWKSRefreshInterval: time.Nanosecond})
	require.NoError(t, err)
	pool.RotateKeys() // a new kid: the next token needs a fetch
	tok := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	pool.InjectFault(cognitotest.EndpointJWKS, cognitotest.Fault{Delay: 2 * time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = v.Verify(ctx, tok)
	assert.Less(t, time.Since(start), time.Second, "Verify outlived its context's deadline")
	require.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// The fetch it started went on: the token verifies once it is in.
	assert.Eventually(t, func() bool {
		_, err := v.Verify(t.Context(), tok)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
}

// goexitTransport ends the goroutine of a request (runtime.Goexit, as a
// test double's t.FailNow in RoundTrip would) while armed.
type goexitTransport struct {
	next  http.RoundTripper
	armed atomic.Bool
}

func (g *goexitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.armed.Load() {
		runtime.Goexit()
	}
	return g.next.RoundTrip(r)
}

// TestVerifierKeepsItsKeysWhenAFetchDoesNotReturn: a JWKS fetch that ends
// without returning (a Goexit or a panic(nil) in an HTTPClient's transport
// of one's own) is a failed fetch: the keys known before stay.
func TestVerifierKeepsItsKeysWhenAFetchDoesNotReturn(t *testing.T) {
	pool := cognitotest.NewUserPool(cognitotest.Options{})
	t.Cleanup(pool.Close)
	pool.AddUser(cognitotest.User{Username: "alice"})
	app := pool.AddClient(cognitotest.Client{})
	tr := &goexitTransport{next: pool.Transport()}
	var now atomic.Int64
	now.Store(time.Now().Unix())
	v, err := cognitomcp.NewVerifier(t.Context(), cognitomcp.VerifierConfig{IssuerURL: pool.Issuer, ClientIDs: []string{app.ID},
		HTTPClient: &http.Client{Transport: tr}, CacheSize: -1, Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	require.NoError(t, err)
	known := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	pool.RotateKeys()
	unknown := pool.MintAccessToken(cognitotest.TokenOptions{Username: "alice", ClientID: app.ID})
	now.Add(120) // past JWKSRefreshInterval: the unknown kid fetches

	tr.armed.Store(true)
	_, err = v.Verify(t.Context(), unknown)
	assert.ErrorIs(t, err, cognitomcp.ErrKeySetUnavailable)
	tr.armed.Store(false)
	_, err = v.Verify(t.Context(), known)
	assert.NoError(t, err, "a token under a key held before the fetch")
}
