package cognitomcp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeySetKeepsOnlyStrongRS256Keys: a JWKS may publish keys the verifier
// must not use; the key set keeps only RS256 signing keys of at least 2048
// bits with e ≥ 65537 (Cognito's), so a small exponent can neither sign
// tokens it accepts nor weaken the token cache.
func TestKeySetKeepsOnlyStrongRS256Keys(t *testing.T) {
	rsaKey := func(bits, e int) *rsa.PublicKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		require.NoError(t, err)
		pub := k.PublicKey
		pub.E = e // the JWKS publishes whatever it likes; only the numbers matter here
		return &pub
	}
	strong := rsaKey(2048, 65537)
	keys := []jose.JSONWebKey{
		{KeyID: "good", Key: strong, Algorithm: "RS256", Use: "sig"},
		{KeyID: "good-no-alg-no-use", Key: strong},
		{KeyID: "e65539", Key: rsaKey(2048, 65539), Algorithm: "RS256", Use: "sig"},
		{KeyID: "e3", Key: rsaKey(2048, 3), Algorithm: "RS256", Use: "sig"},
		{KeyID: "e17", Key: rsaKey(2048, 17), Algorithm: "RS256", Use: "sig"},
		{KeyID: "1024-bit", Key: rsaKey(1024, 65537), Algorithm: "RS256", Use: "sig"},
		{KeyID: "encryption", Key: strong, Algorithm: "RS256", Use: "enc"},
		{KeyID: "ps256", Key: strong, Algorithm: "PS256", Use: "sig"},
		{KeyID: "", Key: strong, Algorithm: "RS256", Use: "sig"},
	}
	fetch := func(keys []jose.JSONWebKey) (map[string]*rsa.PublicKey, error) {
		body, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		require.NoError(t, err)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
		t.Cleanup(srv.Close)
		return newKeySet(srv.URL, srv.Client(), time.Now, time.Minute).fetch(t.Context())
	}

	got, err := fetch(keys)
	require.NoError(t, err)
	kids := make([]string, 0, len(got))
	for kid := range got {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	assert.Equal(t, []string{"e65539", "good", "good-no-alg-no-use"}, kids)

	// A JWKS of weak keys only is refused as a whole, and says why.
	_, err = fetch(keys[3:5]) // e = 3 and e = 17
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2048 bits")
}

// panicOnce is a transport that panics on its first request and then
// serves body.
type panicOnce struct {
	calls int
	body  []byte
}

func (p *panicOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	p.calls++
	if p.calls == 1 {
		panic("a transport of one's own panicked")
	}
	rec := httptest.NewRecorder()
	_, _ = rec.Write(p.body)
	return rec.Result(), nil
}

// TestKeySetSurvivesAPanickingFetch: a fetch that panics (a custom
// HTTPClient's transport) fails, with the panic as its error: it wakes its
// waiters and leaves no fetch in flight, so the next unknown kid fetches
// again instead of waiting for ever (and the process, whose fetch runs on
// a goroutine of its own, does not crash).
func TestKeySetSurvivesAPanickingFetch(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{KeyID: "k2", Key: &k.PublicKey, Algorithm: "RS256", Use: "sig"}}})
	require.NoError(t, err)
	tr := &panicOnce{body: body}
	now := time.Unix(1_800_000_000, 0)
	ks := newKeySet("https://issuer.example/.well-known/jwks.json", &http.Client{Transport: tr}, func() time.Time { return now }, time.Minute)

	_, err = ks.key(t.Context(), "k1")
	require.ErrorIs(t, err, ErrKeySetUnavailable, "the panic is the fetch's error")
	assert.ErrorContains(t, err, "panic")
	now = now.Add(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	got, err := ks.key(ctx, "k2")
	require.NoError(t, err, "fetched again, not stuck behind the panicked fetch")
	assert.Equal(t, &k.PublicKey, got)
	assert.Equal(t, 2, tr.calls)
}
