package cognitomcp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// Fixtures

func testSecret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// testECKey is a fixed P-256 key, so fuzz corpora and failures reproduce.
func testECKey(t testing.TB, seed byte) *ecdsa.PrivateKey {
	t.Helper()
	d := sha256.Sum256([]byte{seed})
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	require.NoError(t, err)
	return k
}

func newTestRing(t testing.TB, cfg KeyConfig) *keyRing {
	t.Helper()
	r, err := newKeyRing(cfg)
	require.NoError(t, err)
	return r
}

// tokenClaims is shaped like the proxy's access-token claims.
type tokenClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience string   `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	ID       string   `json:"jti"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Username string   `json:"username"`
	Groups   []string `json:"cognito:groups"`
}

func sampleClaims() tokenClaims {
	return tokenClaims{
		Issuer:   "https://mcp.example.com",
		Subject:  "6c1f3a2e-8b7d-4f0e-9a51-2d3c4b5a6e7f",
		Audience: "https://mcp.example.com/mcp",
		Expiry:   1893456000,
		IssuedAt: 1893452400,
		ID:       "Yk3o2n3XbQ4yFh1mZp8sWq7rVt6uEa5dCc9bNn0jLkM",
		ClientID: "mcp_client_2bX9kqv7LrT4wZ8y",
		Scope:    "openid email profile mcp:tools mcp:resources",
		Username: "alice@example.com",
		Groups:   []string{"admins", "developers", "mcp-users"},
	}
}

// jwsFrom builds a compact JWS with any header and payload: header may be a
// string (raw JSON) or a value to marshal; sign gets the signing input.
func jwsFrom(t testing.TB, header any, payload string, sign func([]byte) []byte) string {
	t.Helper()
	h, ok := header.(string)
	if !ok {
		js, err := json.Marshal(header)
		require.NoError(t, err)
		h = string(js)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(h)) + "." + enc.EncodeToString([]byte(payload))
	return input + "." + enc.EncodeToString(sign([]byte(input)))
}

func hsSign(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// esSign signs like our signer does: r||s with low S.
func esSign(t testing.TB, k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		require.NoError(t, err)
		if s.Cmp(p256HalfOrder) > 0 {
			s.Sub(elliptic.P256().Params().N, s)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

func decodeHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	js, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.Unmarshal(js, &h))
	return h
}

// ---------------------------------------------------------------------------
// KeyConfig validation and derivation

func TestKeyConfigValidation(t *testing.T) {
	ec := testECKey(t, 1)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	enc := []EncryptionKey{{ID: "e1", Key: testSecret(2)}}
	cookies := [][]byte{testSecret(3)}
	explicit := func(sk ...SigningKey) KeyConfig {
		return KeyConfig{SigningKeys: sk, EncryptionKeys: enc, CookieKeys: cookies}
	}
	tests := []struct {
		name    string
		cfg     KeyConfig
		wantErr string // exact prefix of the error; "" means valid
	}{
		{"empty config", KeyConfig{}, "cognitomcp: KeyConfig.MasterSecret: required unless"},
		{"short master secret", KeyConfig{MasterSecret: make([]byte, 31)}, "cognitomcp: KeyConfig.MasterSecret: 31 bytes, need at least 32"},
		{"master secret alone", KeyConfig{MasterSecret: testSecret(9)}, ""},
		{"explicit keys alone", explicit(SigningKey{ID: "k1", Secret: testSecret(1)}), ""},
		{"explicit keys but one list missing", KeyConfig{SigningKeys: []SigningKey{{ID: "k1", Secret: testSecret(1)}}, EncryptionKeys: enc}, "cognitomcp: KeyConfig.MasterSecret: required"},
		{"short master secret with explicit keys", func() KeyConfig {
			c := explicit(SigningKey{ID: "k1", Secret: testSecret(1)})
			c.MasterSecret = []byte("short")
			return c
		}(), "cognitomcp: KeyConfig.MasterSecret: 5 bytes"},
		{"short HS256 secret", explicit(SigningKey{ID: "k1", Secret: make([]byte, 31)}), "cognitomcp: KeyConfig.SigningKeys[0].Secret: 31 bytes, need at least 32"},
		{"no secret nor private key", explicit(SigningKey{ID: "k1"}), "cognitomcp: KeyConfig.SigningKeys[0].Secret: 0 bytes"},
		{"secret and private key", explicit(SigningKey{ID: "k1", Secret: testSecret(1), PrivateKey: ec}), "cognitomcp: KeyConfig.SigningKeys[0]: set Secret or PrivateKey, not both"},
		{"EC key not P-256", explicit(SigningKey{ID: "k1", PrivateKey: p384}), "cognitomcp: KeyConfig.SigningKeys[0].PrivateKey: curve must be P-256"},
		{"ES256 key", explicit(SigningKey{ID: "k1", PrivateKey: ec}), ""},
		{"missing signing ID", explicit(SigningKey{Secret: testSecret(1)}), "cognitomcp: KeyConfig.SigningKeys[0].ID: must be 1 to 64 bytes"},
		{"signing ID with space", explicit(SigningKey{ID: "k 1", Secret: testSecret(1)}), `cognitomcp: KeyConfig.SigningKeys[0].ID: "k 1": only printable ASCII`},
		{"signing ID not ASCII", explicit(SigningKey{ID: "ké", Secret: testSecret(1)}), "cognitomcp: KeyConfig.SigningKeys[0].ID"},
		{"duplicate signing IDs", explicit(SigningKey{ID: "k1", Secret: testSecret(1)}, SigningKey{ID: "k1", PrivateKey: ec}), `cognitomcp: KeyConfig.SigningKeys[1]: duplicate ID "k1"`},
		{"encryption key 31 bytes", KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: "e1", Key: make([]byte, 31)}}}, "cognitomcp: KeyConfig.EncryptionKeys[0].Key: 31 bytes, need exactly 32"},
		{"encryption key 33 bytes", KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: "e1", Key: make([]byte, 33)}}}, "cognitomcp: KeyConfig.EncryptionKeys[0].Key: 33 bytes"},
		{"encryption ID 33 bytes", KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: strings.Repeat("e", 33), Key: testSecret(2)}}}, "cognitomcp: KeyConfig.EncryptionKeys[0].ID: must be 1 to 32 bytes"},
		{"encryption ID 32 bytes", KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: strings.Repeat("e", 32), Key: testSecret(2)}}}, ""},
		{"duplicate encryption IDs", KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: "e1", Key: testSecret(2)}, {ID: "e1", Key: testSecret(4)}}}, `cognitomcp: KeyConfig.EncryptionKeys[1]: duplicate ID "e1"`},
		{"short cookie key", KeyConfig{MasterSecret: testSecret(9), CookieKeys: [][]byte{testSecret(3), make([]byte, 31)}}, "cognitomcp: KeyConfig.CookieKeys[1]: 31 bytes"},
		{"duplicate cookie keys", KeyConfig{MasterSecret: testSecret(9), CookieKeys: [][]byte{testSecret(3), testSecret(3)}}, "cognitomcp: KeyConfig.CookieKeys[1]: same key"},
		{"one key in two roles", KeyConfig{SigningKeys: []SigningKey{{ID: "k1", Secret: testSecret(1)}}, EncryptionKeys: enc, CookieKeys: [][]byte{testSecret(1)}}, "cognitomcp: KeyConfig.CookieKeys[0]: same key as SigningKeys[0].Secret"},
		{"explicit key equal to master secret", KeyConfig{MasterSecret: testSecret(2), EncryptionKeys: enc}, "cognitomcp: KeyConfig.EncryptionKeys[0].Key: same key as MasterSecret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := newKeyRing(tc.cfg)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.NotNil(t, r.signer)
				assert.NotNil(t, r.sealer)
				assert.NotNil(t, r.cookies)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tc.wantErr), "error %q, want prefix %q", err, tc.wantErr)
		})
	}
}

// secretForms are the ways a log handler may print key bytes: as text
// (slog's text handler), base64 (encoding/json), hex, and fmt's %v of a
// byte slice in a struct.
func secretForms(key []byte) []string {
	return []string{string(key), base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key), fmt.Sprint(key)}
}

// logged is what slog's text and JSON handlers write for args.
func logged(args ...any) string {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", args...)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", args...)
	return buf.String()
}

// TestKeyConfigLogValueHidesKeys: a KeyConfig, or one of its keys, logged
// with slog shows key IDs, algorithms and counts, never a byte of a key.
func TestKeyConfigLogValueHidesKeys(t *testing.T) {
	ec := testECKey(t, 1)
	cfg := KeyConfig{
		MasterSecret:   []byte("master-secret-master-secret-0001"),
		SigningKeys:    []SigningKey{{ID: "sig-1", Secret: []byte("signing-secret-signing-secret-01")}, {ID: "sig-2", PrivateKey: ec}},
		EncryptionKeys: []EncryptionKey{{ID: "enc-1", Key: []byte("encryption-key-encryption-key-01")}},
		CookieKeys:     [][]byte{[]byte("cookie-key-1-cookie-key-1-cookie"), []byte("cookie-key-2-cookie-key-2-cookie")},
	}
	require.NoError(t, cfg.validate(), "precondition: a valid config")
	out := logged("keys", cfg, "pointer", &cfg, "signing", cfg.SigningKeys[0], "ec", cfg.SigningKeys[1], "encryption", cfg.EncryptionKeys[0])

	ecRaw, err := ec.Bytes()
	require.NoError(t, err)
	secrets := [][]byte{cfg.MasterSecret, cfg.SigningKeys[0].Secret, cfg.EncryptionKeys[0].Key, cfg.CookieKeys[0], cfg.CookieKeys[1], ecRaw}
	for _, key := range secrets {
		for _, form := range secretForms(key) {
			assert.NotContains(t, out, form, "a key of %q is in the log", key)
		}
	}
	assert.NotContains(t, out, new(big.Int).SetBytes(ecRaw).String(), "the ES256 private key (decimal, as encoding/json writes it) is in the log")
	for _, want := range []string{"keys.MasterSecret=REDACTED", `keys.SigningKeys="[sig-1 (HS256) sig-2 (ES256)]"`,
		"keys.EncryptionKeys=[enc-1]", "keys.CookieKeys=2", "signing.ID=sig-1", "ec.Alg=ES256", "encryption.ID=enc-1"} {
		assert.Contains(t, out, want)
	}
}

func TestKeyConfigCopiesKeys(t *testing.T) {
	secret, cookie := testSecret(1), testSecret(3)
	enc := testSecret(2)
	r := newTestRing(t, KeyConfig{
		SigningKeys:    []SigningKey{{ID: "k1", Secret: secret}},
		EncryptionKeys: []EncryptionKey{{ID: "e1", Key: enc}},
		CookieKeys:     [][]byte{cookie},
	})
	tok, err := r.signer.Sign(map[string]any{"sub": "a"})
	require.NoError(t, err)
	sealed, err := r.sealer.Seal([]byte("x"), nil)
	require.NoError(t, err)
	c := r.cookies.Sign("n", "v", time.Unix(100, 0))

	for _, b := range [][]byte{secret, enc, cookie} {
		clear(b)
	}
	var m map[string]any
	assert.NoError(t, r.signer.Verify(tok, &m))
	_, err = r.sealer.Open(sealed, nil)
	assert.NoError(t, err)
	_, err = r.cookies.Verify("n", c, time.Unix(99, 0))
	assert.NoError(t, err)
}

func TestKeyDerivationDeterministic(t *testing.T) {
	master := testSecret(7)
	a := newTestRing(t, KeyConfig{MasterSecret: master})
	b := newTestRing(t, KeyConfig{MasterSecret: bytes.Clone(master)})
	other := newTestRing(t, KeyConfig{MasterSecret: testSecret(8)})

	t.Run("same master, same kids", func(t *testing.T) {
		assert.Equal(t, a.signer.signKey.kid, b.signer.signKey.kid)
		assert.Equal(t, a.sealer.sealKey.header, b.sealer.sealKey.header)
		assert.Equal(t, a.cookies.keys[0].id, b.cookies.keys[0].id)
	})
	t.Run("same master, interchangeable rings", func(t *testing.T) {
		tok, err := a.signer.Sign(sampleClaims())
		require.NoError(t, err)
		var got tokenClaims
		require.NoError(t, b.signer.Verify(tok, &got))
		assert.Equal(t, sampleClaims(), got)

		sealed, err := a.sealer.Seal([]byte("secret"), []byte("grant:1"))
		require.NoError(t, err)
		pt, err := b.sealer.Open(sealed, []byte("grant:1"))
		require.NoError(t, err)
		assert.Equal(t, "secret", string(pt))

		c := a.cookies.Sign("txn", "v", time.Unix(200, 0))
		v, err := b.cookies.Verify("txn", c, time.Unix(100, 0))
		require.NoError(t, err)
		assert.Equal(t, "v", v)
	})
	t.Run("different master, different kids", func(t *testing.T) {
		assert.NotEqual(t, a.signer.signKey.kid, other.signer.signKey.kid)
		assert.NotEqual(t, a.sealer.sealKey.header, other.sealer.sealKey.header)
		assert.NotEqual(t, a.cookies.keys[0].id, other.cookies.keys[0].id)

		tok, err := a.signer.Sign(sampleClaims())
		require.NoError(t, err)
		assert.ErrorIs(t, other.signer.Verify(tok, &tokenClaims{}), errUnknownKID)
		sealed, err := a.sealer.Seal([]byte("secret"), nil)
		require.NoError(t, err)
		_, err = other.sealer.Open(sealed, nil)
		assert.ErrorIs(t, err, errDecrypt)
		_, err = other.cookies.Verify("txn", a.cookies.Sign("txn", "v", time.Unix(200, 0)), time.Unix(100, 0))
		assert.ErrorIs(t, err, errCookieInvalid)
	})
	t.Run("three derived keys are distinct", func(t *testing.T) {
		keys := [][]byte{
			deriveKey(master, labelSigning, 32),
			deriveKey(master, labelEncryption, 32),
			deriveKey(master, labelCookie, 32),
		}
		for i := range keys {
			assert.Len(t, keys[i], 32)
			assert.NotEqual(t, master, keys[i])
			for j := range i {
				assert.NotEqual(t, keys[i], keys[j], "keys %d and %d", i, j)
			}
		}
		kids := []string{a.signer.signKey.kid, string(a.sealer.sealKey.header[2:]), a.cookies.keys[0].id}
		assert.Len(t, map[string]bool{kids[0]: true, kids[1]: true, kids[2]: true}, 3, "kids %v", kids)
	})
}

// TestKeyConfigExpanded: the explicit lists Expanded gives for a
// MasterSecret, with a new encryption key prepended, open what the master
// secret's ring sealed, verify its tokens and cookies, and seal under the
// new key; the result has no MasterSecret, and an invalid config is refused.
func TestKeyConfigExpanded(t *testing.T) {
	master := testSecret(7)
	old := newTestRing(t, KeyConfig{MasterSecret: master})
	keys, err := KeyConfig{MasterSecret: master}.Expanded()
	require.NoError(t, err)
	assert.Nil(t, keys.MasterSecret)
	require.Len(t, keys.EncryptionKeys, 1)
	keys.EncryptionKeys = append([]EncryptionKey{{ID: "enc-2", Key: testSecret(9)}}, keys.EncryptionKeys...)
	rotated := newTestRing(t, keys)

	sealed, err := old.sealer.Seal([]byte("secret"), []byte("grant:1"))
	require.NoError(t, err)
	pt, err := rotated.sealer.Open(sealed, []byte("grant:1"))
	require.NoError(t, err, "a value sealed under the master secret opens after the rotation")
	assert.Equal(t, "secret", string(pt))
	resealed, err := rotated.sealer.Seal([]byte("secret"), []byte("grant:1"))
	require.NoError(t, err)
	_, err = old.sealer.Open(resealed, []byte("grant:1"))
	assert.ErrorIs(t, err, errDecrypt, "new values are sealed under the new key")

	tok, err := old.signer.Sign(sampleClaims())
	require.NoError(t, err)
	require.NoError(t, rotated.signer.Verify(tok, &tokenClaims{}))
	_, err = rotated.cookies.Verify("txn", old.cookies.Sign("txn", "v", time.Unix(200, 0)), time.Unix(100, 0))
	require.NoError(t, err)

	_, err = KeyConfig{MasterSecret: []byte("short")}.Expanded()
	assert.Error(t, err)
}

func TestKeyConfigExplicitOverridesDerived(t *testing.T) {
	master := testSecret(7)
	derived := newTestRing(t, KeyConfig{MasterSecret: master})
	r := newTestRing(t, KeyConfig{MasterSecret: master, SigningKeys: []SigningKey{{ID: "explicit", Secret: testSecret(1)}}})

	tok, err := r.signer.Sign(sampleClaims())
	require.NoError(t, err)
	assert.Equal(t, "explicit", decodeHeader(t, tok)["kid"])
	assert.ErrorIs(t, derived.signer.Verify(tok, &tokenClaims{}), errUnknownKID, "the derived signing key is not added beside explicit ones")
	// The lists left empty are still derived.
	assert.Equal(t, derived.sealer.sealKey.header, r.sealer.sealKey.header)
	assert.Equal(t, derived.cookies.keys[0].id, r.cookies.keys[0].id)
}

func TestKeyDeriveRFC5869(t *testing.T) {
	// RFC 5869 test case 3: SHA-256, zero-length salt and info.
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	want := "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
	assert.Equal(t, want, hex.EncodeToString(deriveKey(ikm, "", 42)))
}

func TestKeyHashAndRandomToken(t *testing.T) {
	t.Run("hashKey", func(t *testing.T) {
		h := hashKey("code", "abc")
		assert.Len(t, h, 64)
		assert.Equal(t, h, hashKey("code", "abc"))
		assert.NotEqual(t, hashKey("ab", "c"), hashKey("a", "bc"), "parts are length-prefixed")
		assert.NotEqual(t, hashKey("abc"), hashKey("ab", "c"))
		long := strings.Repeat("x", 1000) // past the stack buffer
		assert.Equal(t, hashKey(long), hashKey(long))
		_, err := hex.DecodeString(h)
		assert.NoError(t, err)
	})
	t.Run("randomToken", func(t *testing.T) {
		a, b := randomToken(32), randomToken(32)
		assert.Len(t, a, 43)
		assert.NotEqual(t, a, b)
		raw, err := base64.RawURLEncoding.DecodeString(a)
		require.NoError(t, err)
		assert.Len(t, raw, 32)
		assert.Panics(t, func() { randomToken(15) })
	})
}

// ---------------------------------------------------------------------------
// tokenSigner

func TestTokenSignerRoundtrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  SigningKey
		alg  string
	}{
		{"HS256", SigningKey{ID: "hs1", Secret: testSecret(1)}, "HS256"},
		{"ES256", SigningKey{ID: "es1", PrivateKey: testECKey(t, 1)}, "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), SigningKeys: []SigningKey{tc.key}})
			tok, err := r.signer.Sign(sampleClaims())
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"alg": tc.alg, "kid": tc.key.ID, "typ": "at+jwt"}, decodeHeader(t, tok))
			var got tokenClaims
			require.NoError(t, r.signer.Verify(tok, &got))
			assert.Equal(t, sampleClaims(), got)
		})
	}
	t.Run("claims must be a JSON object", func(t *testing.T) {
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
		for _, c := range []any{nil, "x", []int{1}, make(chan int)} {
			_, err := r.signer.Sign(c)
			assert.Error(t, err, "%T", c)
		}
	})
	t.Run("ES256 signatures are low-S", func(t *testing.T) {
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), SigningKeys: []SigningKey{{ID: "es1", PrivateKey: testECKey(t, 1)}}})
		for range 32 {
			tok, err := r.signer.Sign(sampleClaims())
			require.NoError(t, err)
			sig, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
			require.NoError(t, err)
			assert.LessOrEqual(t, new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfOrder), 0)
		}
	})
}

func TestTokenSignerRotation(t *testing.T) {
	oldKey := SigningKey{ID: "old", Secret: testSecret(1)}
	newKey := SigningKey{ID: "new", PrivateKey: testECKey(t, 2)}
	master := testSecret(9)
	old := newTestRing(t, KeyConfig{MasterSecret: master, SigningKeys: []SigningKey{oldKey}})
	both := newTestRing(t, KeyConfig{MasterSecret: master, SigningKeys: []SigningKey{newKey, oldKey}})
	onlyNew := newTestRing(t, KeyConfig{MasterSecret: master, SigningKeys: []SigningKey{newKey}})

	oldTok, err := old.signer.Sign(sampleClaims())
	require.NoError(t, err)
	var got tokenClaims
	assert.NoError(t, both.signer.Verify(oldTok, &got), "[new, old] verifies old tokens")
	newTok, err := both.signer.Sign(sampleClaims())
	require.NoError(t, err)
	assert.Equal(t, "new", decodeHeader(t, newTok)["kid"], "[new, old] signs with new")
	assert.NoError(t, onlyNew.signer.Verify(newTok, &got))
	assert.ErrorIs(t, onlyNew.signer.Verify(oldTok, &got), errUnknownKID, "[new] refuses old tokens")
}

func TestTokenSignerPublicJWKS(t *testing.T) {
	t.Run("HS256 only publishes nothing", func(t *testing.T) {
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
		assert.JSONEq(t, `{"keys":[]}`, string(r.signer.PublicJWKS()))
	})
	t.Run("ES256 public keys verify tokens", func(t *testing.T) {
		ec1, ec2 := testECKey(t, 1), testECKey(t, 2)
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), SigningKeys: []SigningKey{
			{ID: "es1", PrivateKey: ec1}, {ID: "hs1", Secret: testSecret(1)}, {ID: "es2", PrivateKey: ec2},
		}})
		js := r.signer.PublicJWKS()
		assert.NotContains(t, string(js), `"d"`)
		assert.NotContains(t, string(js), `"k"`)
		var set struct{ Keys []map[string]string }
		require.NoError(t, json.Unmarshal(js, &set))
		require.Len(t, set.Keys, 2)
		for i, k := range []*ecdsa.PrivateKey{ec1, ec2} {
			j := set.Keys[i]
			assert.Equal(t, fmt.Sprintf("es%d", i+1), j["kid"])
			for name, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"} {
				assert.Equal(t, want, j[name])
			}
			x, err := base64.RawURLEncoding.DecodeString(j["x"])
			require.NoError(t, err)
			y, err := base64.RawURLEncoding.DecodeString(j["y"])
			require.NoError(t, err)
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			require.NoError(t, err)
			assert.True(t, pub.Equal(&k.PublicKey))
		}
		// An outside verifier with only the JWKS accepts our token.
		tok, err := r.signer.Sign(sampleClaims())
		require.NoError(t, err)
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		assert.True(t, ecdsa.Verify(&ec1.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))
	})
	t.Run("returns a copy", func(t *testing.T) {
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
		js := r.signer.PublicJWKS()
		clear(js)
		assert.JSONEq(t, `{"keys":[]}`, string(r.signer.PublicJWKS()))
	})
}

// refusalSigner is the signer the refusal and fuzz tests attack.
func refusalSigner(t testing.TB) (*tokenSigner, []byte, *ecdsa.PrivateKey) {
	t.Helper()
	hs, ec := testSecret(1), testECKey(t, 1)
	r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), SigningKeys: []SigningKey{
		{ID: "hs1", Secret: hs}, {ID: "es1", PrivateKey: ec},
	}})
	return r.signer, hs, ec
}

func TestTokenSignerRefusals(t *testing.T) {
	s, hs, ec := refusalSigner(t)
	attacker := testECKey(t, 66)
	attackerJWK, err := publicECJWK("es1", &attacker.PublicKey)
	require.NoError(t, err)
	pubPoint, err := ec.PublicKey.Bytes()
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	require.NoError(t, err)

	claims := `{"sub":"alice","aud":"https://mcp.example.com/mcp"}`
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	with := func(h map[string]any, k string, v any) map[string]any { h[k] = v; return h }
	valid := jwsFrom(t, hdr("HS256", "hs1"), claims, hsSign(hs))
	validParts := strings.Split(valid, ".")
	otherPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","aud":"https://mcp.example.com/mcp"}`))
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	huge := jwsFrom(t, hdr("HS256", "hs1"), `{"pad":"`+strings.Repeat("x", 16<<10)+`"}`, hsSign(hs))

	tests := []struct {
		name    string
		raw     string
		wantErr error // nil: must verify
	}{
		{"valid HS256 (control)", valid, nil},
		{"valid ES256 (control)", jwsFrom(t, hdr("ES256", "es1"), claims, esSign(t, ec)), nil},
		{"header re-serialised with spaces", jwsFrom(t, `{ "typ":"at+jwt", "kid":"hs1", "alg":"HS256" }`, claims, hsSign(hs)), nil},
		{"typ application/at+jwt", jwsFrom(t, with(hdr("HS256", "hs1"), "typ", "application/AT+JWT"), claims, hsSign(hs)), nil},
		{"jku x5u jwk x5c ignored when our key signed", jwsFrom(t, with(with(with(with(hdr("HS256", "hs1"),
			"jku", "https://evil.example/jwks"), "x5u", "https://evil.example/cert"), "jwk", attackerJWK), "x5c", []string{"MIIB"}), claims, hsSign(hs)), nil},

		{"alg none without signature", strings.TrimSuffix(jwsFrom(t, hdr("none", "hs1"), claims, func([]byte) []byte { return nil }), "."), errMalformedJWT},
		{"alg none, empty third part", jwsFrom(t, hdr("none", "hs1"), claims, func([]byte) []byte { return nil }), errMalformedJWT},
		{"alg none with signature", jwsFrom(t, hdr("none", "hs1"), claims, hsSign(hs)), errBadAlg},
		{"alg None", jwsFrom(t, hdr("None", "hs1"), claims, hsSign(hs)), errBadAlg},
		{"alg missing", jwsFrom(t, map[string]any{"kid": "hs1", "typ": "at+jwt"}, claims, hsSign(hs)), errBadAlg},
		{"alg not a string", jwsFrom(t, `{"alg":["HS256"],"kid":"hs1","typ":"at+jwt"}`, claims, hsSign(hs)), errBadAlg},
		{"alg RS256", jwsFrom(t, hdr("RS256", "hs1"), claims, hsSign(hs)), errBadAlg},
		{"alg HS512", jwsFrom(t, hdr("HS512", "hs1"), claims, hsSign(hs)), errBadAlg},
		{"header keys in another case", jwsFrom(t, `{"ALG":"HS256","KID":"hs1","TYP":"at+jwt"}`, claims, hsSign(hs)), errBadAlg},
		{"HS256 with ES256 public point as secret", jwsFrom(t, hdr("HS256", "es1"), claims, hsSign(pubPoint)), errBadAlg},
		{"HS256 with ES256 public DER as secret", jwsFrom(t, hdr("HS256", "es1"), claims, hsSign(pubDER)), errBadAlg},
		{"HS256 with JWKS as secret", jwsFrom(t, hdr("HS256", "es1"), claims, hsSign(s.PublicJWKS())), errBadAlg},
		{"ES256 on an HS256 kid", jwsFrom(t, hdr("ES256", "hs1"), claims, esSign(t, attacker)), errBadAlg},
		{"unknown kid", jwsFrom(t, hdr("HS256", "hs2"), claims, hsSign(hs)), errUnknownKID},
		{"kid path traversal", jwsFrom(t, hdr("HS256", "../../../../dev/null"), claims, hsSign(hs)), errUnknownKID},
		{"kid with NUL", jwsFrom(t, hdr("HS256", "hs1\x00"), claims, hsSign(hs)), errUnknownKID},
		{"kid with trailing space", jwsFrom(t, hdr("HS256", "hs1 "), claims, hsSign(hs)), errUnknownKID},
		{"kid in another case", jwsFrom(t, hdr("HS256", "HS1"), claims, hsSign(hs)), errUnknownKID},
		{"kid SQL injection", jwsFrom(t, hdr("HS256", "' OR '1'='1"), claims, hsSign(hs)), errUnknownKID},
		{"kid URL", jwsFrom(t, hdr("HS256", "https://evil.example/key"), claims, hsSign(hs)), errUnknownKID},
		{"kid empty", jwsFrom(t, hdr("HS256", ""), claims, hsSign(hs)), errUnknownKID},
		{"kid missing", jwsFrom(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, claims, hsSign(hs)), errMalformedJWT},
		{"kid not a string", jwsFrom(t, `{"alg":"HS256","kid":1,"typ":"at+jwt"}`, claims, hsSign(hs)), errMalformedJWT},
		{"jwk header with attacker key", jwsFrom(t, with(hdr("ES256", "es1"), "jwk", attackerJWK), claims, esSign(t, attacker)), errBadSignature},
		{"jwk header with attacker kid", jwsFrom(t, with(hdr("ES256", "evil"), "jwk", attackerJWK), claims, esSign(t, attacker)), errUnknownKID},
		{"jku header with attacker key", jwsFrom(t, with(hdr("ES256", "es1"), "jku", "https://evil.example/jwks"), claims, esSign(t, attacker)), errBadSignature},
		{"x5u header with attacker key", jwsFrom(t, with(hdr("ES256", "es1"), "x5u", "https://evil.example/cert"), claims, esSign(t, attacker)), errBadSignature},
		{"tampered payload", validParts[0] + "." + otherPayload + "." + validParts[2], errBadSignature},
		{"tampered signature first char", validParts[0] + "." + validParts[1] + "." + flip(validParts[2], 0), errBadSignature},
		{"tampered signature last char", validParts[0] + "." + validParts[1] + "." + flip(validParts[2], 42), errBadSignature},
		{"signature of another key", jwsFrom(t, hdr("HS256", "hs1"), claims, hsSign(testSecret(2))), errBadSignature},
		{"signature truncated", valid[:len(valid)-1], errBadSignature},
		{"signature extended", valid + "A", errBadSignature},
		{"signature with newline", valid[:len(valid)-5] + "\n" + valid[len(valid)-5:], errMalformedJWT},
		{"signature padded", valid + "=", errMalformedJWT},
		{"trailing line breaks", valid + strings.Repeat("\n", 119), errMalformedJWT},
		{"CR in the payload", validParts[0] + "." + validParts[1][:3] + "\r" + validParts[1][3:] + "." + validParts[2], errMalformedJWT},
		{"HS256 signature 64 bytes", validParts[0] + "." + validParts[1] + "." + validParts[2] + validParts[2], errBadSignature},
		{"ES256 signature ASN.1", jwsFrom(t, hdr("ES256", "es1"), claims, func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, err := ecdsa.SignASN1(rand.Reader, ec, d[:])
			require.NoError(t, err)
			return sig
		}), errBadSignature},
		{"ES256 signature zero", jwsFrom(t, hdr("ES256", "es1"), claims, func([]byte) []byte { return make([]byte, 64) }), errBadSignature},
		{"ES256 signature high-S twin", jwsFrom(t, hdr("ES256", "es1"), claims, func(in []byte) []byte {
			sig := esSign(t, ec)(in)
			s := new(big.Int).SetBytes(sig[32:])
			if s.Cmp(p256HalfOrder) <= 0 {
				s.Sub(elliptic.P256().Params().N, s)
			}
			s.FillBytes(sig[32:])
			return sig
		}), errBadSignature},
		{"empty", "", errMalformedJWT},
		{"one part", validParts[0], errMalformedJWT},
		{"two parts", validParts[0] + "." + validParts[1], errMalformedJWT},
		{"four parts", valid + ".x", errMalformedJWT},
		{"five parts (JWE)", "a.b.c.d.e", errMalformedJWT},
		{"empty header", "." + validParts[1] + "." + validParts[2], errMalformedJWT},
		{"empty payload", validParts[0] + ".." + validParts[2], errMalformedJWT},
		{"only dots", "..", errMalformedJWT},
		{"header bad base64", "eyJ!bGciOiJIUzI1NiJ9." + validParts[1] + "." + validParts[2], errMalformedJWT},
		{"header padded base64", base64.URLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"hs1","typ":"at+jwt" }`)) + "." + validParts[1] + "." + validParts[2], errMalformedJWT},
		{"header std base64", base64.StdEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"hs1","typ":"at+jwt","x":"??>>"}`)) + "." + validParts[1] + "." + validParts[2], errMalformedJWT},
		{"payload bad base64 under a valid signature", func() string {
			in := validParts[0] + ".e30!"
			return in + "." + base64.RawURLEncoding.EncodeToString(hsSign(hs)([]byte(in)))
		}(), errMalformedJWT},
		{"payload JSON null", jwsFrom(t, hdr("HS256", "hs1"), `null`, hsSign(hs)), errMalformedJWT},
		{"payload JSON array", jwsFrom(t, hdr("HS256", "hs1"), `[{"sub":"a"}]`, hsSign(hs)), errMalformedJWT},
		{"payload JSON truncated", jwsFrom(t, hdr("HS256", "hs1"), `{"sub":`, hsSign(hs)), errMalformedJWT},
		{"huge input", huge, errMalformedJWT},
		{"header not JSON", jwsFrom(t, `alg=HS256`, claims, hsSign(hs)), errMalformedJWT},
		{"header JSON array", jwsFrom(t, `["HS256","hs1"]`, claims, hsSign(hs)), errMalformedJWT},
		{"header JSON truncated", jwsFrom(t, `{"alg":"HS256","kid":"hs1"`, claims, hsSign(hs)), errMalformedJWT},
		{"header JSON with trailing data", jwsFrom(t, `{"alg":"HS256","kid":"hs1","typ":"at+jwt"}{}`, claims, hsSign(hs)), errMalformedJWT},
		{"crit header", jwsFrom(t, with(with(hdr("HS256", "hs1"), "crit", []string{"exp"}), "exp", 1), claims, hsSign(hs)), errMalformedJWT},
		{"crit header null", jwsFrom(t, with(hdr("HS256", "hs1"), "crit", nil), claims, hsSign(hs)), errMalformedJWT},
		{"b64 false with crit", jwsFrom(t, with(with(hdr("HS256", "hs1"), "b64", false), "crit", []string{"b64"}), claims, hsSign(hs)), errMalformedJWT},
		{"typ missing", jwsFrom(t, map[string]any{"alg": "HS256", "kid": "hs1"}, claims, hsSign(hs)), errMalformedJWT},
		{"typ JWT (an ID token, say)", jwsFrom(t, with(hdr("HS256", "hs1"), "typ", "JWT"), claims, hsSign(hs)), errMalformedJWT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			err := s.Verify(tc.raw, &got)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, "alice", got["sub"])
				return
			}
			assert.ErrorIs(t, err, tc.wantErr)
		})
	}
	t.Run("payload not matching dst", func(t *testing.T) {
		tok := jwsFrom(t, hdr("HS256", "hs1"), `{"exp":"soon"}`, hsSign(hs))
		assert.ErrorIs(t, s.Verify(tok, &tokenClaims{}), errMalformedJWT)
	})
	t.Run("huge input refused before decoding", func(t *testing.T) {
		assert.ErrorIs(t, s.Verify(huge, &map[string]any{}), errJWTTooLarge)
		assert.ErrorIs(t, s.Verify(strings.Repeat("A", 1<<20), &map[string]any{}), errJWTTooLarge)
	})
}

// ---------------------------------------------------------------------------
// sealer

func TestSealerRoundtrip(t *testing.T) {
	r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
	for _, pt := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte("refresh-token."), 500)} {
		sealed, err := r.sealer.Seal(pt, []byte("grant:1"))
		require.NoError(t, err)
		assert.Len(t, sealed, len(r.sealer.sealKey.header)+12+len(pt)+16)
		assert.Equal(t, byte(0x01), sealed[0])
		got, err := r.sealer.Open(sealed, []byte("grant:1"))
		require.NoError(t, err)
		assert.Equal(t, string(pt), string(got))
	}
	t.Run("two seals of one plaintext differ", func(t *testing.T) {
		a, err := r.sealer.Seal([]byte("same"), nil)
		require.NoError(t, err)
		b, err := r.sealer.Seal([]byte("same"), nil)
		require.NoError(t, err)
		assert.NotEqual(t, a, b)
	})
	t.Run("explicit key ID in the header", func(t *testing.T) {
		r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{{ID: "2026-01", Key: testSecret(2)}}})
		sealed, err := r.sealer.Seal([]byte("x"), nil)
		require.NoError(t, err)
		assert.Equal(t, append([]byte{1, 7}, "2026-01"...), sealed[:9])
	})
}

func TestSealerAADBinding(t *testing.T) {
	r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
	sealed, err := r.sealer.Seal([]byte("cognito refresh token"), []byte("grant:1"))
	require.NoError(t, err)
	for _, aad := range [][]byte{nil, []byte("grant:2"), []byte("grant:1 "), []byte("GRANT:1")} {
		_, err := r.sealer.Open(sealed, aad)
		assert.ErrorIs(t, err, errDecrypt, "aad %q", aad)
	}
}

func TestSealerTamper(t *testing.T) {
	r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{
		{ID: "k1", Key: testSecret(2)}, {ID: "k2", Key: testSecret(3)},
	}})
	sealed, err := r.sealer.Seal([]byte("some secret value"), []byte("aad"))
	require.NoError(t, err)
	hdr := 2 + 2 // version, length, "k1"
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"version", func(b []byte) []byte { b[0] = 0x02; return b }},
		{"version zero", func(b []byte) []byte { b[0] = 0; return b }},
		{"kid length", func(b []byte) []byte { b[1] = 1; return b }},
		{"kid length past the end", func(b []byte) []byte { b[1] = 255; return b }},
		{"kid byte", func(b []byte) []byte { b[3] ^= 1; return b }},
		{"kid swapped to the other key", func(b []byte) []byte { b[3] = '2'; return b }},
		{"nonce", func(b []byte) []byte { b[hdr] ^= 1; return b }},
		{"nonce last byte", func(b []byte) []byte { b[hdr+11] ^= 0x80; return b }},
		{"ciphertext", func(b []byte) []byte { b[hdr+12] ^= 1; return b }},
		{"tag", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"appended byte", func(b []byte) []byte { return append(b, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.sealer.Open(tc.edit(bytes.Clone(sealed)), []byte("aad"))
			assert.ErrorIs(t, err, errDecrypt)
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(sealed) {
			var pt []byte
			assert.NotPanics(t, func() { pt, err = r.sealer.Open(sealed[:n], []byte("aad")) })
			assert.ErrorIs(t, err, errDecrypt, "length %d", n)
			assert.Nil(t, pt)
		}
	})
}

func TestSealerRotation(t *testing.T) {
	master := testSecret(9)
	oldKey, newKey := EncryptionKey{ID: "old", Key: testSecret(2)}, EncryptionKey{ID: "new", Key: testSecret(3)}
	old := newTestRing(t, KeyConfig{MasterSecret: master, EncryptionKeys: []EncryptionKey{oldKey}})
	both := newTestRing(t, KeyConfig{MasterSecret: master, EncryptionKeys: []EncryptionKey{newKey, oldKey}})
	onlyNew := newTestRing(t, KeyConfig{MasterSecret: master, EncryptionKeys: []EncryptionKey{newKey}})

	oldVal, err := old.sealer.Seal([]byte("v1"), nil)
	require.NoError(t, err)
	pt, err := both.sealer.Open(oldVal, nil)
	require.NoError(t, err, "[new, old] opens old values")
	assert.Equal(t, "v1", string(pt))

	newVal, err := both.sealer.Seal([]byte("v2"), nil)
	require.NoError(t, err)
	assert.Equal(t, append([]byte{1, 3}, "new"...), newVal[:5], "[new, old] seals with new")
	_, err = onlyNew.sealer.Open(newVal, nil)
	assert.NoError(t, err)

	_, err = onlyNew.sealer.Open(oldVal, nil)
	assert.ErrorIs(t, err, errDecrypt, "[new] refuses old values")
	assert.ErrorIs(t, err, errDecryptUnknownKey)
}

// ---------------------------------------------------------------------------
// cookieSigner

func TestCookieSigner(t *testing.T) {
	r := newTestRing(t, KeyConfig{MasterSecret: testSecret(9)})
	c := r.cookies
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(10 * time.Minute)
	value := "txn=abc; path=/\x00é\"<>"
	signed := c.Sign("__Host-mcp_consent", value, exp)

	t.Run("roundtrip", func(t *testing.T) {
		got, err := c.Verify("__Host-mcp_consent", signed, now)
		require.NoError(t, err)
		assert.Equal(t, value, got)
		assert.NotContains(t, signed, ";")
		assert.NotContains(t, signed, " ")
	})
	t.Run("expiry", func(t *testing.T) {
		_, err := c.Verify("__Host-mcp_consent", signed, exp.Add(-time.Nanosecond))
		assert.NoError(t, err)
		_, err = c.Verify("__Host-mcp_consent", signed, exp)
		assert.ErrorIs(t, err, errCookieExpired)
		_, err = c.Verify("n", c.Sign("n", "v", time.Time{}), now)
		assert.ErrorIs(t, err, errCookieExpired, "zero expiry")
	})
	t.Run("name swap", func(t *testing.T) {
		_, err := c.Verify("__Host-mcp_csrf", signed, now)
		assert.ErrorIs(t, err, errCookieInvalid)
		// Name and value boundaries are unambiguous.
		_, err = c.Verify("a", c.Sign("ab", "c", exp), now)
		assert.ErrorIs(t, err, errCookieInvalid)
	})
	parts := strings.Split(signed, ".")
	require.Len(t, parts, 4)
	join := func(p ...string) string { return strings.Join(p, ".") }
	tampered := []struct{ name, signed string }{
		{"value", join(base64.RawURLEncoding.EncodeToString([]byte("other")), parts[1], parts[2], parts[3])},
		{"expiry extended", join(parts[0], fmt.Sprint(exp.Unix()+86400), parts[2], parts[3])},
		{"expiry with plus sign", join(parts[0], "+"+parts[1], parts[2], parts[3])},
		{"kid", join(parts[0], parts[1], "00000000", parts[3])},
		{"mac", join(parts[0], parts[1], parts[2], strings.Repeat("A", 43))},
		{"mac truncated", signed[:len(signed)-1]},
		{"mac missing", join(parts[0], parts[1], parts[2])},
		{"extra part", signed + ".x"},
		{"empty", ""},
		{"no dots", "abc"},
		{"huge", strings.Repeat("A", 10<<10)},
	}
	for _, tc := range tampered {
		t.Run("tampered "+tc.name, func(t *testing.T) {
			_, err := c.Verify("__Host-mcp_consent", tc.signed, now)
			assert.ErrorIs(t, err, errCookieInvalid)
		})
	}
}

func TestCookieSignerRotation(t *testing.T) {
	master := testSecret(9)
	oldKey, newKey := testSecret(4), testSecret(5)
	old := newTestRing(t, KeyConfig{MasterSecret: master, CookieKeys: [][]byte{oldKey}})
	both := newTestRing(t, KeyConfig{MasterSecret: master, CookieKeys: [][]byte{newKey, oldKey}})
	onlyNew := newTestRing(t, KeyConfig{MasterSecret: master, CookieKeys: [][]byte{newKey}})
	now, exp := time.Unix(1000, 0), time.Unix(2000, 0)

	oldCookie := old.cookies.Sign("n", "v", exp)
	v, err := both.cookies.Verify("n", oldCookie, now)
	require.NoError(t, err, "[new, old] verifies old cookies")
	assert.Equal(t, "v", v)
	newCookie := both.cookies.Sign("n", "v", exp)
	assert.Contains(t, newCookie, "."+keyFingerprint(newKey)+".", "[new, old] signs with new")
	_, err = onlyNew.cookies.Verify("n", newCookie, now)
	assert.NoError(t, err)
	_, err = onlyNew.cookies.Verify("n", oldCookie, now)
	assert.ErrorIs(t, err, errCookieInvalid, "[new] refuses old cookies")
}

// ---------------------------------------------------------------------------
// Fuzz targets

func FuzzTokenVerify(f *testing.F) {
	s, hs, ec := refusalSigner(f)
	claims := `{"sub":"alice","exp":1893456000}`
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	valid, err := s.Sign(map[string]any{"sub": "alice"})
	require.NoError(f, err)
	for _, seed := range []string{
		valid,
		jwsFrom(f, hdr("ES256", "es1"), claims, esSign(f, ec)),
		jwsFrom(f, `{"typ":"at+jwt","kid":"hs1","alg":"HS256"}`, claims, hsSign(hs)),
		jwsFrom(f, hdr("none", "hs1"), claims, func([]byte) []byte { return nil }),
		jwsFrom(f, hdr("HS256", "es1"), claims, hsSign(s.PublicJWKS())),
		jwsFrom(f, hdr("HS256", "../hs1"), claims, hsSign(hs)),
		jwsFrom(f, map[string]any{"alg": "HS256", "kid": "hs1", "typ": "at+jwt", "crit": []string{"x"}}, claims, hsSign(hs)),
		jwsFrom(f, `{"alg":"HS256","kid":"hs1","typ":"at+jwt","jwk":{"kty":"oct","k":"AAAA"}}`, claims, hsSign([]byte{0, 0, 0})),
		"", ".", "..", "a.b.c", "a.b.c.d", valid + "\n", valid[:len(valid)-2],
		"eyJhbGciOiJIUzI1NiJ9.e30.", strings.Repeat("A", 17<<10),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var got map[string]any
		if s.Verify(raw, &got) != nil {
			return
		}
		// Success must mean: one of our kids, its algorithm, and a signature
		// that an independent check accepts.
		parts := strings.Split(raw, ".")
		require.Len(t, parts, 3)
		hj, err := base64.RawURLEncoding.DecodeString(parts[0])
		require.NoError(t, err)
		var h struct{ Alg, Kid string }
		require.NoError(t, json.Unmarshal(hj, &h))
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		require.NoError(t, err)
		input := []byte(parts[0] + "." + parts[1])
		switch h.Kid {
		case "hs1":
			require.Equal(t, "HS256", h.Alg)
			require.True(t, hmac.Equal(hsSign(hs)(input), sig))
		case "es1":
			require.Equal(t, "ES256", h.Alg)
			d := sha256.Sum256(input)
			require.True(t, ecdsa.Verify(&ec.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))
		default:
			t.Fatalf("verified a token with kid %q", h.Kid)
		}
	})
}

func FuzzSealerOpen(f *testing.F) {
	r := newTestRing(f, KeyConfig{MasterSecret: testSecret(9), EncryptionKeys: []EncryptionKey{
		{ID: "k1", Key: testSecret(2)}, {ID: "k2", Key: testSecret(3)},
	}})
	sealed, err := r.sealer.Seal([]byte("secret"), []byte("aad"))
	require.NoError(f, err)
	f.Add(sealed, []byte("aad"))
	f.Add(sealed, []byte("other"))
	f.Add(sealed[:len(sealed)-1], []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1}, []byte{})
	f.Add([]byte{1, 2, 'k', '1'}, []byte{})
	f.Add([]byte{1, 255, 'k', '1'}, []byte{})
	f.Add(append([]byte{1, 2, 'k', '2'}, make([]byte, 28)...), []byte{})
	f.Fuzz(func(t *testing.T, data, aad []byte) {
		pt, err := r.sealer.Open(data, aad)
		if err != nil {
			require.ErrorIs(t, err, errDecrypt)
			require.Nil(t, pt)
			return
		}
		require.Equal(t, byte(1), data[0])
		require.Len(t, data, 2+int(data[1])+12+len(pt)+16)
	})
}
