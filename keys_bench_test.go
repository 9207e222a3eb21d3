package cognitomcp

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func benchSigners(b *testing.B) map[string]*tokenSigner {
	b.Helper()
	return map[string]*tokenSigner{
		"HS256": newTestRing(b, KeyConfig{MasterSecret: testSecret(9)}).signer,
		"ES256": newTestRing(b, KeyConfig{MasterSecret: testSecret(9), SigningKeys: []SigningKey{{ID: "es1", PrivateKey: testECKey(b, 1)}}}).signer,
	}
}

func BenchmarkTokenSignerSign(b *testing.B) {
	signers := benchSigners(b)
	for _, alg := range []string{"HS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			s, claims := signers[alg], sampleClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTokenSignerVerify verifies a ~650-byte token into the proxy's
// claims shape; SignatureOnly stops before the JSON decoding of the payload.
func BenchmarkTokenSignerVerify(b *testing.B) {
	signers := benchSigners(b)
	for _, alg := range []string{"HS256", "ES256"} {
		s := signers[alg]
		tok, err := s.Sign(sampleClaims())
		require.NoError(b, err)
		b.Run(alg, func(b *testing.B) {
			b.SetBytes(int64(len(tok)))
			b.ReportAllocs()
			for b.Loop() {
				var c tokenClaims
				if err := s.Verify(tok, &c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/SignatureOnly", func(b *testing.B) {
			b.ReportAllocs()
			scratch := new([]byte)
			for b.Loop() {
				if _, err := s.verifiedPayload(tok, scratch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// Baseline: decoding the same payload with encoding/json, which Verify
	// does after the signature check.
	payload, err := json.Marshal(sampleClaims())
	require.NoError(b, err)
	b.Run("Baseline/json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c tokenClaims
			if err := json.Unmarshal(payload, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSealer(b *testing.B) {
	s := newTestRing(b, KeyConfig{MasterSecret: testSecret(9)}).sealer
	pt, aad := make([]byte, 1024), []byte("grant:0123456789abcdef")
	sealed, err := s.Seal(pt, aad)
	require.NoError(b, err)
	b.Run("Seal1KiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = s.Seal(pt, aad)
		}
	})
	b.Run("Open1KiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Open(sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCookieSigner(b *testing.B) {
	c := newTestRing(b, KeyConfig{MasterSecret: testSecret(9)}).cookies
	now := time.Unix(1_800_000_000, 0)
	signed := c.Sign("__Host-mcp_consent", "Yk3o2n3XbQ4yFh1mZp8sWq7rVt6uEa5dCc9bNn0jLkM", now.Add(time.Hour))
	b.Run("Sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Sign("__Host-mcp_consent", "Yk3o2n3XbQ4yFh1mZp8sWq7rVt6uEa5dCc9bNn0jLkM", now)
		}
	})
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Verify("__Host-mcp_consent", signed, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkHashKey(b *testing.B) {
	tok := randomToken(32)
	b.ReportAllocs()
	for b.Loop() {
		hashKey("refresh", tok)
	}
}

func BenchmarkRandomToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		randomToken(32)
	}
}
